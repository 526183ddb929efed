"""The authorization choke point.

``PolicyEngine.decide`` is the only producer of ``AccessDecision``: the constructor checks
a private token, so no other code can fabricate "allowed". A decision carries the fields
the role may touch and the record scope the gateway compiles into its SQL ``WHERE``.

Decisions depend only on (role, resource, action, purpose) and the policy files, which are
fixed for the life of a process, so they are cached; a role change takes effect on the
next request because the role is looked up per request, not cached here.
"""

from __future__ import annotations

import enum
from dataclasses import InitVar, dataclass
from functools import lru_cache
from pathlib import Path

import casbin

POLICY_DIR = Path(__file__).resolve().parent
MODEL_PATH = POLICY_DIR / "model.conf"
POLICY_PATH = POLICY_DIR / "policy.csv"

ROLES = ("admin", "sales", "support", "marketing", "compliance")

_MINT = object()


class Scope(enum.StrEnum):
    NONE = "none"
    OWN = "own"
    TEAM = "team"
    ALL = "all"


class Assign(enum.StrEnum):
    """Whom a role may make a record's owner (``owner_id`` and ``team`` decide record
    scope, so handing a record over is a policy decision like any other)."""

    NONE = "none"  # ownership stays as it is (a create: the actor and their team)
    SELF = "self"  # only themselves, in their own team
    TEAM = "team"  # an active colleague in their own team
    ANY = "any"  # any active staff user, any known team


@dataclass(frozen=True)
class AccessDecision:
    role: str
    resource: str
    action: str
    purpose: str
    allowed: bool
    scope: Scope
    fields: frozenset[str]  # fields this role may use for this action and purpose
    reason: str  # a short code for the audit log: never a value
    assign: Assign = Assign.NONE  # on create and update: whom the record may be handed to
    # An InitVar, not a field: dataclasses.replace() cannot copy it from a genuine decision.
    _token: InitVar[object] = None

    def __post_init__(self, _token: object) -> None:
        if _token is not _MINT:
            raise TypeError("AccessDecision is produced only by PolicyEngine.decide")


class PolicyEngine:
    def __init__(self, model_path: Path = MODEL_PATH, policy_path: Path = POLICY_PATH) -> None:
        self._enforcer = casbin.Enforcer(str(model_path), str(policy_path))
        self._decide = lru_cache(maxsize=4096)(self._decide_uncached)
        # Casbin checks are linear in the number of rules; the rules are fixed for the life
        # of the process, so every (role, object, action) answer can be kept.
        self._allows = lru_cache(maxsize=16384)(self._allows_uncached)

    def allows(self, role: str, obj: str, act: str) -> bool:
        return self._allows(role, obj, act)

    def _allows_uncached(self, role: str, obj: str, act: str) -> bool:
        return bool(self._enforcer.enforce(role, obj, act))

    def decide(
        self,
        role: str,
        resource: str,
        action: str,
        purpose: str,
        field_names: tuple[str, ...],
        purpose_fields: frozenset[str],
    ) -> AccessDecision:
        return self._decide(role, resource, action, purpose, field_names, purpose_fields)

    def _decide_uncached(
        self,
        role: str,
        resource: str,
        action: str,
        purpose: str,
        field_names: tuple[str, ...],
        purpose_fields: frozenset[str],
    ) -> AccessDecision:
        def deny(reason: str) -> AccessDecision:
            return AccessDecision(
                role,
                resource,
                action,
                purpose,
                False,
                Scope.NONE,
                frozenset(),
                reason,
                _token=_MINT,
            )

        if not self.allows(role, f"purpose:{purpose}", "use"):
            return deny("purpose_not_allowed_for_role")
        if not self.allows(role, resource, action):
            return deny("action_not_allowed")
        scope = next(
            (
                s
                for s in (Scope.ALL, Scope.TEAM, Scope.OWN)
                if self.allows(role, resource, f"scope:{s.value}")
            ),
            Scope.NONE,
        )
        if scope is Scope.NONE:
            return deny("no_record_scope")
        # Field rights: reads use "read"; "locate" (find ids by an exact e-mail or phone,
        # nothing returned) has its own; writes need the field's write action.
        if action == "locate":
            field_action = "locate"
        elif action in {"read", "list", "search", "export"}:
            field_action = "read"
        else:
            field_action = "update"
        fields = frozenset(
            name
            for name in field_names
            if name in purpose_fields and self.allows(role, f"{resource}.{name}", field_action)
        )
        assign = Assign.NONE
        if action in {"create", "update"}:
            assign = next(
                (
                    a
                    for a in (Assign.ANY, Assign.TEAM, Assign.SELF)
                    if self.allows(role, resource, f"assign:{a.value}")
                ),
                Assign.NONE,
            )
        return AccessDecision(
            role, resource, action, purpose, True, scope, fields, "allowed", assign, _MINT
        )
