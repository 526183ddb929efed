"""Who is calling: the identity a staff session or an API token resolves to.

Made by ``server.auth`` (sessions and tokens) and handed to handlers by ``server.web``
(``provide_identity``). It lives beside both, importing neither, so the web layer that
every route package uses does not import ``server.auth``, whose routes use the web layer
(the acyclic contract in pyproject.toml; docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.enforcer import TokenLimits


@dataclass(frozen=True)
class StaffIdentity:
    user_id: int
    email: str
    display_name: str
    role: str
    team: str
    has_totp: bool = False
    time_zone: str = ""  # IANA name; pages show times in it; "" never chosen (UTC)
    # Set when an API token acts (server.auth.tokens): its purposes and field allow-list,
    # and its id, which is the actor of everything it does (never the person who made it).
    token: TokenLimits | None = None
    token_id: str = ""

    @property
    def actor_id(self) -> str:
        return f"token:{self.token_id}" if self.token_id else f"user:{self.user_id}"


class TokenRateLimited(Exception):
    """An API token made more calls than its rate allows (``server.auth.tokens``)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after
