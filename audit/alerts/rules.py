"""Alert rules: the kinds of rule, the settings a compliance officer configures, the
default rules, and the rule book that stores them (every change audited).

Rule kinds (``threshold`` and ``window_minutes`` tune each one):

- ``bulk_read``: one actor touched ``threshold`` or more *distinct* data subjects through
  read / list / search / export within any ``window_minutes`` span.
- ``off_hours``: a staff actor (``user:*``) acted on customer data (read, list, search,
  export, create, update, delete, locate) outside the working hours and days of the rule,
  in its time zone, ``threshold`` or more times within the window.
- ``denial_burst``: ``threshold`` or more refused requests (outcome ``denied``) by one
  actor within the window - including ``anonymous``, i.e. failed sign-ins.
- ``large_export``: one export of ``threshold`` rows or more (``rows``, else ``returned``,
  in the event detail).

Rules apply from the evaluation cursor onwards: a new or changed rule does not re-judge
old events (:mod:`audit.alerts.evaluation`).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from audit.alert_tables import AlertCursor, AlertRule
from audit.alerts.model import (
    PURPOSE,
    SYSTEM_ACTOR,
    AlertNotFound,
    Changer,
    RuleInvalid,
    locked_transaction,
    utc,
)
from audit.events import Outcome, audit_event
from audit.log import AuditLog


class RuleKind(enum.StrEnum):
    """What a rule watches for; picks the detector (:mod:`audit.alerts.evaluation`)."""

    BULK_READ = "bulk_read"
    OFF_HOURS = "off_hours"
    DENIAL_BURST = "denial_burst"
    LARGE_EXPORT = "large_export"


READ_ACTIONS = ("read", "list", "search", "export")
CUSTOMER_DATA_ACTIONS = ("read", "list", "search", "export", "create", "update", "delete", "locate")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

MAX_NAME = 100
MAX_THRESHOLD = 10_000_000
MAX_WINDOW_MINUTES = 7 * 24 * 60


# --- rule settings -----------------------------------------------------------------------------


def parse_work_days(text: str) -> frozenset[int]:
    """``"mon-fri"``, ``"mon,wed,fri"``, ``"sun-tue"`` (ranges may wrap) -> weekday numbers."""
    days: set[int] = set()
    for item in (part.strip() for part in text.lower().split(",")):
        if not item:
            continue
        first, _, last = item.partition("-")
        first, last = first.strip(), (last.strip() or first.strip())
        if first not in DAYS or last not in DAYS:
            raise ValueError("use three-letter day names, e.g. mon-fri or mon,wed,fri")
        day = DAYS.index(first)
        days.add(day)
        while day != DAYS.index(last):
            day = (day + 1) % 7
            days.add(day)
    if not days:
        raise ValueError("name at least one working day, e.g. mon-fri")
    return frozenset(days)


def format_work_days(days: Iterable[int]) -> str:
    """The shortest canonical spelling: runs of three or more days become ranges."""
    chosen = sorted(set(days))
    parts: list[str] = []
    start = 0
    while start < len(chosen):
        end = start
        while end + 1 < len(chosen) and chosen[end + 1] == chosen[end] + 1:
            end += 1
        if end - start >= 2:
            parts.append(f"{DAYS[chosen[start]]}-{DAYS[chosen[end]]}")
        else:
            parts += [DAYS[d] for d in chosen[start : end + 1]]
        start = end + 1
    return ",".join(parts)


@dataclass(frozen=True)
class RuleSettings:
    """What a compliance officer configures for one rule."""

    kind: str
    name: str
    threshold: int
    window_minutes: int
    work_start_hour: int = 7
    work_end_hour: int = 20
    work_days: str = "mon-fri"
    timezone: str = "UTC"
    enabled: bool = True

    @classmethod
    def from_text(cls, values: Mapping[str, str], *, kind: str | None = None) -> RuleSettings:
        """Settings from form text; every problem is collected and reported at once."""
        problems: dict[str, str] = {}

        def number(name: str, default: int) -> int:
            raw = values.get(name, "").strip()
            if not raw:
                return default
            try:
                return int(raw)
            except ValueError:
                problems[name] = "must be a whole number"
                return default

        settings = cls(
            kind=kind if kind is not None else values.get("kind", "").strip(),
            name=values.get("name", ""),
            threshold=number("threshold", 0),
            window_minutes=number("window_minutes", 0),
            work_start_hour=number("work_start_hour", 7),
            work_end_hour=number("work_end_hour", 20),
            work_days=values.get("work_days", "mon-fri"),
            timezone=values.get("timezone", "UTC").strip() or "UTC",
            # A form checkbox: missing means unticked, i.e. switched off.
            enabled=values.get("enabled", "") in {"1", "on", "true", "yes"},
        )
        try:
            return settings.validated()
        except RuleInvalid as exc:
            raise RuleInvalid({**exc.problems, **problems}) from None

    def validated(self) -> RuleSettings:
        """These settings checked and normalised (name trimmed, work days canonical)."""
        problems: dict[str, str] = {}
        if self.kind not in set(RuleKind):
            problems["kind"] = "must be one of: " + ", ".join(RuleKind)
        name = " ".join(self.name.split())
        if not name:
            problems["name"] = "is required"
        elif len(name) > MAX_NAME:
            problems["name"] = f"must be at most {MAX_NAME} characters"
        if not 1 <= self.threshold <= MAX_THRESHOLD:
            problems["threshold"] = f"must be between 1 and {MAX_THRESHOLD:,}"
        if not 1 <= self.window_minutes <= MAX_WINDOW_MINUTES:
            problems["window_minutes"] = f"must be between 1 and {MAX_WINDOW_MINUTES:,} (a week)"
        if not 0 <= self.work_start_hour <= 23:
            problems["work_start_hour"] = "must be an hour from 0 to 23"
        if not 1 <= self.work_end_hour <= 24:
            problems["work_end_hour"] = "must be an hour from 1 to 24"
        elif "work_start_hour" not in problems and self.work_end_hour <= self.work_start_hour:
            problems["work_end_hour"] = "must be later than the start of working hours"
        work_days = self.work_days
        try:
            work_days = format_work_days(parse_work_days(self.work_days))
        except ValueError as exc:
            problems["work_days"] = str(exc)
        if not _valid_timezone(self.timezone):
            problems["timezone"] = "must be an IANA time zone name, e.g. UTC or Europe/Berlin"
        if problems:
            raise RuleInvalid(problems)
        return replace(self, name=name, work_days=work_days)


def _valid_timezone(name: str) -> bool:
    if not name or len(name) > 64 or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


DEFAULT_RULES = (
    RuleSettings(RuleKind.BULK_READ, "Bulk reads", threshold=200, window_minutes=10),
    RuleSettings(
        RuleKind.OFF_HOURS, "Access outside working hours", threshold=1, window_minutes=60
    ),
    RuleSettings(
        RuleKind.DENIAL_BURST, "Burst of refused requests", threshold=10, window_minutes=5
    ),
    RuleSettings(RuleKind.LARGE_EXPORT, "Large export", threshold=1000, window_minutes=60),
)


@dataclass(frozen=True)
class Rule:
    id: int
    settings: RuleSettings
    created_by: str
    created_at: dt.datetime
    updated_by: str
    updated_at: dt.datetime

    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def describe(self) -> str:
        """The rule in one sentence, for the console and the e-mail."""
        s = self.settings
        window = f"{s.window_minutes} minute{'' if s.window_minutes == 1 else 's'}"
        if s.kind == RuleKind.BULK_READ:
            return f"{s.threshold:,} or more distinct data subjects read within {window}"
        if s.kind == RuleKind.OFF_HOURS:
            hours = (
                f"outside {s.work_start_hour:02d}:00-{s.work_end_hour:02d}:00, {s.work_days} "
                f"({s.timezone})"
            )
            if s.threshold == 1:
                return f"any action on customer data by staff {hours}"
            return f"{s.threshold:,} or more actions on customer data within {window} {hours}"
        if s.kind == RuleKind.DENIAL_BURST:
            return f"{s.threshold:,} or more refused requests within {window}"
        return f"an export of {s.threshold:,} or more rows (repeats within {window}: one alert)"

    def is_working_time(self, ts: dt.datetime) -> bool:
        local = ts.astimezone(ZoneInfo(self.settings.timezone))
        days = parse_work_days(self.settings.work_days)
        s = self.settings
        return local.weekday() in days and s.work_start_hour <= local.hour < s.work_end_hour


def rule_of(row: Mapping[str, Any]) -> Rule:
    """A rule from its ``audit_alert_rule`` row."""
    return Rule(
        id=int(row["id"]),
        settings=RuleSettings(
            kind=str(row["kind"]),
            name=str(row["name"]),
            threshold=int(row["threshold"]),
            window_minutes=int(row["window_minutes"]),
            work_start_hour=int(row["work_start_hour"]),
            work_end_hour=int(row["work_end_hour"]),
            work_days=str(row["work_days"]),
            timezone=str(row["timezone"]),
            enabled=bool(row["enabled"]),
        ),
        created_by=str(row["created_by"]),
        created_at=utc(row["created_at"]),
        updated_by=str(row["updated_by"]),
        updated_at=utc(row["updated_at"]),
    )


async def rule_names() -> dict[int, str]:
    """Every rule's name by id (alerts show the name of the rule that raised them)."""
    rows = await AlertRule.select(AlertRule.id, AlertRule.name)
    return {int(r["id"]): str(r["name"]) for r in rows}


