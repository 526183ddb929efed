"""Compliance queries over the audit log (audit/queries.py), on SQLite and PostgreSQL.

Events are written with chosen timestamps (hashed and chained like ``AuditLog.append``
does, so the log stays verifiable), because the questions a compliance officer asks -
"who looked at this customer last March?" - are all about time ranges.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from audit import queries
from audit.log import GENESIS, entry_hash
from audit.queries import EventFilter, InvalidFilter
from audit.tables import AuditRecord
from server import db

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
ALICE = str(uuid.uuid4())
BOB = str(uuid.uuid4())


async def add(
    ts: dt.datetime,
    *,
    actor_id: str = "user:1",
    actor_role: str = "sales",
    action: str = "read",
    resource_type: str = "contact",
    resource_id: str | None = None,
    subjects: tuple[str, ...] = (),
    fields: tuple[str, ...] = (),
    purpose: str = "customer_relationship",
    outcome: str = "allowed",
    reason: str = "allowed",
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one event at time ``ts``; returns its sequence number."""
    async with db.write_transaction():
        last = (
            await AuditRecord.select(AuditRecord.seq, AuditRecord.hash)
            .order_by(AuditRecord.seq, ascending=False)
            .first()
        )
        seq = 1 if last is None else int(last["seq"]) + 1
        row: dict[str, Any] = {
            "seq": seq,
            "ts": ts,
            "actor_id": actor_id,
            "actor_role": actor_role,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "subject_ids": json.dumps(sorted(subjects)),
            "fields": json.dumps(sorted(fields)),
            "purpose": purpose,
            "outcome": outcome,
            "reason": reason,
            "request_id": "",
            "detail": json.dumps(detail or {}, sort_keys=True),
            "prev_hash": GENESIS if last is None else str(last["hash"]),
        }
        row["hash"] = entry_hash(row)
        await AuditRecord.insert(AuditRecord(**row)).run()
    return seq


def seqs(page: queries.EventPage) -> list[int]:
    return [e.seq for e in page.events]


# --- search and pagination ----------------------------------------------------------------------


async def test_pages_walk_every_event_once_newest_first_and_back(database_url: str) -> None:
    written = [await add(NOW - HOUR * (30 - i)) for i in range(23)]
    everything = EventFilter()

    seen: list[list[int]] = []
    page = await queries.search(everything, page_size=5)
    assert page.newer is None  # the first page has nothing newer
    while True:
        seen.append(seqs(page))
        if page.older is None:
            break
        page = await queries.search(everything, before_seq=page.older, page_size=5)
    assert [s for chunk in seen for s in chunk] == sorted(written, reverse=True)
    assert [len(chunk) for chunk in seen] == [5, 5, 5, 5, 3]

    # ... and back up with the "newer" links, seeing the same pages in reverse order.
    back = [seqs(page)]
    while page.newer is not None:
        page = await queries.search(everything, after_seq=page.newer, page_size=5)
        back.append(seqs(page))
    assert back == list(reversed(seen))


async def test_new_events_do_not_shift_the_pages_being_read(database_url: str) -> None:
    for i in range(10):
        await add(NOW - HOUR * (20 - i))
    first = await queries.search(EventFilter(), page_size=4)
    for _ in range(3):  # colleagues keep working while the officer reads
        await add(NOW)
    assert first.older is not None
    second = await queries.search(EventFilter(), before_seq=first.older, page_size=4)
    assert seqs(second) == [s - 4 for s in seqs(first)]


async def test_filters_combine_and_rows_come_back_typed(database_url: str) -> None:
    await add(NOW - HOUR * 3, actor_id="user:7", outcome="denied", reason="field_not_readable")
    wanted = await add(
        NOW - HOUR * 2,
        actor_id="user:7",
        action="update",
        resource_id="r-1",
        subjects=(ALICE,),
        fields=("email", "city"),
        detail={"returned": 1},
    )
    await add(NOW - HOUR, actor_id="user:8", action="update")

    page = await queries.search(EventFilter(actor_id="user:7", action="update", outcome="allowed"))
    assert seqs(page) == [wanted]
    row = page.events[0]
    assert row.subject_ids == (ALICE,)
    assert row.fields == ("city", "email")
    assert row.detail == {"returned": 1}
    assert row.resource_id == "r-1"
    assert row.ts == NOW - HOUR * 2
    assert row.ts.tzinfo is not None

    denied = await queries.search(EventFilter(outcome="denied"))
    assert [e.reason for e in denied.events] == ["field_not_readable"]
    assert seqs(await queries.search(EventFilter(resource_id="r-1"))) == [wanted]
    assert seqs(await queries.search(EventFilter(purpose="marketing"))) == []


