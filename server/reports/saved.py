"""Saved report definitions: kept by their owner, shared with the owner's team or all staff,
optionally e-mailed on a schedule as counts only.

A saved report holds a definition, never results: whoever opens it runs it again through
the gateway under their own role and scope, so sharing a report shares the question, not
the answers. Queries on ``saved_report`` live here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from server.auth.tables import StaffUser
from server.gateway import Actor, Forbidden, NotFound
from server.reports.builder import ReportBuilder, ReportDefinition, ReportResult
from server.reports.tables import SavedReport

Sharing = Literal["none", "team", "all"]
Schedule = Literal["none", "daily", "weekly", "monthly"]
SCHEDULE_DAYS = {"daily": 1, "weekly": 7, "monthly": 30}
ReportName = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]


class SavedReportIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: ReportName
    definition: ReportDefinition
    shared_with: Sharing = "none"
    schedule: Schedule = "none"


class SavedReportOut(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    owner_id: int
    shared_with: str
    schedule: str
    definition: ReportDefinition
    mine: bool


def _out(row: dict[str, Any], user_id: int) -> SavedReportOut:
    return SavedReportOut(
        id=row["id"] if isinstance(row["id"], uuid.UUID) else uuid.UUID(str(row["id"])),
        name=str(row["name"]),
        owner_id=int(row["owner_id"]),
        shared_with=str(row["shared_with"]),
        schedule=str(row["schedule"]),
        definition=msgspec.json.decode(str(row["definition"]), type=ReportDefinition),
        mine=int(row["owner_id"]) == user_id,
    )


def _visible_to(user_id: int, team: str) -> Any:
    return (
        (SavedReport.owner_id == user_id)
        | (SavedReport.shared_with == "all")
        | (
            (SavedReport.shared_with == "team")
            & (SavedReport.team == team)
            & (SavedReport.team != "")
        )
    )


async def save(actor: Actor, body: SavedReportIn) -> SavedReportOut:
    if actor.user_id is None:
        raise Forbidden("only a staff user may save a report")
    moment = dt.datetime.now(dt.UTC)
    row = SavedReport(
        id=uuid.uuid4(),
        name=body.name.strip() or "Report",
        owner_id=actor.user_id,
        team=actor.team,
        shared_with=body.shared_with,
        definition=msgspec.json.encode(body.definition).decode(),
        schedule=body.schedule,
        created_at=moment,
        updated_at=moment,
    )
    await row.save()
    return await one(actor, row.id)


async def visible(actor: Actor) -> list[SavedReportOut]:
    user = actor.user_id if actor.user_id is not None else -1
    rows = (
        await SavedReport.select()
        .where(_visible_to(user, actor.team))
        .order_by(SavedReport.name)
        .limit(200)
    )
    return [_out(r, user) for r in rows]


async def one(actor: Actor, report_id: uuid.UUID) -> SavedReportOut:
    """The saved report, or 404 when it is not the actor's and not shared with them."""
    user = actor.user_id if actor.user_id is not None else -1
    row = (
        await SavedReport.select()
        .where((SavedReport.id == report_id) & _visible_to(user, actor.team))
        .first()
    )
    if row is None:
        raise NotFound("no such saved report")
    return _out(row, user)


async def delete(actor: Actor, report_id: uuid.UUID) -> None:
    found = await one(actor, report_id)
    if not found.mine:
        raise Forbidden("only the report's owner may delete it")
    await SavedReport.delete().where(SavedReport.id == report_id)


def email_text(name: str, result: ReportResult) -> str:
    """A scheduled report's body: counts only, suppressed cells said as such."""

    def shown(value: float | None) -> str:
        return "suppressed" if value is None else str(int(value))

    lines = [
        f"Report: {name}",
        f"Counts of {result.record_type} records by {result.row_dimension}"
        + (f" and {result.column_dimension}" if result.column_dimension else ""),
        f"Groups under {result.min_group_size} are suppressed, with enough others that "
        "the totals cannot reveal them.",
        "",
        " | ".join([result.row_dimension, *result.columns, "Total"]),
    ]
    for row in result.rows:
        lines.append(" | ".join([row.label, *(shown(v) for v in row.cells), shown(row.total)]))
    totals = [*(shown(v) for v in result.column_totals), shown(result.grand_total)]
    lines.append(" | ".join(["Total", *totals]))
    return "\n".join(lines) + "\n"


async def send_due(builder: ReportBuilder, send: Any, now: dt.datetime | None = None) -> int:
    """Run and e-mail every scheduled report that is due, as its owner (their role and
    scope, audited as theirs), counts only and without differential privacy (no budget
    is spent by a schedule). ``send(to, subject, text)`` is the mailer's ``send``."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    rows = await SavedReport.select().where(SavedReport.schedule != "none")
    sent = 0
    for row in rows:
        days = SCHEDULE_DAYS.get(str(row["schedule"]))
        last = row["last_sent_at"]
        if days is None or (last is not None and moment - last < dt.timedelta(days=days)):
            continue
        owner = (
            await StaffUser.select(StaffUser.email, StaffUser.role, StaffUser.team)
            .where((StaffUser.id == row["owner_id"]) & (StaffUser.is_active == True))  # noqa: E712  # piccolo needs ==
            .first()
        )
        if owner is None:
            continue
        actor = Actor.staff(
            int(row["owner_id"]), str(owner["role"]), str(owner["team"]), "scheduled-report"
        )
        definition = msgspec.json.decode(str(row["definition"]), type=ReportDefinition)
        counts = msgspec.structs.replace(
            definition, measure="count", measure_field=None, dp_epsilon=None
        )
        try:
            result = await builder.run(actor, counts)
        except (Forbidden, NotFound):
            continue  # the owner's role no longer allows it: nothing is sent
        # Claim the run (one worker of several wins), then send; a failed send gives it back.
        unchanged = (
            SavedReport.last_sent_at.is_null() if last is None else SavedReport.last_sent_at == last
        )
        claimed = (
            await SavedReport.update({SavedReport.last_sent_at: moment})
            .where((SavedReport.id == row["id"]) & unchanged)
            .returning(SavedReport.id)
        )
        if not claimed:
            continue
        name = str(row["name"])
        outcome = await send(str(owner["email"]), f"Report: {name}", email_text(name, result))
        if getattr(outcome, "sent", False):
            sent += 1
        else:
            await SavedReport.update({SavedReport.last_sent_at: last}).where(
                SavedReport.id == row["id"]
            )
    return sent
