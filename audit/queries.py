"""Read-only compliance queries over the audit log: who looked at which customer, and why.

A compliance officer must answer "who accessed this person's data?" in seconds without
reading any record. Everything here reads the ``audit`` table only, and only metadata:
ids, field names, purposes, outcomes and counts (the log holds nothing else).

Design notes:

- **Keyset pagination by ``seq``** (unique, indexed): pages stay fast and stable while new
  events are appended at the top, which offset paging would shift under the reader.
- **Subject filter**: ``subject_ids`` is a JSON text array, so a subject is matched with
  ``LIKE '%"<uuid>"%'``. The id is validated and canonicalised as a UUID first, so it can
  contain no ``%`` or ``_`` wildcard, and the quotes stop one id matching inside another.
  That LIKE cannot use an index, so a subject filter always needs a time range (at most
  ``MAX_REPORT_RANGE``), which the ``ts`` index narrows before the LIKE runs.
- **Summaries are grouped in SQL** (``GROUP BY`` on a handful of low-cardinality columns
  with COUNT/MIN/MAX) and only the groups are folded in Python, so a report over a busy
  year reads hundreds of group rows, not millions of events. Group reads are capped and
  the reports say when a cap was hit rather than silently under-counting.
- **The activity histogram** buckets in SQL too. The two engines spell "truncate a
  timestamp to the hour" differently, so the bucket expression is one of two constants
  (never built from input) producing the same ``YYYY-MM-DD HH`` text on both; every value
  is a bound parameter. Reading each event into Python instead would make the console's
  landing page scan a month of events on every visit.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from piccolo.query.functions.aggregate import Count, Max, Min

from audit.events import Outcome
from audit.tables import AuditRecord

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_REPORT_RANGE = dt.timedelta(days=366)  # reports and subject searches
MAX_HISTOGRAM_RANGE = dt.timedelta(days=90)
MAX_GROUP_ROWS = 20_000  # group rows read for one summary before it is marked incomplete
MAX_SUBJECT_SCAN = 50_000  # distinct subject lists read to count a staff member's subjects

# Audit codes are short machine words ("contact", "audit.search", "user:12"); anything
# else cannot match a stored value, so it is refused with a message rather than searched.
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")
FILTER_LIMITS = {  # column widths of audit.tables.AuditRecord
    "actor_id": 64,
    "action": 32,
    "resource_type": 32,
    "resource_id": 64,
    "purpose": 64,
}
OUTCOMES = tuple(o.value for o in Outcome)
BUCKET_STEPS: dict[str, dt.timedelta] = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
BUCKET_EXPRESSIONS = {  # (engine, bucket) -> SQL giving "YYYY-MM-DD HH" / "YYYY-MM-DD" in UTC
    ("sqlite", "hour"): "strftime('%Y-%m-%d %H', ts)",  # stored as UTC ISO text
    ("sqlite", "day"): "strftime('%Y-%m-%d', ts)",
    ("postgres", "hour"): "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')",
    ("postgres", "day"): "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
BUCKET_KEY_FORMATS = {"hour": "%Y-%m-%d %H", "day": "%Y-%m-%d"}


class InvalidFilter(ValueError):
    """Input a compliance query cannot run with; ``problems`` maps a filter to a sentence.

    The sentences name the filter and the rule, never echo the value (an officer may have
    pasted an e-mail address into the wrong box).
    """

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{name}: {text}" for name, text in self.problems.items()))


def canonical_subject_id(value: str) -> str:
    """The stored spelling of a subject id (lower-case, hyphenated), or InvalidFilter."""
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        raise InvalidFilter(
            {
                "subject_id": "must be a UUID such as 123e4567-e89b-42d3-a456-426614174000 "
                "(a subject id is never a name or an e-mail address)"
            }
        ) from None


def _utc(value: dt.datetime, name: str, problems: dict[str, str]) -> dt.datetime | None:
    if value.tzinfo is None or value.utcoffset() is None:
        problems[name] = "must carry a time zone"
        return None
    return value.astimezone(dt.UTC)


@dataclass(frozen=True)
class EventFilter:
    """Which audit events to read. Every filter is optional and they combine with AND.

    ``since`` is inclusive and ``until`` exclusive, both time-zone aware. Values are
    checked (and ids canonicalised) on construction, so an ``EventFilter`` that exists is
    one that can be searched; bad input raises :class:`InvalidFilter`.
    """

    subject_id: str | None = None
    actor_id: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    purpose: str | None = None
    outcome: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def __post_init__(self) -> None:
        problems: dict[str, str] = {}
        if self.subject_id:
            try:
                object.__setattr__(self, "subject_id", canonical_subject_id(self.subject_id))
            except InvalidFilter as exc:
                problems.update(exc.problems)
        for name, limit in FILTER_LIMITS.items():
            value = getattr(self, name)
            if value is None or value == "":
                object.__setattr__(self, name, None)
                continue
            if len(value) > limit:
                problems[name] = f"must be at most {limit} characters"
            elif not CODE.match(value):
                problems[name] = "may contain only letters, digits and . _ : @ -"
        if self.outcome == "":
            object.__setattr__(self, "outcome", None)
        elif self.outcome is not None and self.outcome not in OUTCOMES:
            problems["outcome"] = "must be one of " + ", ".join(OUTCOMES)
        since = _utc(self.since, "since", problems) if self.since else None
        until = _utc(self.until, "until", problems) if self.until else None
        object.__setattr__(self, "since", since)
        object.__setattr__(self, "until", until)
        if since and until and since >= until:
            problems["until"] = "must be after the start of the range"
        if self.subject_id and "subject_id" not in problems:
            # The subject match is a LIKE over JSON text: keep it inside an index range.
            if since is None or until is None:
                problems.setdefault("since", "a search by subject id needs a start and an end")
            elif until - since > MAX_REPORT_RANGE:
                problems["since"] = (
                    f"a search by subject id covers at most {MAX_REPORT_RANGE.days} days"
                )
        if problems:
            raise InvalidFilter(problems)

    def names(self) -> tuple[str, ...]:
        """The filters in use (for the audit event of a search: names, not values)."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is not None)