async def test_since_is_inclusive_and_until_exclusive(database_url: str) -> None:
    start = NOW - DAY
    before = await add(start - dt.timedelta(microseconds=1))
    at_start = await add(start)
    inside = await add(start + HOUR)
    at_end = await add(start + 2 * HOUR)
    page = await queries.search(EventFilter(since=start, until=start + 2 * HOUR))
    assert seqs(page) == [inside, at_start]
    assert before not in seqs(await queries.search(EventFilter(since=start)))
    assert at_end in seqs(await queries.search(EventFilter(since=start)))
    # Other time zones name the same instants.
    paris = dt.timezone(dt.timedelta(hours=1))
    shifted = EventFilter(since=start.astimezone(paris), until=(start + 2 * HOUR).astimezone(paris))
    assert seqs(await queries.search(shifted)) == [inside, at_start]


async def test_subject_filter_matches_only_that_subject(database_url: str) -> None:
    near_twin = ALICE[:-1] + ("0" if ALICE[-1] != "0" else "1")  # differs in one digit
    alone = await add(NOW - HOUR * 5, subjects=(ALICE,))
    shared = await add(NOW - HOUR * 4, subjects=(BOB, ALICE))
    await add(NOW - HOUR * 3, subjects=(BOB,))
    await add(NOW - HOUR * 2, subjects=(near_twin,))
    await add(NOW - HOUR * 2, subjects=(ALICE + "0",))  # a longer id containing Alice's
    await add(NOW - HOUR, resource_id=ALICE[:36], detail={"note": ALICE})  # not a subject
    await add(NOW - 3 * DAY, subjects=(ALICE,))  # outside the range

    window = {"since": NOW - DAY, "until": NOW}
    page = await queries.search(EventFilter(subject_id=ALICE, **window))
    assert seqs(page) == [shared, alone]
    # The id is matched in its stored spelling, whatever the officer pasted.
    upper = await queries.search(EventFilter(subject_id=f"  {ALICE.upper()} ", **window))
    assert seqs(upper) == [shared, alone]


@pytest.mark.parametrize(
    "typed", ["%", "_", f"{ALICE[:8]}%", "not-an-id", f'{ALICE}"', "grace@example.org"]
)
async def test_subject_filter_refuses_anything_but_a_uuid(database_url: str, typed: str) -> None:
    with pytest.raises(InvalidFilter) as refused:
        EventFilter(subject_id=typed, since=NOW - DAY, until=NOW)
    assert set(refused.value.problems) == {"subject_id"}
    assert typed not in refused.value.problems["subject_id"]  # never echoes the input


async def test_subject_filter_needs_a_bounded_time_range(database_url: str) -> None:
    with pytest.raises(InvalidFilter, match="needs a start and an end"):
        EventFilter(subject_id=ALICE)
    with pytest.raises(InvalidFilter, match="at most 366 days"):
        EventFilter(subject_id=ALICE, since=NOW - 400 * DAY, until=NOW)
    EventFilter(subject_id=ALICE, since=NOW - 366 * DAY, until=NOW)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"actor_id": "user:" + "9" * 64}, "actor_id"),
        ({"action": "read; DROP TABLE audit"}, "action"),
        ({"resource_type": "contact%"}, "resource_type"),
        ({"purpose": "x" * 65}, "purpose"),
        ({"since": dt.datetime(2026, 1, 1)}, "since"),  # no time zone
        ({"since": NOW, "until": NOW - HOUR}, "until"),
    ],
)
async def test_bad_filters_are_refused_with_the_filter_named(
    given: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidFilter) as refused:
        EventFilter(**given)
    assert problem in refused.value.problems