_SETTING_NAMES = (
    "name",
    "threshold",
    "window_minutes",
    "work_start_hour",
    "work_end_hour",
    "work_days",
    "timezone",
    "enabled",
)


def _setting_columns(settings: RuleSettings) -> dict[str, Any]:
    """The stored columns of the configurable settings (both create and update write them)."""
    return {name: getattr(settings, name) for name in _SETTING_NAMES}


def _rule_detail(settings: RuleSettings) -> dict[str, int | str]:
    """Rule settings for the audit event. The name is left out: it is free text."""
    return {
        "kind": str(settings.kind),
        "threshold": settings.threshold,
        "window_minutes": settings.window_minutes,
        "work_hours": f"{settings.work_start_hour:02d}-{settings.work_end_hour:02d}",
        "work_days": settings.work_days,
        "timezone": settings.timezone,
        "enabled": int(settings.enabled),
    }


# --- the rule book: reading and changing rules (each change audited) ---------------------------


class RuleBook:
    """The stored rules. Every change is audited in the transaction that makes it, under
    the alert lock; the first change (or the first evaluation) seeds the default rules."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    async def list_rules(self) -> list[Rule]:
        rows = await AlertRule.select().order_by(AlertRule.id)
        return [rule_of(r) for r in rows]

    async def get_rule(self, rule_id: int) -> Rule:
        row = await AlertRule.select().where(AlertRule.id == rule_id).first()
        if row is None:
            raise AlertNotFound("no such alert rule")
        return rule_of(row)

    async def initialised(self) -> bool:
        """Have the default rules been created yet (by a first evaluation or rule change)?"""
        return bool(await AlertCursor.exists())

    async def initialise(self, now: dt.datetime) -> int:
        """First use: create the cursor and the default rules (audited). Returns the cursor.

        Called under the lock, so two workers starting together seed the rules once.
        """
        row = await AlertCursor.select().first()
        if row is not None:
            return int(row["last_seq"])
        await AlertCursor.insert(AlertCursor(last_seq=0, evaluated_at=None)).run()
        if not await AlertRule.exists():
            for settings in DEFAULT_RULES:
                await self._insert_rule(
                    settings, by=Changer(SYSTEM_ACTOR, "system"), now=now, reason="default_rule"
                )
        return 0

    async def create_rule(
        self,
        settings: RuleSettings,
        *,
        by: Changer,
        now: dt.datetime | None = None,
    ) -> Rule:
        clean = settings.validated()
        now = utc(now or dt.datetime.now(dt.UTC))
        async with locked_transaction():
            await self.initialise(now)
            rule_id = await self._insert_rule(clean, by=by, now=now)
        return await self.get_rule(rule_id)

    async def _insert_rule(
        self,
        settings: RuleSettings,
        *,
        by: Changer,
        now: dt.datetime,
        reason: str = "",
    ) -> int:
        inserted = await AlertRule.insert(
            AlertRule(
                kind=str(settings.kind),
                **_setting_columns(settings),
                created_by=by.actor_id,
                created_at=now,
                updated_by=by.actor_id,
                updated_at=now,
            )
        ).returning(AlertRule.id)
        rule_id = int(inserted[0]["id"])
        await self._audit_change("create", rule_id, settings, _SETTING_NAMES, by, reason)
        return rule_id

    async def update_rule(
        self,
        rule_id: int,
        settings: RuleSettings,
        *,
        by: Changer,
        now: dt.datetime | None = None,
    ) -> Rule:
        """Change a rule's settings (not its kind: that would change what its alerts mean)."""
        settings.validated()  # refused before anything is read or locked
        return await self._change_rule(rule_id, lambda _current: settings, by=by, now=now)

    async def set_rule_enabled(
        self,
        rule_id: int,
        enabled: bool,
        *,
        by: Changer,
    ) -> Rule:
        return await self._change_rule(
            rule_id, lambda current: replace(current, enabled=enabled), by=by
        )

    async def _change_rule(
        self,
        rule_id: int,
        change: Callable[[RuleSettings], RuleSettings],
        *,
        by: Changer,
        now: dt.datetime | None = None,
    ) -> Rule:
        """The one update path: the new settings are made from the current ones under the
        lock, so two changes in a row (an edit, then switching the rule off) both count."""
        now = utc(now or dt.datetime.now(dt.UTC))
        async with locked_transaction():
            await self.initialise(now)
            current = await self.get_rule(rule_id)
            clean = change(current.settings).validated()
            if clean.kind != current.kind:
                raise RuleInvalid({"kind": "cannot be changed; create a new rule instead"})
            changed = tuple(
                name
                for name in _SETTING_NAMES
                if getattr(clean, name) != getattr(current.settings, name)
            )
            if not changed:
                return current
            columns = {
                **_setting_columns(clean),
                "updated_by": by.actor_id,
                "updated_at": now,
            }
            await AlertRule.update(
                {getattr(AlertRule, name): value for name, value in columns.items()}
            ).where(AlertRule.id == rule_id)
            await self._audit_change("update", rule_id, clean, changed, by)
        return await self.get_rule(rule_id)

    async def _audit_change(
        self,
        verb: str,
        rule_id: int,
        settings: RuleSettings,
        fields: Iterable[str],
        by: Changer,
        reason: str = "",
    ) -> None:
        await self.audit.append(
            audit_event(
                actor_id=by.actor_id,
                actor_role=by.actor_role,
                action=f"alert_rule.{verb}",
                resource_type="alert_rule",
                resource_id=str(rule_id),
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                fields=tuple(fields),
                reason=reason,
                request_id=by.request_id,
                detail=_rule_detail(settings),
            )
        )
