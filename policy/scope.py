"""Record scope compiled to a query condition: the filter runs in SQL, before paging."""

from __future__ import annotations

from typing import Any

from policy.enforcer import AccessDecision, Scope


def scope_condition(
    decision: AccessDecision, owner_column: Any, team_column: Any, user_id: int | None, team: str
) -> Any | None:
    """A Piccolo ``where`` condition for the decision's scope; ``None`` means every record.

    A denied decision never reaches here (the gateway refuses first), but if it did the
    condition would match nothing rather than everything.
    """
    if decision.scope is Scope.ALL:
        return None
    if decision.scope is Scope.TEAM and team:
        return team_column == team
    if decision.scope is Scope.OWN and user_id is not None:
        return owner_column == user_id
    return owner_column == -1  # matches nothing: deny by default


# Actions that change a record: on a record private to its owner, only the owner may.
_CHANGES = frozenset({"update", "delete"})


def private_condition(
    decision: AccessDecision, owner_column: Any, visibility_column: Any, user_id: int | None
) -> Any | None:
    """On a record type private to its owner until shared (captured mail): the owner's
    own records, and for reading also the shared ones; ``None`` for a system job (no
    staff user: the capture job itself, a subject export, erasure)."""
    if user_id is None:
        return None
    own = owner_column == user_id
    if decision.action in _CHANGES:
        return own
    return own | (visibility_column == "shared")
