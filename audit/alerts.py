"""Audit alerts: rules that watch the audit log for misuse, and the alerts they raise.

The threat is a curious or compromised staff account: reading far more customers than the
job needs, working on customer data at 3 a.m., probing what it may not see, or exporting
a large part of the database. Each of those leaves audit events; a rule turns a pattern of
them into an alert that compliance officers see in the console and get by e-mail.

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

Windows slide: the burst is found wherever it starts, not only inside fixed clock
intervals. Activity that keeps matching while its alert is still unacknowledged extends
that alert (its window, count and last event grow) instead of raising another one, so one
episode is one alert; after an acknowledgement, new activity raises a new alert.

Evaluation is incremental: a cursor row holds the last audit sequence number evaluated,
and each run reads the events after it in batches. Each batch is one transaction holding
a lock (``pg_advisory_xact_lock`` on PostgreSQL, the IMMEDIATE writer lock on SQLite), so
any number of workers may call :meth:`AlertEngine.evaluate` at once and every event is
evaluated exactly once; ``audit_alert.dedup_key`` is unique as a second line of defence.
Rules apply from the cursor onwards: a new or changed rule does not re-judge old events.

The sealer raises alerts of its own, without a rule (``rule_id`` 0): an entry whose MAC
does not verify (``forged_entry``), an entry that does not match its hash or a gap
(``tampered_entry``, ``missing_entry``), a checkpoint row that is not a genuine signed head
(``bogus_head``), a genuine head the log no longer matches (``head_contradicts_log``) and
an entry left unsigned for longer than ``CONSENTRY_AUDIT_STALL_SECONDS``
(``sealing_stalled``) - one alert per kind and position, e-mailed like the others.

Alert e-mails go out after the commit (an SMTP server must never hold the lock) and carry
rule names, staff actor ids, counts, times and a console link - never customer data. Every
change to rules and alerts is audited in the transaction of the change.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from audit.alert_tables import AlertCursor, AlertRule, AuditAlert
from audit.events import Outcome, audit_event
from audit.log import AuditLog
from audit.tables import AuditRecord
from audit.trail import Finding, Problem

log = structlog.get_logger("consentry.alerts")

PG_ALERT_LOCK = 0x0C0A_A1E7  # advisory lock id for alert evaluation (audit appends: 0x0C0A0D17)
BATCH_SIZE = 2000  # audit events per evaluation transaction
CONTEXT_ROWS = 2000  # at most this many earlier events per actor and rule (or the threshold)
MAX_BATCHES_PER_RUN = 25  # a long backlog is worked off over several runs
ALERTS_PAGE_SIZE = 25
SYSTEM_ACTOR = "system:alerts"
PURPOSE = "compliance"


class Kind(enum.StrEnum):
    BULK_READ = "bulk_read"
    OFF_HOURS = "off_hours"
    DENIAL_BURST = "denial_burst"
    LARGE_EXPORT = "large_export"


KIND_LABELS: Mapping[str, str] = {
    Kind.BULK_READ: "Bulk reads",
    Kind.OFF_HOURS: "Access outside working hours",
    Kind.DENIAL_BURST: "Burst of refused requests",
    Kind.LARGE_EXPORT: "Large export",
    # Raised by the sealer, not by a rule:
    Problem.FORGED_ENTRY: "Audit entry not written by this server (MAC fails)",
    Problem.TAMPERED_ENTRY: "Audit entry altered",
    Problem.MISSING_ENTRY: "Audit entry missing",
    Problem.BOGUS_HEAD: "Bogus audit checkpoint ignored",
    Problem.HEAD_CONTRADICTS_LOG: "Audit log contradicts a signed head",
    Problem.SEALING_STALLED: "Audit sealing stalled",
}
UNITS: Mapping[str, str] = {  # what ``matched`` counts, per kind
    Kind.BULK_READ: "distinct data subjects",
    Kind.OFF_HOURS: "actions on customer data",
    Kind.DENIAL_BURST: "refused requests",
    Kind.LARGE_EXPORT: "rows exported",
    Problem.FORGED_ENTRY: "entries",
    Problem.TAMPERED_ENTRY: "entries",
    Problem.MISSING_ENTRY: "entries",
    Problem.BOGUS_HEAD: "checkpoints",
    Problem.HEAD_CONTRADICTS_LOG: "checkpoints",
    Problem.SEALING_STALLED: "unsigned entries",
}
SEALER_ACTOR = "system:sealer"
INTEGRITY_RULE_ID = 0  # alerts the sealer raises belong to no rule
# How an alert was dealt with: a fixed choice, never free text (it ends up in the audit).
ACKNOWLEDGEMENTS: Mapping[str, str] = {
    "expected": "Expected activity",
    "investigating": "Investigating",
    "escalated": "Escalated",
    "false_positive": "False positive",
}
READ_ACTIONS = ("read", "list", "search", "export")
CUSTOMER_DATA_ACTIONS = ("read", "list", "search", "export", "create", "update", "delete", "locate")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

MAX_NAME = 100
MAX_THRESHOLD = 10_000_000
MAX_WINDOW_MINUTES = 7 * 24 * 60


# --- what the engine needs from the server (``server.mail.Mailer``, ``Settings``) --------------


class MailOutcome(Protocol):
    @property
    def sent(self) -> bool: ...

    @property
    def error(self) -> str: ...

    @property
    def queued(self) -> bool: ...  # not sent yet, but kept for a retry


class AlertMailer(Protocol):
    """Outgoing e-mail; ``enabled`` is False when no SMTP server is configured. The server
    gives the durable outbox (``server.outbox``): a failed message is retried, and the
    ``reference`` (the alert ids) comes back to :meth:`AlertEngine.delivery_settled`."""

    @property
    def enabled(self) -> bool: ...

    async def send(
        self, to: Sequence[str], subject: str, text: str, *, reference: str = ""
    ) -> MailOutcome: ...


class AlertSettings(Protocol):
    @property
    def alert_recipients(self) -> tuple[str, ...]: ...

    @property
    def public_url(self) -> str: ...


@asynccontextmanager
async def locked_transaction() -> AsyncIterator[None]:
    """One transaction that holds the alert lock until it commits.

    PostgreSQL: a transaction-scoped advisory lock (distinct from the audit append lock);
    SQLite: an IMMEDIATE transaction, which takes the database's single writer lock. Inside
    an outer transaction this joins it (Piccolo nests by reusing the outer one).
    """
    engine = AlertCursor._meta.db
    if isinstance(engine, SQLiteEngine):
        async with engine.transaction(transaction_type=TransactionType.immediate):
            yield
        return
    async with engine.transaction():
        await AlertCursor.raw("SELECT pg_advisory_xact_lock({})", PG_ALERT_LOCK)
        yield


# --- errors ----------------------------------------------------------------------------------


class AlertError(ValueError):
    """A refused rule or alert change; the message is safe to show."""


class AlertNotFound(AlertError):
    """No such rule or alert."""


class RuleInvalid(AlertError):
    """Rule settings that do not validate; ``problems`` maps setting -> reason."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.problems.items()))


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
        if self.kind not in set(Kind):
            problems["kind"] = "must be one of: " + ", ".join(Kind)
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
    RuleSettings(Kind.BULK_READ, "Bulk reads", threshold=200, window_minutes=10),
    RuleSettings(Kind.OFF_HOURS, "Access outside working hours", threshold=1, window_minutes=60),
    RuleSettings(Kind.DENIAL_BURST, "Burst of refused requests", threshold=10, window_minutes=5),
    RuleSettings(Kind.LARGE_EXPORT, "Large export", threshold=1000, window_minutes=60),
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
        if s.kind == Kind.BULK_READ:
            return f"{s.threshold:,} or more distinct data subjects read within {window}"
        if s.kind == Kind.OFF_HOURS:
            hours = (
                f"outside {s.work_start_hour:02d}:00-{s.work_end_hour:02d}:00, {s.work_days} "
                f"({s.timezone})"
            )
            if s.threshold == 1:
                return f"any action on customer data by staff {hours}"
            return f"{s.threshold:,} or more actions on customer data within {window} {hours}"
        if s.kind == Kind.DENIAL_BURST:
            return f"{s.threshold:,} or more refused requests within {window}"
        return f"an export of {s.threshold:,} or more rows (repeats within {window}: one alert)"

    def is_working_time(self, ts: dt.datetime) -> bool:
        local = ts.astimezone(ZoneInfo(self.settings.timezone))
        days = parse_work_days(self.settings.work_days)
        s = self.settings
        return local.weekday() in days and s.work_start_hour <= local.hour < s.work_end_hour