@dataclass(frozen=True)
class EventRow:
    """One audit event as the console shows it (the JSON columns parsed)."""

    seq: int
    ts: dt.datetime
    actor_id: str
    actor_role: str
    action: str
    resource_type: str
    resource_id: str | None
    subject_ids: tuple[str, ...]
    fields: tuple[str, ...]
    purpose: str
    outcome: str
    reason: str
    request_id: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class EventPage:
    """Newest first. ``older`` / ``newer`` are the cursors for the neighbouring pages
    (``before_seq`` / ``after_seq``), or None at either end."""

    events: tuple[EventRow, ...]
    older: int | None
    newer: int | None


@dataclass(frozen=True)
class ActorSummary:
    """Everything one staff member (or job) did to a subject's data in the range."""

    actor_id: str
    roles: tuple[str, ...]
    events: int
    denied: int
    first: dt.datetime
    last: dt.datetime
    actions: tuple[str, ...]
    purposes: tuple[str, ...]
    fields: tuple[str, ...]


@dataclass(frozen=True)
class SubjectAccesses:
    subject_id: str
    since: dt.datetime
    until: dt.datetime
    total: int
    actors: tuple[ActorSummary, ...]  # most recent access first
    events: EventPage
    complete: bool  # False if the summary hit MAX_GROUP_ROWS


@dataclass(frozen=True)
class StaffActivity:
    actor_id: str
    since: dt.datetime
    until: dt.datetime
    total: int
    roles: tuple[str, ...]
    by_action: tuple[tuple[str, int], ...]  # largest first
    by_resource_type: tuple[tuple[str, int], ...]
    by_purpose: tuple[tuple[str, int], ...]
    by_outcome: tuple[tuple[str, int], ...]
    distinct_subjects: int
    first: dt.datetime | None
    last: dt.datetime | None
    events: EventPage
    complete: bool  # False if a cap was hit (then the counts are lower bounds)


@dataclass(frozen=True)
class ActorCount:
    """One actor's share of the log in a range (the staff activity index)."""

    actor_id: str
    roles: tuple[str, ...]
    events: int
    denied: int
    first: dt.datetime
    last: dt.datetime


@dataclass(frozen=True)
class ActorOverview:
    since: dt.datetime
    until: dt.datetime
    actors: tuple[ActorCount, ...]  # most events first
    complete: bool


