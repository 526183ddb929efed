"""Policy as code: the Casbin model and rules, and the one place access decisions are made."""

from policy.enforcer import AccessDecision, PolicyEngine, Scope

__all__ = ["AccessDecision", "PolicyEngine", "Scope"]