def _rule_of(row: Mapping[str, Any]) -> Rule:
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
        created_at=_utc(row["created_at"]),
        updated_by=str(row["updated_by"]),
        updated_at=_utc(row["updated_at"]),
    )


# --- alerts ------------------------------------------------------------------------------------


# "retrying:<code>": the first attempt failed; the mail outbox tries again with backoff.
RETRYING = "retrying:"
EMAIL_STATUS_TEXT = {
    "smtp_not_configured": "not sent: SMTP not configured",
    "no_recipients": "not sent: no alert recipients configured",
}


@dataclass(frozen=True)
class Alert:
    id: int
    rule_id: int
    rule_name: str
    kind: str
    actor_id: str
    actor_role: str
    window_start: dt.datetime
    window_end: dt.datetime
    matched: int
    first_seq: int
    last_seq: int
    created_at: dt.datetime
    notified_at: dt.datetime | None
    notify_error: str
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    acknowledgement: str

    @property
    def unit(self) -> str:
        return UNITS.get(self.kind, "events")

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None

    @property
    def acknowledgement_label(self) -> str:
        return ACKNOWLEDGEMENTS.get(self.acknowledgement, self.acknowledgement)

    @property
    def email_status(self) -> str:
        """What the console shows: e-mailed, not sent (and why), failed, or pending."""
        if self.notified_at is not None:
            return "e-mailed"
        if self.notify_error in EMAIL_STATUS_TEXT:
            return EMAIL_STATUS_TEXT[self.notify_error]
        if self.notify_error.startswith(RETRYING):
            return f"failed ({self.notify_error.removeprefix(RETRYING)}), retrying"
        if self.notify_error:
            return f"failed ({self.notify_error})"
        return "pending"