@dataclass(frozen=True)
class DenialGroup:
    actor_id: str
    actor_role: str
    reason: str
    count: int
    first: dt.datetime
    last: dt.datetime
    resource_types: tuple[str, ...]


@dataclass(frozen=True)
class Denials:
    since: dt.datetime
    until: dt.datetime
    total: int
    groups: tuple[DenialGroup, ...]  # most denials first
    events: EventPage
    complete: bool


@dataclass(frozen=True)
class HistogramBucket:
    start: dt.datetime
    allowed: int
    denied: int
    error: int

    @property
    def total(self) -> int:
        return self.allowed + self.denied + self.error


@dataclass(frozen=True)
class Histogram:
    bucket: str
    since: dt.datetime
    until: dt.datetime
    buckets: tuple[HistogramBucket, ...]  # oldest first, empty buckets included


# --- parsing rows -----------------------------------------------------------------------------


def _as_datetime(value: Any) -> dt.datetime:
    """A ``ts`` as both engines return it (aggregates come back as text from SQLite)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _json_list(text: Any) -> tuple[str, ...]:
    """A JSON array column; a malformed one reads as empty (``verify`` reports tampering)."""
    try:
        value = json.loads(text or "[]")
    except (TypeError, ValueError):
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _json_object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def event_row(row: Mapping[str, Any]) -> EventRow:
    return EventRow(
        seq=int(row["seq"]),
        ts=_as_datetime(row["ts"]),
        actor_id=str(row["actor_id"]),
        actor_role=str(row["actor_role"]),
        action=str(row["action"]),
        resource_type=str(row["resource_type"]),
        resource_id=None if row["resource_id"] is None else str(row["resource_id"]),
        subject_ids=_json_list(row["subject_ids"]),
        fields=_json_list(row["fields"]),
        purpose=str(row["purpose"]),
        outcome=str(row["outcome"]),
        reason=str(row["reason"]),
        request_id=str(row["request_id"]),
        detail=_json_object(row["detail"]),
    )


# --- queries ----------------------------------------------------------------------------------

EVENT_COLUMNS = (
    AuditRecord.seq,
    AuditRecord.ts,
    AuditRecord.actor_id,
    AuditRecord.actor_role,
    AuditRecord.action,
    AuditRecord.resource_type,
    AuditRecord.resource_id,
    AuditRecord.subject_ids,
    AuditRecord.fields,
    AuditRecord.purpose,
    AuditRecord.outcome,
    AuditRecord.reason,
    AuditRecord.request_id,
    AuditRecord.detail,
)


def _conditions(filters: EventFilter) -> list[Any]:
    conditions: list[Any] = []
    if filters.subject_id:
        # Safe as a LIKE pattern: a canonical UUID holds only hex digits and hyphens.
        conditions.append(AuditRecord.subject_ids.like(f'%"{filters.subject_id}"%'))
    for name in ("actor_id", "action", "resource_type", "resource_id", "purpose", "outcome"):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(getattr(AuditRecord, name) == value)
    if filters.since is not None:
        conditions.append(AuditRecord.ts >= filters.since)
    if filters.until is not None:
        conditions.append(AuditRecord.ts < filters.until)
    return conditions


def _where(query: Any, conditions: Iterable[Any]) -> Any:
    for condition in conditions:
        query = query.where(condition)
    return query


def check_page(page_size: int, before_seq: int | None, after_seq: int | None) -> None:
    """A page size and position as every paged read here takes them (also
    :mod:`audit.subject_events`), refused with a message per field otherwise."""
    problems: dict[str, str] = {}
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        problems["page_size"] = f"must be between 1 and {MAX_PAGE_SIZE}"
    if before_seq is not None and after_seq is not None:
        problems["before"] = "give either an older-page or a newer-page position, not both"
    for name, value in (("before", before_seq), ("after", after_seq)):
        if value is not None and value < 0:
            problems[name] = "must be a positive number"
    if problems:
        raise InvalidFilter(problems)


async def search(
    filters: EventFilter,
    *,
    before_seq: int | None = None,
    after_seq: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> EventPage:
    """One page of matching events, newest first.

    No cursor: the newest page. ``before_seq``: the page of events older than that one
    (the "older" link). ``after_seq``: the page just newer than it (the "newer" link).
    One extra row is read to know whether the page has a further neighbour, and one
    existence check answers the other direction.
    """
    check_page(page_size, before_seq, after_seq)
    conditions = _conditions(filters)
    query = _where(AuditRecord.select(*EVENT_COLUMNS), conditions)
    if after_seq is not None:  # walking towards newer events: read upwards, show reversed
        upwards = query.where(AuditRecord.seq > after_seq).order_by(AuditRecord.seq)
        rows = await upwards.limit(page_size + 1)
        events = tuple(event_row(r) for r in reversed(rows[:page_size]))
        more_newer = len(rows) > page_size
        more_older = bool(events) and await events_exist(
            conditions, AuditRecord.seq < events[-1].seq
        )
    else:
        if before_seq is not None:
            query = query.where(AuditRecord.seq < before_seq)
        rows = await query.order_by(AuditRecord.seq, ascending=False).limit(page_size + 1)
        events = tuple(event_row(r) for r in rows[:page_size])
        more_older = len(rows) > page_size
        more_newer = (
            before_seq is not None
            and bool(events)
            and await events_exist(conditions, AuditRecord.seq > events[0].seq)
        )
    if not events:
        return EventPage((), None, None)
    return EventPage(
        events,
        older=events[-1].seq if more_older else None,
        newer=events[0].seq if more_newer else None,
    )


async def events_exist(conditions: Iterable[Any], extra: Any) -> bool:
    """Whether a newer or older page exists, without counting it."""
    found = await _where(AuditRecord.select(AuditRecord.seq), [*conditions, extra]).first()
    return found is not None


async def matching_seqs(filters: EventFilter, *, limit: int) -> tuple[list[int], bool]:
    """The sequence numbers of the newest ``limit`` matching events (oldest first), and
    whether more matched. For exports, which are capped rather than unbounded."""
    if limit < 1:
        raise InvalidFilter({"limit": "must be at least 1"})
    rows = await (
        _where(AuditRecord.select(AuditRecord.seq), _conditions(filters))
        .order_by(AuditRecord.seq, ascending=False)
        .limit(limit + 1)
    )
    seqs = sorted(int(r["seq"]) for r in rows[:limit])
    return seqs, len(rows) > limit


def report_range(since: dt.datetime, until: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """A report's time range, checked: aware, ordered, at most ``MAX_REPORT_RANGE``."""
    checked = EventFilter(since=since, until=until)
    assert checked.since is not None  # both given, so both set
    assert checked.until is not None
    if checked.until - checked.since > MAX_REPORT_RANGE:
        raise InvalidFilter({"since": f"a report covers at most {MAX_REPORT_RANGE.days} days"})
    return checked.since, checked.until


