"""Desk configuration: SLA policies (business hours, holidays, targets per priority) and
queues (one per team: routing, SLA policy, team lead). Admins change it (policy:
``service_desk, configure``); every change is audited with ids and codes only."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from server import db
from server.auth.tables import StaffUser
from server.datamap import PRIORITIES
from server.gateway import Actor
from server.servicedesk.hours import (
    WEEKDAYS,
    CalendarError,
    parse_holidays,
    parse_hours,
    zone_named,
)
from server.servicedesk.service import ROUTINGS, DeskError
from server.servicedesk.tables import DeskQueue, SlaPolicy

MAX_TARGET_MINUTES = 60 * 24 * 365  # a year of business minutes is not a target
MAX_HOLIDAYS = 400


@dataclass(frozen=True)
class Targets:
    first_response: int | None  # business minutes
    resolution: int | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_targets(targets: Mapping[str, Targets]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for priority, target in targets.items():
        if priority not in PRIORITIES:
            raise DeskError("unknown_priority", "Targets are set per priority.")
        entry: dict[str, int] = {}
        for name, minutes in (
            ("first_response", target.first_response),
            ("resolution", target.resolution),
        ):
            if minutes is None:
                continue
            if not 0 < minutes <= MAX_TARGET_MINUTES:
                raise DeskError("bad_target", "A target is a positive number of hours.")
            entry[name] = minutes
        if entry:
            out[priority] = entry
    return out


async def save_policy(
    audit: AuditLog,
    actor: Actor,
    *,
    name: str,
    time_zone: str,
    hours: Mapping[str, list[str]],
    holidays: list[str],
    targets: Mapping[str, Targets],
    warn_percent: int = 80,
    policy_id: int | None = None,
) -> int:
    """Create or change an SLA policy; raises :class:`DeskError` with a reason."""
    name = " ".join(name.split())
    if not name or len(name) > 80:
        raise DeskError("bad_name", "Give the policy a name of at most 80 characters.")
    if not 1 <= warn_percent <= 99:
        raise DeskError("bad_warning", "Warn between 1 and 99 per cent of a target.")
    if len(holidays) > MAX_HOLIDAYS:
        raise DeskError("bad_holidays", f"At most {MAX_HOLIDAYS} holidays.")
    try:
        zone_named(time_zone)
        parse_hours(hours)
        parse_holidays(holidays)
    except CalendarError as exc:
        raise DeskError("bad_calendar", str(exc)) from None
    if not hours:
        raise DeskError("bad_calendar", "Open on at least one day of the week.")
    values: dict[Any, Any] = {
        SlaPolicy.name: name,
        SlaPolicy.time_zone: time_zone,
        SlaPolicy.hours: json.dumps(dict(hours), sort_keys=True),
        SlaPolicy.holidays: json.dumps(sorted(set(holidays))),
        SlaPolicy.targets: json.dumps(check_targets(targets), sort_keys=True),
        SlaPolicy.warn_percent: warn_percent,
        SlaPolicy.updated_at: _now(),
    }
    async with db.write_transaction():
        if policy_id is None:
            rows = await SlaPolicy.insert(
                SlaPolicy(**{column._meta.name: value for column, value in values.items()})
            ).returning(SlaPolicy.id)
            policy_id = int(rows[0]["id"])
        else:
            changed = await (
                SlaPolicy.update(values).where(SlaPolicy.id == policy_id).returning(SlaPolicy.id)
            )
            if not changed:
                raise DeskError("not_found", "No such SLA policy.", 404)
        await _record(audit, actor, "desk.sla_policy_saved", "sla_policy", policy_id)
    return policy_id


async def save_queue(
    audit: AuditLog,
    actor: Actor,
    *,
    name: str,
    team: str,
    routing: str,
    sla_policy_id: int | None,
    lead_id: int | None,
    queue_id: int | None = None,
) -> int:
    """Create or change a team's queue. The lead must be an active member of the team."""
    name, team = " ".join(name.split()), team.strip()
    if not name or len(name) > 80:
        raise DeskError("bad_name", "Give the queue a name of at most 80 characters.")
    if not team or len(team) > 64:
        raise DeskError("bad_team", "Name the team the queue serves.")
    if routing not in ROUTINGS:
        raise DeskError("bad_routing", "Choose round robin or least loaded.")
    if (
        sla_policy_id is not None
        and await SlaPolicy.count().where(SlaPolicy.id == sla_policy_id) == 0
    ):
        raise DeskError("bad_policy", "Choose an existing SLA policy.")
    if lead_id is not None:
        lead = await (
            StaffUser.select(StaffUser.id)
            .where(
                (StaffUser.id == lead_id) & (StaffUser.team == team) & StaffUser.is_active.eq(True)
            )
            .first()
        )
        if lead is None:
            raise DeskError("bad_lead", "The team lead must be an active member of the team.")
    clash = await DeskQueue.select(DeskQueue.id).where(DeskQueue.team == team).first()
    if clash is not None and clash["id"] != queue_id:
        raise DeskError("team_taken", "That team has a queue already.", 409)
    values: dict[Any, Any] = {
        DeskQueue.name: name,
        DeskQueue.team: team,
        DeskQueue.routing: routing,
        DeskQueue.sla_policy_id: sla_policy_id,
        DeskQueue.lead_id: lead_id,
        DeskQueue.updated_at: _now(),
    }
    async with db.write_transaction():
        if queue_id is None:
            rows = await DeskQueue.insert(
                DeskQueue(**{column._meta.name: value for column, value in values.items()})
            ).returning(DeskQueue.id)
            queue_id = int(rows[0]["id"])
        else:
            changed = await (
                DeskQueue.update(values).where(DeskQueue.id == queue_id).returning(DeskQueue.id)
            )
            if not changed:
                raise DeskError("not_found", "No such queue.", 404)
        await _record(audit, actor, "desk.queue_saved", "desk_queue", queue_id)
    return queue_id