async def test_empty_strings_mean_no_filter() -> None:
    blank = EventFilter(actor_id="", action="", outcome="", purpose="", resource_type="")
    assert blank.names() == ()
    assert EventFilter(actor_id="user:3", outcome="denied").names() == ("actor_id", "outcome")


async def test_page_size_and_cursors_are_checked(database_url: str) -> None:
    with pytest.raises(InvalidFilter, match="page_size"):
        await queries.search(EventFilter(), page_size=0)
    with pytest.raises(InvalidFilter, match="page_size"):
        await queries.search(EventFilter(), page_size=queries.MAX_PAGE_SIZE + 1)
    with pytest.raises(InvalidFilter, match="not both"):
        await queries.search(EventFilter(), before_seq=5, after_seq=2)


async def test_matching_seqs_are_capped_and_say_so(database_url: str) -> None:
    written = [await add(NOW - HOUR * (10 - i), actor_id="user:4") for i in range(7)]
    await add(NOW, actor_id="user:5")
    got, more = await queries.matching_seqs(EventFilter(actor_id="user:4"), limit=5)
    assert (got, more) == (written[2:], True)  # the newest five, oldest first
    got, more = await queries.matching_seqs(EventFilter(actor_id="user:4"), limit=7)
    assert (got, more) == (written, False)


# --- reports -------------------------------------------------------------------------------------


async def test_subject_accesses_summarise_each_actor(database_url: str) -> None:
    start = NOW - 10 * DAY
    await add(start + DAY, actor_id="user:2", action="create", subjects=(ALICE,), fields=("email",))
    await add(
        start + 2 * DAY,
        actor_id="user:2",
        action="read",
        subjects=(ALICE,),
        fields=("email", "phone"),
    )
    await add(
        start + 3 * DAY,
        actor_id="user:9",
        actor_role="support",
        action="read",
        purpose="support",
        subjects=(ALICE, BOB),
        outcome="denied",
        reason="field_not_readable",
        fields=("birth_date",),
    )
    await add(start + 4 * DAY, actor_id="user:3", subjects=(BOB,))  # someone else's data
    await add(start - DAY, actor_id="user:4", subjects=(ALICE,))  # before the range

    report = await queries.subject_accesses(ALICE, start, NOW)
    assert report.subject_id == ALICE
    assert report.total == 3
    assert report.complete
    assert [a.actor_id for a in report.actors] == ["user:9", "user:2"]  # latest access first
    support, seller = report.actors
    assert (support.roles, support.events, support.denied) == (("support",), 1, 1)
    assert support.purposes == ("support",)
    assert support.fields == ("birth_date",)
    assert (seller.events, seller.denied) == (2, 0)
    assert seller.actions == ("create", "read")
    assert seller.fields == ("email", "phone")
    assert (seller.first, seller.last) == (start + DAY, start + 2 * DAY)
    assert len(report.events.events) == 3


async def test_staff_activity_counts_what_one_person_did(database_url: str) -> None:
    start = NOW - 5 * DAY
    await add(start + HOUR, actor_id="user:6", subjects=(ALICE,))
    await add(start + 2 * HOUR, actor_id="user:6", action="list", subjects=(ALICE, BOB))
    await add(
        start + 3 * HOUR,
        actor_id="user:6",
        resource_type="organization",
        outcome="denied",
        reason="not_allowed",
    )
    await add(start + 4 * HOUR, actor_id="user:60", subjects=(BOB,))  # a different person

    report = await queries.staff_activity("user:6", start, NOW)
    assert report.total == 3
    assert report.distinct_subjects == 2
    assert dict(report.by_action) == {"read": 2, "list": 1}
    assert report.by_action[0] == ("read", 2)  # largest first
    assert dict(report.by_resource_type) == {"contact": 2, "organization": 1}
    assert dict(report.by_outcome) == {"allowed": 2, "denied": 1}
    assert dict(report.by_purpose) == {"customer_relationship": 3}
    assert report.roles == ("sales",)
    assert (report.first, report.last) == (start + HOUR, start + 3 * HOUR)
    assert {e.actor_id for e in report.events.events} == {"user:6"}