def _alert_of(row: Mapping[str, Any], rule_names: Mapping[int, str]) -> Alert:
    acknowledged_at = row["acknowledged_at"]
    notified_at = row["notified_at"]
    rule_id = int(row["rule_id"])
    return Alert(
        id=int(row["id"]),
        rule_id=rule_id,
        rule_name=rule_names.get(rule_id) or KIND_LABELS.get(str(row["kind"]), f"rule {rule_id}"),
        kind=str(row["kind"]),
        actor_id=str(row["actor_id"]),
        actor_role=str(row["actor_role"]),
        window_start=_utc(row["window_start"]),
        window_end=_utc(row["window_end"]),
        matched=int(row["matched"]),
        first_seq=int(row["first_seq"]),
        last_seq=int(row["last_seq"]),
        created_at=_utc(row["created_at"]),
        notified_at=_utc(notified_at) if notified_at is not None else None,
        notify_error=str(row["notify_error"] or ""),
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=_utc(acknowledged_at) if acknowledged_at is not None else None,
        acknowledgement=str(row["acknowledgement"] or ""),
    )


@dataclass(frozen=True)
class AlertPage:
    items: list[Alert]
    total: int
    page: int
    pages: int
    open_total: int


@dataclass(frozen=True)
class Changer:
    """Who changes a rule or an alert (a staff actor id like "user:12", and the role)."""

    actor_id: str
    actor_role: str
    request_id: str = ""


# --- detection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    seq: int
    ts: dt.datetime
    actor_id: str
    actor_role: str
    action: str
    outcome: str
    subjects: tuple[str, ...]
    rows: int


@dataclass
class _Episode:
    """A run of overlapping windows that matched: one alert (``alert_id`` when it exists)."""

    start: int  # index into the actor's event list
    end: int
    alert_id: int | None = None
    extended: bool = False  # a window at a new event joined it (always, for a new one)


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError("expected a timestamp")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _event_of(row: Mapping[str, Any]) -> _Event:
    try:
        subjects = tuple(str(s) for s in json.loads(row["subject_ids"] or "[]"))
    except (ValueError, TypeError):
        subjects = ()
    try:
        detail = json.loads(row["detail"] or "{}")
    except (ValueError, TypeError):
        detail = {}
    rows = 0
    if isinstance(detail, dict):
        for key in ("rows", "returned"):
            value = detail.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                rows = value
                break
    return _Event(
        seq=int(row["seq"]),
        ts=_utc(row["ts"]),
        actor_id=str(row["actor_id"]),
        actor_role=str(row["actor_role"]),
        action=str(row["action"]),
        outcome=str(row["outcome"]),
        subjects=subjects,
        rows=rows,
    )


def _qualifies(rule: Rule, event: _Event) -> bool:
    """Does this event count towards ``rule`` at all?"""
    kind = rule.kind
    if kind == Kind.BULK_READ:
        return event.action in READ_ACTIONS and bool(event.subjects)
    if kind == Kind.OFF_HOURS:
        return (
            event.action in CUSTOMER_DATA_ACTIONS
            and event.actor_id.startswith("user:")
            and not rule.is_working_time(event.ts)
        )
    if kind == Kind.DENIAL_BURST:
        return event.outcome == Outcome.DENIED
    if kind == Kind.LARGE_EXPORT:
        return event.action == "export" and event.rows >= rule.settings.threshold
    return False


def _prefilter(rule: Rule) -> Any:
    """The same test, coarsely, as SQL: which audit rows to load as context."""
    kind = rule.kind
    if kind == Kind.BULK_READ:
        return AuditRecord.action.is_in(list(READ_ACTIONS))
    if kind == Kind.OFF_HOURS:
        return AuditRecord.action.is_in(list(CUSTOMER_DATA_ACTIONS))
    if kind == Kind.DENIAL_BURST:
        return AuditRecord.outcome == str(Outcome.DENIED)
    return AuditRecord.action == "export"


