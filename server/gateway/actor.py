"""Who is acting. Every gateway call names an actor; there is no anonymous path to data."""

from __future__ import annotations

from dataclasses import dataclass

from policy.enforcer import SYSTEM_ROLE, TokenLimits


@dataclass(frozen=True)
class Actor:
    id: str  # stable audit id: "user:12", "system:demo-seed"
    role: str
    user_id: int | None = None
    team: str = ""
    request_id: str = ""
    # An API token's purposes and field allow-list ("token:<id>" actors); every decision
    # the gateway asks for this actor is narrowed by them (policy.enforcer.TokenLimits).
    limits: TokenLimits | None = None

    @classmethod
    def staff(
        cls,
        user_id: int,
        role: str,
        team: str,
        request_id: str = "",
        *,
        actor_id: str = "",
        limits: TokenLimits | None = None,
    ) -> Actor:
        return cls(actor_id or f"user:{user_id}", role, user_id, team, request_id, limits)

    @classmethod
    def system(cls, job: str, team: str = "") -> Actor:
        return cls(f"system:{job}", SYSTEM_ROLE, None, team)