async def test_denials_are_grouped_by_actor_and_reason(database_url: str) -> None:
    start = NOW - 2 * DAY
    for i in range(3):
        await add(start + HOUR * i, actor_id="user:5", outcome="denied", reason="not_allowed")
    await add(
        start + 4 * HOUR,
        actor_id="user:5",
        resource_type="organization",
        outcome="denied",
        reason="not_allowed",
    )
    await add(start + 5 * HOUR, actor_id="user:5", outcome="denied", reason="outside_scope")
    await add(start + 6 * HOUR, actor_id="user:8", outcome="denied", reason="not_allowed")
    await add(start + 7 * HOUR, actor_id="user:5")  # allowed: not a denial

    report = await queries.denials(start, NOW)
    assert report.total == 6
    summary = [(g.actor_id, g.reason, g.count, g.resource_types) for g in report.groups]
    assert summary == [
        ("user:5", "not_allowed", 4, ("contact", "organization")),
        ("user:5", "outside_scope", 1, ("contact",)),
        ("user:8", "not_allowed", 1, ("contact",)),
    ]
    assert {e.outcome for e in report.events.events} == {"denied"}
    assert len(report.events.events) == 6


async def test_actor_overview_lists_everyone_busiest_first(database_url: str) -> None:
    start = NOW - 3 * DAY
    for i in range(3):
        await add(start + HOUR * i, actor_id="user:2")
    await add(start + 4 * HOUR, actor_id="user:3", outcome="denied", reason="not_allowed")
    await add(start + 5 * HOUR, actor_id="user:3", actor_role="admin")
    await add(start - HOUR, actor_id="user:4")  # before the range

    overview = await queries.actor_overview(start, NOW)
    summary = [(a.actor_id, a.roles, a.events, a.denied) for a in overview.actors]
    assert summary == [("user:2", ("sales",), 3, 0), ("user:3", ("admin", "sales"), 2, 1)]
    assert (overview.actors[0].first, overview.actors[0].last) == (start, start + 2 * HOUR)
    assert overview.complete


async def test_reports_refuse_unbounded_ranges(database_url: str) -> None:
    with pytest.raises(InvalidFilter, match="at most 366 days"):
        await queries.staff_activity("user:1", NOW - 400 * DAY, NOW)
    with pytest.raises(InvalidFilter, match="until"):
        await queries.denials(NOW, NOW - DAY)
    with pytest.raises(InvalidFilter, match="subject_id"):
        await queries.subject_accesses("someone@example.org", NOW - DAY, NOW)


async def test_histogram_counts_outcomes_per_day_with_empty_days(database_url: str) -> None:
    today = queries.bucket_start(NOW, "day")
    start = today - 3 * DAY
    await add(start + HOUR)
    await add(start + 2 * HOUR, outcome="denied", reason="not_allowed")
    await add(start + 2 * DAY + HOUR, outcome="error", reason="invalid_input")
    await add(start + 2 * DAY + 2 * HOUR)
    await add(start - HOUR)  # the day before the range

    histogram = await queries.activity_histogram(start, today + DAY, "day")
    assert [b.start for b in histogram.buckets] == [start + i * DAY for i in range(4)]
    assert [(b.allowed, b.denied, b.error) for b in histogram.buckets] == [
        (1, 1, 0),
        (0, 0, 0),
        (1, 0, 1),
        (0, 0, 0),
    ]


async def test_histogram_by_hour(database_url: str) -> None:
    start = queries.bucket_start(NOW - DAY, "hour")
    await add(start + dt.timedelta(minutes=5))
    await add(start + dt.timedelta(minutes=59, seconds=59))
    await add(start + HOUR, outcome="denied", reason="not_allowed")
    histogram = await queries.activity_histogram(start, start + 3 * HOUR, "hour")
    assert [(b.start, b.allowed, b.denied) for b in histogram.buckets] == [
        (start, 2, 0),
        (start + HOUR, 0, 1),
        (start + 2 * HOUR, 0, 0),
    ]
    assert histogram.buckets[0].total == 2


async def test_histogram_is_bounded(database_url: str) -> None:
    with pytest.raises(InvalidFilter, match="at most 90 days"):
        await queries.activity_histogram(NOW - 91 * DAY, NOW, "day")
    with pytest.raises(InvalidFilter, match="bucket"):
        await queries.activity_histogram(NOW - DAY, NOW, "week")