class _Window:
    """What a sliding window over one actor's qualifying events currently measures."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.subjects: Counter[str] = Counter()
        self.events = 0

    def add(self, event: _Event) -> None:
        self.events += 1
        self.subjects.update(set(event.subjects))

    def remove(self, event: _Event) -> None:
        self.events -= 1
        self.subjects.subtract(set(event.subjects))
        for subject in set(event.subjects):
            if self.subjects[subject] <= 0:
                del self.subjects[subject]

    def triggered(self, threshold: int) -> bool:
        if self.kind == Kind.BULK_READ:
            return len(self.subjects) >= threshold
        if self.kind == Kind.LARGE_EXPORT:
            return self.events >= 1  # the size test is in _qualifies
        return self.events >= threshold


def _measure(kind: str, events: Sequence[_Event]) -> int:
    if kind == Kind.BULK_READ:
        return len({s for e in events for s in e.subjects})
    if kind == Kind.LARGE_EXPORT:
        return sum(e.rows for e in events)
    return len(events)


def _episodes(
    rule: Rule, events: Sequence[_Event], after_seq: int, seed: _Episode | None
) -> list[_Episode]:
    """Slide the rule's window over one actor's events (sorted by seq) and group the
    windows that matched at a *new* event (seq > after_seq) into episodes.

    A matching window that shares events with the previous episode - or with ``seed``,
    the actor's open alert - extends it; otherwise it starts a new episode. The seed is
    returned first (extended or not).
    """
    width = dt.timedelta(minutes=rule.settings.window_minutes)
    window = _Window(rule.kind)
    episodes: list[_Episode] = [seed] if seed is not None else []
    first = 0
    for last, event in enumerate(events):
        window.add(event)
        while events[first].ts <= event.ts - width:
            window.remove(events[first])
            first += 1
        if event.seq <= after_seq or not window.triggered(rule.settings.threshold):
            continue
        current = episodes[-1] if episodes else None
        if current is not None and first <= current.end:
            current.start = min(current.start, first)
            current.end = max(current.end, last)
            current.extended = True
        else:
            episodes.append(_Episode(first, last, extended=True))
    return episodes


@dataclass(frozen=True)
class _Found:
    """An episode to store: a new alert, or an extension of ``alert_id``."""

    rule: Rule
    actor_id: str
    actor_role: str
    start: _Event
    end: _Event
    matched: int
    alert_id: int | None = None


def _actor_episodes(
    rule: Rule,
    actor_id: str,
    events: Sequence[_Event],
    after_seq: int,
    open_alert: Mapping[str, Any] | None,
    *,
    clipped: bool = False,
) -> list[_Found]:
    """``clipped``: the context before the batch was cut at its oldest events, so a
    window starting at the first event may really reach further back - into the open
    alert, which then counts as extended."""
    seed = None
    if open_alert is not None and events:
        first_seq, last_seq = int(open_alert["first_seq"]), int(open_alert["last_seq"])
        inside = [i for i, e in enumerate(events) if first_seq <= e.seq <= last_seq]
        if inside:
            seed = _Episode(inside[0], inside[-1], alert_id=int(open_alert["id"]))
        elif clipped and events[0].seq > last_seq:
            seed = _Episode(0, 0, alert_id=int(open_alert["id"]))
    found: list[_Found] = []
    for episode in _episodes(rule, events, after_seq, seed):
        start, end = events[episode.start], events[episode.end]
        span = events[episode.start : episode.end + 1]
        matched = _measure(rule.kind, span)
        if episode.alert_id is not None and open_alert is not None:
            first_seq, last_seq = int(open_alert["first_seq"]), int(open_alert["last_seq"])
            if not episode.extended:
                continue  # the open alert, not extended by this batch
            if first_seq < start.seq:  # it began before the events read this time
                start = replace(start, seq=first_seq, ts=_utc(open_alert["window_start"]))
            matched = _extended_measure(
                rule.kind, int(open_alert["matched"]), span, first_seq, last_seq
            )
        found.append(
            _Found(
                rule=rule,
                actor_id=actor_id,
                actor_role=end.actor_role,
                start=start,
                end=end,
                matched=matched,
                alert_id=episode.alert_id,
            )
        )
    return found


def _context_limit(rule: Rule) -> int:
    """How many of an actor's latest earlier events decide every window ending in the
    batch: a count rule needs ``threshold - 1`` of them (with more in a window it matched
    before), a large export none (one export is the match), bulk reads enough events to
    hold ``threshold`` distinct people (twice the threshold, at most ``CONTEXT_ROWS``
    unless the threshold is larger)."""
    threshold = rule.settings.threshold
    if rule.kind == Kind.BULK_READ:
        return max(min(2 * threshold, CONTEXT_ROWS), threshold, 1)
    if rule.kind == Kind.LARGE_EXPORT:
        return 1
    return max(threshold, 1)


def _extended_measure(
    kind: str, stored: int, span: Sequence[_Event], first_seq: int, last_seq: int
) -> int:
    """An open alert's count grown by the events of ``span`` it did not hold yet (outside
    ``first_seq..last_seq``), without reading its older events again. For bulk reads the
    people are those not among the alert's events still in view: someone read again more
    than a window after their earlier read is counted again (an over-count, never an
    under-count)."""
    new = [e for e in span if not first_seq <= e.seq <= last_seq]
    if kind != Kind.BULK_READ:
        return stored + _measure(kind, new)
    seen = {s for e in span if first_seq <= e.seq <= last_seq for s in e.subjects}
    return stored + len({s for e in new for s in e.subjects} - seen)


# --- the engine -------------------------------------------------------------------------------


class AlertEngine:
    """Evaluates the rules over new audit events, keeps the alerts, sends the e-mails.

    Built once per process (``services.alerts``). ``evaluate()`` is safe to call from every
    worker at once; the console calls the rule and acknowledgement methods.
    """

    def __init__(self, audit: AuditLog, mailer: AlertMailer, settings: AlertSettings) -> None:
        self.audit = audit
        self.mailer = mailer
        self.settings = settings
        # Audit rows the evaluations of this process have read (new events and context):
        # what a run costs, so a test can show it does not grow with the log.
        self.rows_read = 0

    # -- evaluation --------------------------------------------------------------------------

    async def evaluate(self, now: dt.datetime | None = None) -> list[Alert]:
        """Evaluate every enabled rule over the audit events since the last run.

        Returns the alerts raised by this call (extended alerts are updated, not returned),
        after e-mailing them to ``settings.alert_recipients``.
        """
        now = _utc(now or dt.datetime.now(dt.UTC))
        if await self._caught_up():
            return []
        raised: list[int] = []
        for _ in range(MAX_BATCHES_PER_RUN):
            new_ids, more = await self._evaluate_batch(now)
            raised += new_ids
            if not more:
                break
        if not raised:
            return []
        alerts = await self._alerts_by_id(raised)
        return await self._notify(alerts, now)

    async def _caught_up(self) -> bool:
        """A lock-free look: nothing to do (the common case every 30 s) needs no lock."""
        cursor = await AlertCursor.select(AlertCursor.last_seq).first()
        if cursor is None:
            return False
        newest = (
            await AuditRecord.select(AuditRecord.seq)
            .order_by(AuditRecord.seq, ascending=False)
            .first()
        )
        return newest is None or int(newest["seq"]) <= int(cursor["last_seq"])

    async def _initialise(self, now: dt.datetime) -> int:
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

    async def _evaluate_batch(self, now: dt.datetime) -> tuple[list[int], bool]:
        async with locked_transaction():
            cursor = await self._initialise(now)
            rows = (
                await AuditRecord.select(*_EVENT_COLUMNS)
                .where(AuditRecord.seq > cursor)
                .order_by(AuditRecord.seq)
                .limit(BATCH_SIZE)
            )
            if not rows:
                return [], False
            self.rows_read += len(rows)
            events = [_event_of(r) for r in rows]
            upto = events[-1].seq
            rules = [
                _rule_of(r)
                for r in await AlertRule.select()
                .where(AlertRule.enabled == True)  # noqa: E712  # Piccolo builds SQL from ==
                .order_by(AlertRule.id)
            ]
            raised: list[int] = []
            for rule in rules:
                for found in await self._detect(rule, events, cursor, upto):
                    alert_id = await self._save(found, now)
                    if alert_id is not None:
                        raised.append(alert_id)
            await AlertCursor.update(
                {AlertCursor.last_seq: upto, AlertCursor.evaluated_at: now}, force=True
            )
            return raised, len(rows) == BATCH_SIZE

    async def _detect(
        self, rule: Rule, batch: Sequence[_Event], cursor: int, upto: int
    ) -> list[_Found]:
        """Episodes of ``rule`` that this batch starts or extends, per actor."""
        new = [e for e in batch if _qualifies(rule, e)]
        if not new:
            return []
        width = dt.timedelta(minutes=rule.settings.window_minutes)
        actors = sorted({e.actor_id for e in new})
        earliest = min(e.ts for e in new) - width
        # Each actor's latest alert of this rule that ended inside the context. If it is
        # open, new activity may extend it; if it was acknowledged, its events have been
        # dealt with and do not count again.
        recent = (
            await AuditAlert.select()
            .where(AuditAlert.rule_id == rule.id)
            .where(AuditAlert.actor_id.is_in(actors))
            .where(AuditAlert.window_end > earliest)
            .order_by(AuditAlert.last_seq)
        )
        latest = {str(r["actor_id"]): r for r in recent}  # the last one per actor wins
        open_alerts = {a: r for a, r in latest.items() if r["acknowledged_at"] is None}
        found: list[_Found] = []
        for actor_id in actors:
            done = latest.get(actor_id)
            # Already reported and acknowledged: those events do not count again.
            dealt_with = int(done["last_seq"]) if done and done["acknowledged_at"] else 0
            mine = [e for e in new if e.actor_id == actor_id and e.seq > dealt_with]
            earlier, clipped = await self._context(rule, actor_id, cursor, earliest)
            events = [e for e in earlier if e.seq > dealt_with and _qualifies(rule, e)] + mine
            found += _actor_episodes(
                rule, actor_id, events, cursor, open_alerts.get(actor_id), clipped=clipped
            )
        return found

    async def _context(
        self, rule: Rule, actor_id: str, cursor: int, earliest: dt.datetime
    ) -> tuple[list[_Event], bool]:
        """One actor's events before the batch that a window ending in it can reach: at
        most one window back, and of those only the newest few that can decide a window
        (``_context_limit``: a window holding more has matched already). Whether the cut
        was made is returned too. An open alert's older events
        are summed up in its stored count, so an episode that never ends, and an alert
        nobody acknowledges, cost the same every run and in memory."""
        limit = _context_limit(rule)
        rows = (
            await AuditRecord.select(*_EVENT_COLUMNS)
            .where(AuditRecord.actor_id == actor_id)
            .where(AuditRecord.seq <= cursor)
            .where(_prefilter(rule))
            .where(AuditRecord.ts > earliest)
            .order_by(AuditRecord.seq, ascending=False)
            .limit(limit)
        )
        self.rows_read += len(rows)
        return [_event_of(r) for r in reversed(rows)], len(rows) == limit

    async def _save(self, found: _Found, now: dt.datetime) -> int | None:
        """Insert a new alert (returns its id) or extend an open one (returns None)."""
        rule = found.rule
        detail: dict[str, int | str] = {
            "rule_id": rule.id,
            "kind": rule.kind,
            "matched": found.matched,
            "first_seq": found.start.seq,
            "last_seq": found.end.seq,
        }
        if found.alert_id is not None:
            await AuditAlert.update(
                {
                    AuditAlert.window_start: found.start.ts,
                    AuditAlert.window_end: found.end.ts,
                    AuditAlert.first_seq: found.start.seq,
                    AuditAlert.last_seq: found.end.seq,
                    AuditAlert.matched: found.matched,
                    AuditAlert.actor_role: found.actor_role,
                }
            ).where(AuditAlert.id == found.alert_id)
            await self._audit_system("alert.update", found.alert_id, detail)
            return None
        dedup_key = f"{rule.id}:{found.actor_id}:{found.start.seq}"
        if await AuditAlert.exists().where(AuditAlert.dedup_key == dedup_key):
            return None  # cannot happen under the lock; the unique key guards it anyway
        inserted = await AuditAlert.insert(
            AuditAlert(
                dedup_key=dedup_key,
                rule_id=rule.id,
                kind=rule.kind,
                actor_id=found.actor_id,
                actor_role=found.actor_role,
                window_start=found.start.ts,
                window_end=found.end.ts,
                matched=found.matched,
                first_seq=found.start.seq,
                last_seq=found.end.seq,
                created_at=now,
                notified_at=None,
                notify_error="",
                acknowledged_by=None,
                acknowledged_at=None,
                acknowledgement="",
            )
        ).returning(AuditAlert.id)
        alert_id = int(inserted[0]["id"])
        await self._audit_system("alert.create", alert_id, detail)
        log.info("audit alert raised", alert_id=alert_id, kind=rule.kind, rule_id=rule.id)
        return alert_id

    async def _audit_system(self, action: str, alert_id: int, detail: dict[str, int | str]) -> None:
        await self.audit.append(
            audit_event(
                actor_id=SYSTEM_ACTOR,
                actor_role="system",
                action=action,
                resource_type="alert",
                resource_id=str(alert_id),
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                detail=detail,
            )
        )

    async def raise_integrity_alert(
        self, finding: Finding, now: dt.datetime | None = None
    ) -> Alert | None:
        """An alert for a problem the sealer found (once per kind and position), e-mailed
        like the others. None if it was raised before."""
        now = _utc(now or dt.datetime.now(dt.UTC))
        dedup_key = f"integrity:{finding.kind}:{finding.seq}"
        async with locked_transaction():
            if await AuditAlert.exists().where(AuditAlert.dedup_key == dedup_key):
                return None
            inserted = await AuditAlert.insert(
                AuditAlert(
                    dedup_key=dedup_key,
                    rule_id=INTEGRITY_RULE_ID,
                    kind=str(finding.kind),
                    actor_id=SEALER_ACTOR,
                    actor_role="system",
                    window_start=now,
                    window_end=now,
                    matched=finding.count,
                    first_seq=finding.seq,
                    last_seq=finding.seq,
                    created_at=now,
                    notified_at=None,
                    notify_error="",
                    acknowledged_by=None,
                    acknowledged_at=None,
                    acknowledgement="",
                )
            ).returning(AuditAlert.id)
            alert_id = int(inserted[0]["id"])
            await self._audit_system(
                "alert.create",
                alert_id,
                {"kind": str(finding.kind), "seq": finding.seq, "matched": finding.count},
            )
        log.error("audit integrity alert raised", alert_id=alert_id, kind=str(finding.kind))
        alerts = await self._alerts_by_id([alert_id])
        return (await self._notify(alerts, now))[0]

    # -- e-mail ------------------------------------------------------------------------------

    async def _notify(self, alerts: list[Alert], now: dt.datetime) -> list[Alert]:
        """One e-mail for the alerts of this run; the outcome is stored on each alert."""
        recipients = self.settings.alert_recipients
        if not self.mailer.enabled:
            error = "smtp_not_configured"
        elif not recipients:
            error = "no_recipients"
        else:
            subject, text = self.compose_email(alerts)
            reference = ",".join(str(a.id) for a in alerts)
            result = await self.mailer.send(recipients, subject, text, reference=reference)
            if result.sent:
                error = ""
            else:
                error = (RETRYING if result.queued else "") + (result.error or "smtp_error")
        notified_at = now if not error else None
        async with locked_transaction():
            ids = [a.id for a in alerts]
            await AuditAlert.update(
                {AuditAlert.notified_at: notified_at, AuditAlert.notify_error: error}
            ).where(AuditAlert.id.is_in(ids))
            for alert in alerts:
                await self._audit_system(
                    "alert.notify",
                    alert.id,
                    {"status": error or "sent", "recipients": len(recipients)},
                )
        return [replace(a, notified_at=notified_at, notify_error=error) for a in alerts]

    async def delivery_settled(self, reference: str, at: dt.datetime, error: str) -> None:
        """The mail outbox's word on a retried alert e-mail: delivered (``error`` empty)
        or given up (``error`` is the last failure's code)."""
        ids = [int(part) for part in reference.split(",") if part.isdigit()]
        if not ids:
            return
        async with locked_transaction():
            await AuditAlert.update(
                {AuditAlert.notified_at: None if error else at, AuditAlert.notify_error: error}
            ).where(AuditAlert.id.is_in(ids))
            for alert_id in ids:
                await self._audit_system(
                    "alert.notify", alert_id, {"status": error or "sent", "retried": 1}
                )

    def compose_email(self, alerts: Sequence[Alert]) -> tuple[str, str]:
        """Subject and body. Staff actor ids, counts and times only - no customer data."""
        link = f"{self.settings.public_url}/compliance/alerts"
        if len(alerts) == 1:
            subject = f"[Consentry] Audit alert: {alerts[0].rule_name} ({alerts[0].actor_id})"
        else:
            subject = f"[Consentry] {len(alerts)} new audit alerts"
        lines = [
            f"Consentry raised {len(alerts)} new audit alert{'s' if len(alerts) != 1 else ''}.",
            "",
        ]
        for alert in alerts:
            lines += [
                f"Alert #{alert.id}: {alert.rule_name} ({alert.kind_label})",
                f"  Actor:  {alert.actor_id} (role: {alert.actor_role})",
                f"  Count:  {alert.matched:,} {alert.unit}",
                f"  Window: {_when(alert.window_start)} to {_when(alert.window_end)}",
                f"  Audit events: #{alert.first_seq} to #{alert.last_seq}",
                "",
            ]
        lines += [
            f"Review and acknowledge: {link}",
            "",
            "This message names staff accounts and audit sequence numbers only; it contains "
            "no customer data. Details are in the compliance console.",
        ]
        return subject, "\n".join(lines) + "\n"

    # -- reading -----------------------------------------------------------------------------

    async def list_rules(self) -> list[Rule]:
        rows = await AlertRule.select().order_by(AlertRule.id)
        return [_rule_of(r) for r in rows]

    async def get_rule(self, rule_id: int) -> Rule:
        row = await AlertRule.select().where(AlertRule.id == rule_id).first()
        if row is None:
            raise AlertNotFound("no such alert rule")
        return _rule_of(row)

    async def initialised(self) -> bool:
        """Have the default rules been created yet (by a first evaluation or rule change)?"""
        return bool(await AlertCursor.exists())

    async def list_alerts(self, *, state: str = "open", page: int = 1) -> AlertPage:
        """A page of alerts, newest first. ``state``: "open", "acknowledged" or "all"."""
        query = AuditAlert.select()
        count = AuditAlert.count()
        if state == "open":
            query = query.where(AuditAlert.acknowledged_at.is_null())
            count = count.where(AuditAlert.acknowledged_at.is_null())
        elif state == "acknowledged":
            query = query.where(AuditAlert.acknowledged_at.is_not_null())
            count = count.where(AuditAlert.acknowledged_at.is_not_null())
        total = int(await count)
        open_total = int(await AuditAlert.count().where(AuditAlert.acknowledged_at.is_null()))
        pages = max(1, (total + ALERTS_PAGE_SIZE - 1) // ALERTS_PAGE_SIZE)
        page = max(1, min(page, pages))
        rows = (
            await query.order_by(AuditAlert.id, ascending=False)
            .limit(ALERTS_PAGE_SIZE)
            .offset((page - 1) * ALERTS_PAGE_SIZE)
        )
        names = await self._rule_names()
        return AlertPage([_alert_of(r, names) for r in rows], total, page, pages, open_total)

    async def get_alert(self, alert_id: int) -> Alert:
        row = await AuditAlert.select().where(AuditAlert.id == alert_id).first()
        if row is None:
            raise AlertNotFound("no such alert")
        return _alert_of(row, await self._rule_names())

    async def _alerts_by_id(self, ids: Sequence[int]) -> list[Alert]:
        rows = await AuditAlert.select().where(AuditAlert.id.is_in(list(ids)))
        names = await self._rule_names()
        return sorted((_alert_of(r, names) for r in rows), key=lambda a: a.id)

    async def _rule_names(self) -> dict[int, str]:
        rows = await AlertRule.select(AlertRule.id, AlertRule.name)
        return {int(r["id"]): str(r["name"]) for r in rows}

    # -- changes (each audited in its own transaction) ----------------------------------------

    async def create_rule(
        self,
        settings: RuleSettings,
        *,
        by: Changer,
        now: dt.datetime | None = None,
    ) -> Rule:
        clean = settings.validated()
        now = _utc(now or dt.datetime.now(dt.UTC))
        async with locked_transaction():
            await self._initialise(now)
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
                name=settings.name,
                threshold=settings.threshold,
                window_minutes=settings.window_minutes,
                work_start_hour=settings.work_start_hour,
                work_end_hour=settings.work_end_hour,
                work_days=settings.work_days,
                timezone=settings.timezone,
                enabled=settings.enabled,
                created_by=by.actor_id,
                created_at=now,
                updated_by=by.actor_id,
                updated_at=now,
            )
        ).returning(AlertRule.id)
        rule_id = int(inserted[0]["id"])
        await self.audit.append(
            audit_event(
                actor_id=by.actor_id,
                actor_role=by.actor_role,
                action="alert_rule.create",
                resource_type="alert_rule",
                resource_id=str(rule_id),
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                fields=tuple(_SETTING_NAMES),
                reason=reason,
                request_id=by.request_id,
                detail=_rule_detail(settings),
            )
        )
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
        clean = settings.validated()
        now = _utc(now or dt.datetime.now(dt.UTC))
        async with locked_transaction():
            await self._initialise(now)
            current = await self.get_rule(rule_id)
            if clean.kind != current.kind:
                raise RuleInvalid({"kind": "cannot be changed; create a new rule instead"})
            changed = tuple(
                name
                for name in _SETTING_NAMES
                if getattr(clean, name) != getattr(current.settings, name)
            )
            if not changed:
                return current
            await AlertRule.update(
                {
                    AlertRule.name: clean.name,
                    AlertRule.threshold: clean.threshold,
                    AlertRule.window_minutes: clean.window_minutes,
                    AlertRule.work_start_hour: clean.work_start_hour,
                    AlertRule.work_end_hour: clean.work_end_hour,
                    AlertRule.work_days: clean.work_days,
                    AlertRule.timezone: clean.timezone,
                    AlertRule.enabled: clean.enabled,
                    AlertRule.updated_by: by.actor_id,
                    AlertRule.updated_at: now,
                }
            ).where(AlertRule.id == rule_id)
            await self.audit.append(
                audit_event(
                    actor_id=by.actor_id,
                    actor_role=by.actor_role,
                    action="alert_rule.update",
                    resource_type="alert_rule",
                    resource_id=str(rule_id),
                    outcome=Outcome.ALLOWED,
                    purpose=PURPOSE,
                    fields=changed,
                    request_id=by.request_id,
                    detail=_rule_detail(clean),
                )
            )
        return await self.get_rule(rule_id)

    async def set_rule_enabled(
        self,
        rule_id: int,
        enabled: bool,
        *,
        by: Changer,
    ) -> Rule:
        current = await self.get_rule(rule_id)
        return await self.update_rule(
            rule_id,
            replace(current.settings, enabled=enabled),
            by=by,
        )

    async def acknowledge(
        self,
        alert_id: int,
        outcome: str,
        *,
        by: Changer,
        now: dt.datetime | None = None,
    ) -> Alert:
        """Record how an alert was dealt with. Changing the outcome later (investigating ->
        escalated) is allowed and audited each time."""
        if outcome not in ACKNOWLEDGEMENTS:
            raise AlertError("choose one of: " + ", ".join(ACKNOWLEDGEMENTS.values()).lower())
        now = _utc(now or dt.datetime.now(dt.UTC))
        async with locked_transaction():
            current = await self.get_alert(alert_id)
            previous = current.acknowledgement
            await AuditAlert.update(
                {
                    AuditAlert.acknowledged_by: by.actor_id,
                    AuditAlert.acknowledged_at: now,
                    AuditAlert.acknowledgement: outcome,
                }
            ).where(AuditAlert.id == alert_id)
            await self.audit.append(
                audit_event(
                    actor_id=by.actor_id,
                    actor_role=by.actor_role,
                    action="alert.acknowledge",
                    resource_type="alert",
                    resource_id=str(alert_id),
                    outcome=Outcome.ALLOWED,
                    purpose=PURPOSE,
                    request_id=by.request_id,
                    detail={
                        "acknowledgement": outcome,
                        "previous": previous or "open",
                        "rule_id": current.rule_id,
                        "kind": current.kind,
                    },
                )
            )
        return await self.get_alert(alert_id)


_EVENT_COLUMNS = (
    AuditRecord.seq,
    AuditRecord.ts,
    AuditRecord.actor_id,
    AuditRecord.actor_role,
    AuditRecord.action,
    AuditRecord.outcome,
    AuditRecord.subject_ids,
    AuditRecord.detail,
)
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


def _when(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
