"""The staff directory the gateway asks when a record changes hands.

Separate from ``StaffAccounts`` because it answers one narrow question (is this an active
staff user, and in which team) and must not need sessions, secrets or the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.auth.tables import StaffUser
from server.gateway.ownership import Assignee

MAX_CHOICES = 500  # an owner select longer than this is no use to anyone


class ActiveStaff:
    """``server.gateway.ownership.StaffDirectory`` over the ``staff_user`` table."""

    async def assignee(self, user_id: int) -> Assignee | None:
        row = (
            await StaffUser.select(StaffUser.id, StaffUser.team)
            .where((StaffUser.id == user_id) & StaffUser.is_active.eq(True))
            .first()
        )
        return None if row is None else Assignee(int(row["id"]), str(row["team"]))

    async def choices(self, team: str | None = None) -> list[tuple[int, str]]:
        """Active staff a record may be handed to (in ``team`` if given), as (id, label)
        pairs for an owner select, by name."""
        query = StaffUser.select(StaffUser.id, StaffUser.display_name, StaffUser.team).where(
            StaffUser.is_active.eq(True)
        )
        if team is not None:
            query = query.where(StaffUser.team == team)
        rows = await query.order_by(StaffUser.display_name).limit(MAX_CHOICES)
        return [(int(r["id"]), f"{r['display_name']} ({r['team']})") for r in rows]

    async def team_exists(self, team: str) -> bool:
        return bool(
            await StaffUser.exists().where((StaffUser.team == team) & StaffUser.is_active.eq(True))
        )


async def staff_labels(user_ids: Iterable[int]) -> dict[int, str]:
    """How people see a staff member named in a history: "Name (e-mail)", disabled
    accounts included (a history must still say who did what after they left)."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    rows = await StaffUser.select(StaffUser.id, StaffUser.display_name, StaffUser.email).where(
        StaffUser.id.is_in(wanted)
    )
    return {int(r["id"]): f"{r['display_name']} ({r['email']})" for r in rows}


async def active_teams() -> list[str]:
    """The teams that have an active staff member (a team quota's choices)."""
    rows = await StaffUser.select(StaffUser.team).where(StaffUser.is_active.eq(True))
    return sorted({str(r["team"]) for r in rows if r["team"]})


async def staff_teams(user_ids: Iterable[int]) -> dict[int, str]:
    """Each staff member's current team (team totals of their quotas)."""
    wanted = sorted(set(user_ids))
    if not wanted:
        return {}
    rows = await StaffUser.select(StaffUser.id, StaffUser.team).where(StaffUser.id.is_in(wanted))
    return {int(r["id"]): str(r["team"] or "") for r in rows}


async def staff_identities() -> list[tuple[int, str, str, str]]:
    """(id, name, e-mail, role) of every staff account, disabled ones included: what a
    subject export replaces with pseudonyms wherever free text names a member of staff."""
    rows = await StaffUser.select(
        StaffUser.id, StaffUser.display_name, StaffUser.email, StaffUser.role
    ).order_by(StaffUser.id)
    return [(int(r["id"]), str(r["display_name"]), str(r["email"]), str(r["role"])) for r in rows]