async def queues() -> list[dict[str, Any]]:
    return list(await DeskQueue.select().order_by(DeskQueue.name))


async def policies() -> list[dict[str, Any]]:
    return list(await SlaPolicy.select().order_by(SlaPolicy.name))


async def policy(policy_id: int) -> dict[str, Any] | None:
    return await SlaPolicy.select().where(SlaPolicy.id == policy_id).first()


async def staff_names(ids: list[int]) -> dict[int, str]:
    """Display names of staff (for staff pages only; never shown in the portal)."""
    if not ids:
        return {}
    rows = await StaffUser.select(StaffUser.id, StaffUser.display_name).where(
        StaffUser.id.is_in(ids)
    )
    return {int(r["id"]): str(r["display_name"]) for r in rows}


async def team_members(team: str) -> list[tuple[int, str]]:
    rows = await (
        StaffUser.select(StaffUser.id, StaffUser.display_name)
        .where((StaffUser.team == team) & StaffUser.is_active.eq(True))
        .order_by(StaffUser.display_name)
        .limit(500)
    )
    return [(int(r["id"]), str(r["display_name"])) for r in rows]


def hours_in_words(hours_json: str) -> str:
    """ "Mon 09:00-17:00, ..." from a stored policy's hours."""
    try:
        hours = json.loads(hours_json or "{}")
    except json.JSONDecodeError:
        return "unreadable"
    days = [
        f"{WEEKDAYS[int(day)][:3]} {span[0]}-{span[1]}"
        for day, span in sorted(hours.items())
        if day.isdigit() and int(day) < len(WEEKDAYS) and isinstance(span, list) and len(span) == 2
    ]
    return ", ".join(days) or "never"


def holidays_in_words(holidays_json: str) -> str:
    try:
        days = json.loads(holidays_json or "[]")
    except json.JSONDecodeError:
        return "unreadable"
    return ", ".join(str(d) for d in days) or "none"


def targets_in_words(targets_json: str) -> str:
    """ "normal: first response 8 h, resolution 40 h; ..." from a stored policy."""
    try:
        targets = json.loads(targets_json or "{}")
    except json.JSONDecodeError:
        return "unreadable"
    parts = []
    for priority in PRIORITIES:
        entry = targets.get(priority) or {}
        words = [
            f"{label} {int(entry[key]) / 60:g} h"
            for key, label in (("first_response", "first response"), ("resolution", "resolution"))
            if isinstance(entry.get(key), int)
        ]
        if words:
            parts.append(f"{priority}: {', '.join(words)}")
    return "; ".join(parts) or "none"


async def staff_choices() -> list[tuple[int, str]]:
    """Active staff as (id, "name (team)"), for the team-lead select."""
    rows = await (
        StaffUser.select(StaffUser.id, StaffUser.display_name, StaffUser.team)
        .where(StaffUser.is_active.eq(True))
        .order_by(StaffUser.team)
        .order_by(StaffUser.display_name)
        .limit(500)
    )
    return [(int(r["id"]), f"{r['display_name']} ({r['team']})") for r in rows]


async def _record(audit: AuditLog, actor: Actor, action: str, kind: str, key: int) -> None:
    await audit.append(
        audit_event(
            actor_id=actor.id,
            actor_role=actor.role,
            action=action,
            resource_type=kind,
            resource_id=str(key),
            purpose="customer_support",
            outcome=Outcome.ALLOWED,
        )
    )
