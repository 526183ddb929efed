"""Evaluation: running the enabled rules over new audit events and storing what matched.

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
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from audit.alert_tables import AlertCursor, AlertRule, AuditAlert
from audit.alerts.model import audit_alert_change, locked_transaction, utc
from audit.alerts.rules import (
    CUSTOMER_DATA_ACTIONS,
    READ_ACTIONS,
    Rule,
    RuleBook,
    RuleKind,
    rule_of,
)
from audit.events import Outcome
from audit.log import AuditLog
from audit.tables import AuditRecord

log = structlog.get_logger("consentry.alerts")

BATCH_SIZE = 2000  # audit events per evaluation transaction
CONTEXT_ROWS = 2000  # at most this many earlier events per actor and rule (or the threshold)
MAX_BATCHES_PER_RUN = 25  # a long backlog is worked off over several runs

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
        ts=utc(row["ts"]),
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
    if kind == RuleKind.BULK_READ:
        return event.action in READ_ACTIONS and bool(event.subjects)
    if kind == RuleKind.OFF_HOURS:
        return (
            event.action in CUSTOMER_DATA_ACTIONS
            and event.actor_id.startswith("user:")
            and not rule.is_working_time(event.ts)
        )
    if kind == RuleKind.DENIAL_BURST:
        return event.outcome == Outcome.DENIED
    if kind == RuleKind.LARGE_EXPORT:
        return event.action == "export" and event.rows >= rule.settings.threshold
    return False


def _prefilter(rule: Rule) -> Any:
    """The same test, coarsely, as SQL: which audit rows to load as context."""
    kind = rule.kind
    if kind == RuleKind.BULK_READ:
        return AuditRecord.action.is_in(list(READ_ACTIONS))
    if kind == RuleKind.OFF_HOURS:
        return AuditRecord.action.is_in(list(CUSTOMER_DATA_ACTIONS))
    if kind == RuleKind.DENIAL_BURST:
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
        if self.kind == RuleKind.BULK_READ:
            return len(self.subjects) >= threshold
        if self.kind == RuleKind.LARGE_EXPORT:
            return self.events >= 1  # the size test is in _qualifies
        return self.events >= threshold


def _measure(kind: str, events: Sequence[_Event]) -> int:
    if kind == RuleKind.BULK_READ:
        return len({s for e in events for s in e.subjects})
    if kind == RuleKind.LARGE_EXPORT:
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
                start = replace(start, seq=first_seq, ts=utc(open_alert["window_start"]))
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
    if rule.kind == RuleKind.BULK_READ:
        return max(min(2 * threshold, CONTEXT_ROWS), threshold, 1)
    if rule.kind == RuleKind.LARGE_EXPORT:
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
    if kind != RuleKind.BULK_READ:
        return stored + _measure(kind, new)
    seen = {s for e in span if first_seq <= e.seq <= last_seq for s in e.subjects}
    return stored + len({s for e in new for s in e.subjects} - seen)


# --- the evaluator ------------------------------------------------------------------------------


class Evaluator:
    """Works the audit log off from the cursor, batch by batch, under the alert lock, and
    stores the episodes it finds as new or extended alerts (each change audited)."""

    def __init__(self, audit: AuditLog, rules: RuleBook) -> None:
        self.audit = audit
        self.rules = rules
        # Audit rows the evaluations of this process have read (new events and context):
        # what a run costs, so a test can show it does not grow with the log.
        self.rows_read = 0

    async def run(self, now: dt.datetime) -> list[int]:
        """Evaluate every enabled rule over the audit events since the last run (at most
        ``MAX_BATCHES_PER_RUN`` batches). Returns the ids of the alerts raised; extended
        alerts are updated, not returned."""
        if await self._caught_up():
            return []
        raised: list[int] = []
        for _ in range(MAX_BATCHES_PER_RUN):
            new_ids, more = await self._evaluate_batch(now)
            raised += new_ids
            if not more:
                break
        return raised

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

    async def _evaluate_batch(self, now: dt.datetime) -> tuple[list[int], bool]:
        async with locked_transaction():
            cursor = await self.rules.initialise(now)
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
                rule_of(r)
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
            await audit_alert_change(self.audit, "alert.update", found.alert_id, detail)
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
        await audit_alert_change(self.audit, "alert.create", alert_id, detail)
        log.info("audit alert raised", alert_id=alert_id, kind=rule.kind, rule_id=rule.id)
        return alert_id
