"""Who a record belongs to, and who may hand it to someone else.

A record's ``owner_id`` and ``team`` are what record scope is compiled from (sales see
their own records, support their team's), so whoever sets them decides who can read and
delete the record afterwards. Setting them is therefore a policy decision
(``assign:self|team|any`` in policy.csv, carried by the ``AccessDecision``), the new owner
must be an existing, active staff user and the team one that has such a user (asked of
the ``StaffDirectory``), and every change is audited with the old and new owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from policy.enforcer import AccessDecision, Assign
from server.gateway.actor import Actor
from server.gateway.errors import Forbidden, InvalidInput

MAX_STAFF_ID = 2**31 - 1  # staff ids are 32-bit serials on both engines
MAX_TEAM_LENGTH = 64


@dataclass(frozen=True)
class Ownership:
    owner_id: int
    team: str


@dataclass(frozen=True)
class Assignee:
    """An active staff user a record could be handed to."""

    user_id: int
    team: str


class StaffDirectory(Protocol):
    """What the gateway asks about staff (``server.auth.service.StaffAccounts``)."""

    async def assignee(self, user_id: int) -> Assignee | None:
        """The active staff user with this id, or None (unknown or disabled)."""

    async def team_exists(self, team: str) -> bool:
        """Whether at least one active staff user belongs to this team."""


class OwnershipRefused(Forbidden):
    """The actor may not hand the record to that owner or team (403, audited)."""

    reason = "ownership_not_allowed"


def requested_owner(value: Any) -> int | None:
    """A client's ``owner_id``: None, or a staff id in range (400 otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_STAFF_ID:
        raise InvalidInput(
            "owner_id: expected the id of a staff user",
            problems={"owner_id": "expected a positive integer staff id"},
        )
    return value


def requested_team(value: Any) -> str | None:
    """A client's ``team``: None, or a short printable name (400 otherwise)."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_TEAM_LENGTH
        or not value.isprintable()
        or value != value.strip()
    ):
        raise InvalidInput(
            f"team: expected a team name of 1 to {MAX_TEAM_LENGTH} printable characters",
            problems={"team": "expected a short team name"},
        )
    return value


def starting_ownership(actor: Actor) -> Ownership:
    """Whom a new record belongs to unless the actor asks otherwise: the actor."""
    return Ownership(actor.user_id or 0, actor.team)


async def settle(
    decision: AccessDecision,
    actor: Actor,
    staff: StaffDirectory,
    current: Ownership,
    *,
    owner_id: int | None,
    team: str | None,
) -> Ownership:
    """The ownership a write ends with: ``current`` unless the actor asked for another
    owner or team and may hand the record there. A new owner brings their own team
    unless a team is named too. Raises ``OwnershipRefused`` (403) when the role may not
    make that assignment and ``InvalidInput`` (400) for an owner or team that does not
    exist; both name rules, never the values asked for."""
    owner_id, team = requested_owner(owner_id), requested_team(team)
    wanted_owner = current.owner_id if owner_id is None else owner_id
    assignee: Assignee | None = None
    if wanted_owner != current.owner_id:
        if wanted_owner == actor.user_id:
            assignee = Assignee(wanted_owner, actor.team)
        else:
            assignee = await staff.assignee(wanted_owner)
    if team is not None:
        wanted_team = team
    elif assignee is not None:
        wanted_team = assignee.team
    else:
        wanted_team = current.team
    wanted = Ownership(wanted_owner, wanted_team)
    if wanted == current:
        return current
    _check_allowed(decision, actor, wanted, assignee)
    if wanted_owner != current.owner_id and assignee is None:
        raise InvalidInput(
            "owner_id: no active staff user has this id",
            problems={"owner_id": "not an active staff user"},
        )
    if wanted_team != current.team and not await staff.team_exists(wanted_team):
        raise InvalidInput(
            "team: no active staff user belongs to this team",
            problems={"team": "not a known team"},
        )
    return wanted


def _check_allowed(
    decision: AccessDecision, actor: Actor, wanted: Ownership, assignee: Assignee | None
) -> None:
    noun = decision.resource
    if decision.assign is Assign.ANY:
        return
    if decision.assign is Assign.SELF:
        if wanted != Ownership(actor.user_id or -1, actor.team):
            raise OwnershipRefused(
                f"your role may assign a {noun} only to yourself, in your own team"
            )
        return
    if decision.assign is Assign.TEAM:
        colleague = assignee is None or assignee.team == actor.team
        if wanted.team != actor.team or not colleague:
            raise OwnershipRefused(
                f"your role may assign a {noun} only to an active colleague in your own team"
            )
        return
    raise OwnershipRefused(f"your role may not change who owns a {noun} or its team")


def change_detail(before: Ownership, after: Ownership) -> dict[str, int | str]:
    """What an audit event records of a change of hands: ids and team names, no values."""
    if before == after:
        return {}
    return {
        "owner_before": before.owner_id,
        "owner_after": after.owner_id,
        "team_before": before.team,
        "team_after": after.team,
    }
