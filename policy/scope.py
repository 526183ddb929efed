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