async def _groups(conditions: list[Any], *columns: Any) -> tuple[list[dict[str, Any]], bool]:
    """COUNT / MIN(ts) / MAX(ts) per distinct combination of ``columns``; capped."""
    query = _where(
        AuditRecord.select(
            *columns,
            Count(alias="n"),
            Min(AuditRecord.ts, alias="first"),
            Max(AuditRecord.ts, alias="last"),
        ),
        conditions,
    ).group_by(*columns)
    rows: list[dict[str, Any]] = await query.limit(MAX_GROUP_ROWS + 1)
    return rows[:MAX_GROUP_ROWS], len(rows) <= MAX_GROUP_ROWS


def _ordered(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v for v in values if v}))


def _by_count(counter: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


async def subject_accesses(
    subject_id: str,
    since: dt.datetime,
    until: dt.datetime,
    *,
    before_seq: int | None = None,
    after_seq: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> SubjectAccesses:
    """Who accessed this customer's data between ``since`` and ``until``: one summary per
    actor (role, number of events, first and last time, actions, purposes, fields) and
    a page of the events themselves."""
    since, until = report_range(since, until)
    filters = EventFilter(subject_id=subject_id, since=since, until=until)
    assert filters.subject_id is not None  # canonicalised by EventFilter
    groups, complete = await _groups(
        _conditions(filters),
        AuditRecord.actor_id,
        AuditRecord.actor_role,
        AuditRecord.action,
        AuditRecord.purpose,
        AuditRecord.fields,
        AuditRecord.outcome,
    )
    by_actor: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        by_actor.setdefault(str(group["actor_id"]), []).append(group)
    actors = [
        ActorSummary(
            actor_id=actor_id,
            roles=_ordered(str(g["actor_role"]) for g in rows),
            events=sum(int(g["n"]) for g in rows),
            denied=sum(int(g["n"]) for g in rows if g["outcome"] == Outcome.DENIED),
            first=min(_as_datetime(g["first"]) for g in rows),
            last=max(_as_datetime(g["last"]) for g in rows),
            actions=_ordered(str(g["action"]) for g in rows),
            purposes=_ordered(str(g["purpose"]) for g in rows),
            fields=_ordered(f for g in rows for f in _json_list(g["fields"])),
        )
        for actor_id, rows in by_actor.items()
    ]
    actors.sort(key=lambda a: (a.last, a.actor_id), reverse=True)
    page = await search(filters, before_seq=before_seq, after_seq=after_seq, page_size=page_size)
    return SubjectAccesses(
        subject_id=filters.subject_id,
        since=since,
        until=until,
        total=sum(a.events for a in actors),
        actors=tuple(actors),
        events=page,
        complete=complete,
    )


async def staff_activity(
    actor_id: str,
    since: dt.datetime,
    until: dt.datetime,
    *,
    before_seq: int | None = None,
    after_seq: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> StaffActivity:
    """What one staff member did in the range: counts by action, record type, purpose
    and outcome, how many different customers they touched, and their events."""
    since, until = report_range(since, until)
    filters = EventFilter(actor_id=actor_id, since=since, until=until)
    conditions = _conditions(filters)
    groups, complete = await _groups(
        conditions,
        AuditRecord.actor_role,
        AuditRecord.action,
        AuditRecord.resource_type,
        AuditRecord.purpose,
        AuditRecord.outcome,
    )
    counters: dict[str, Counter[str]] = {
        name: Counter() for name in ("action", "resource_type", "purpose", "outcome")
    }
    for group in groups:
        for name, counter in counters.items():
            counter[str(group[name])] += int(group["n"])
    subject_lists = await _where(
        AuditRecord.select(AuditRecord.subject_ids).distinct(), conditions
    ).limit(MAX_SUBJECT_SCAN + 1)
    subjects = {
        s for row in subject_lists[:MAX_SUBJECT_SCAN] for s in _json_list(row["subject_ids"])
    }
    page = await search(filters, before_seq=before_seq, after_seq=after_seq, page_size=page_size)
    return StaffActivity(
        actor_id=str(filters.actor_id),
        since=since,
        until=until,
        total=sum(int(g["n"]) for g in groups),
        roles=_ordered(str(g["actor_role"]) for g in groups),
        by_action=_by_count(counters["action"]),
        by_resource_type=_by_count(counters["resource_type"]),
        by_purpose=_by_count(counters["purpose"]),
        by_outcome=_by_count(counters["outcome"]),
        distinct_subjects=len(subjects),
        first=min((_as_datetime(g["first"]) for g in groups), default=None),
        last=max((_as_datetime(g["last"]) for g in groups), default=None),
        events=page,
        complete=complete and len(subject_lists) <= MAX_SUBJECT_SCAN,
    )


async def actor_overview(since: dt.datetime, until: dt.datetime) -> ActorOverview:
    """Every staff member (and system job) with events in the range, busiest first: the
    way into a single person's activity report when you do not start from a customer."""
    since, until = report_range(since, until)
    groups, complete = await _groups(
        _conditions(EventFilter(since=since, until=until)),
        AuditRecord.actor_id,
        AuditRecord.actor_role,
        AuditRecord.outcome,
    )
    by_actor: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        by_actor.setdefault(str(group["actor_id"]), []).append(group)
    actors = [
        ActorCount(
            actor_id=actor_id,
            roles=_ordered(str(g["actor_role"]) for g in rows),
            events=sum(int(g["n"]) for g in rows),
            denied=sum(int(g["n"]) for g in rows if g["outcome"] == Outcome.DENIED),
            first=min(_as_datetime(g["first"]) for g in rows),
            last=max(_as_datetime(g["last"]) for g in rows),
        )
        for actor_id, rows in by_actor.items()
    ]
    actors.sort(key=lambda a: (-a.events, a.actor_id))
    return ActorOverview(since, until, tuple(actors), complete)


async def denials(
    since: dt.datetime,
    until: dt.datetime,
    *,
    before_seq: int | None = None,
    after_seq: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Denials:
    """Refused operations in the range, grouped by actor and reason (repeated refusals
    are how a curious employee shows up), and the refused events themselves."""
    since, until = report_range(since, until)
    filters = EventFilter(outcome=Outcome.DENIED.value, since=since, until=until)
    rows, complete = await _groups(
        _conditions(filters),
        AuditRecord.actor_id,
        AuditRecord.actor_role,
        AuditRecord.reason,
        AuditRecord.resource_type,
    )
    merged: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        key = (str(row["actor_id"]), str(row["actor_role"]), str(row["reason"]))
        merged.setdefault(key, []).append(row)
    groups = [
        DenialGroup(
            actor_id=actor_id,
            actor_role=role,
            reason=reason,
            count=sum(int(r["n"]) for r in parts),
            first=min(_as_datetime(r["first"]) for r in parts),
            last=max(_as_datetime(r["last"]) for r in parts),
            resource_types=_ordered(str(r["resource_type"]) for r in parts),
        )
        for (actor_id, role, reason), parts in merged.items()
    ]
    groups.sort(key=lambda g: (-g.count, g.actor_id, g.reason))
    page = await search(filters, before_seq=before_seq, after_seq=after_seq, page_size=page_size)
    return Denials(
        since=since,
        until=until,
        total=sum(g.count for g in groups),
        groups=tuple(groups),
        events=page,
        complete=complete,
    )


def bucket_start(moment: dt.datetime, bucket: str) -> dt.datetime:
    """The start (UTC) of the hour or day ``moment`` falls in."""
    moment = moment.astimezone(dt.UTC)
    if bucket == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


async def activity_histogram(
    since: dt.datetime, until: dt.datetime, bucket: str = "day"
) -> Histogram:
    """Allowed / denied / error counts per hour or day (UTC), empty buckets included.

    At most ``MAX_HISTOGRAM_RANGE``: a chart of more bars than that is not readable, and
    the bound keeps the query's index range small.
    """
    if bucket not in BUCKET_STEPS:
        raise InvalidFilter({"bucket": "must be hour or day"})
    checked = EventFilter(since=since, until=until)
    assert checked.since is not None  # both given, so both set
    assert checked.until is not None
    if checked.until - checked.since > MAX_HISTOGRAM_RANGE:
        raise InvalidFilter(
            {"since": f"the activity chart covers at most {MAX_HISTOGRAM_RANGE.days} days"}
        )
    engine = str(AuditRecord._meta.db.engine_type)
    expression = BUCKET_EXPRESSIONS[("postgres" if engine != "sqlite" else "sqlite", bucket)]
    # The only text put into the SQL is a constant of BUCKET_EXPRESSIONS; values are bound.
    sql = (
        f"SELECT {expression} AS bucket, outcome, COUNT(*) AS n FROM audit "  # noqa: S608 - see above
        "WHERE ts >= {} AND ts < {} GROUP BY 1, 2"
    )
    rows = await AuditRecord.raw(sql, checked.since, checked.until)
    counts: dict[dt.datetime, Counter[str]] = {}
    for row in rows:
        start = dt.datetime.strptime(str(row["bucket"]), BUCKET_KEY_FORMATS[bucket]).replace(
            tzinfo=dt.UTC
        )
        counts.setdefault(start, Counter())[str(row["outcome"])] += int(row["n"])
    step = BUCKET_STEPS[bucket]
    buckets = []
    start = bucket_start(checked.since, bucket)
    while start < checked.until:
        found = counts.get(start, Counter())
        buckets.append(
            HistogramBucket(
                start=start,
                allowed=found[Outcome.ALLOWED.value],
                denied=found[Outcome.DENIED.value],
                error=found[Outcome.ERROR.value],
            )
        )
        start += step
    return Histogram(bucket, checked.since, checked.until, tuple(buckets))
