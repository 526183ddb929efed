"""Read-only counts over the consent tables, for the staff consent dashboard.

Only counts leave this module: no subject id, evidence or actor is returned, so the
dashboard shows how consent is moving without showing anyone. The engine
(:mod:`server.consent.service`) stays the only writer; nothing here changes a row.

The events-per-day series buckets in SQL, as the audit console does: the two engines
spell "the UTC day of a timestamp" differently, so the expression is one of two constants
(never built from input) giving the same ``YYYY-MM-DD`` text on both, and every value is
a bound parameter. Reading each ledger row into Python would scan three months of
consent events on every visit.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from piccolo.query.functions.aggregate import Count

from server.consent.model import ConsentEventKind, Notice
from server.consent.tables import ConsentEvent, ConsentState, PrivacyNotice

MAX_DAYS = 90
DAY_EXPRESSIONS = {  # engine -> SQL giving "YYYY-MM-DD" of occurred_at in UTC
    "sqlite": "strftime('%Y-%m-%d', occurred_at)",  # stored as UTC ISO text
    "postgres": "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
KINDS = tuple(k.value for k in ConsentEventKind)


@dataclass(frozen=True)
class Day:
    """Ledger events of one UTC day, by kind."""

    day: dt.date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Series:
    """Events per day over a range of days (empty days included), by kind."""

    days: list[Day]
    purpose: str | None  # None: every purpose (objections included)

    def total(self, kind: str) -> int:
        return sum(d.counts.get(kind, 0) for d in self.days)


@dataclass
class PurposeTotals:
    """The current state rows of one purpose (or objection scope), as counts of people.

    A person counts once per state even when consent is held on several channels.
    """

    purpose: str
    in_force: int = 0
    withdrawn: int = 0
    expired: int = 0  # recorded as expired, or a grant past its expiry not yet recorded
    objected: int = 0
    events: Counter[str] = field(default_factory=Counter)  # ledger events in the range


def _engine() -> str:
    return "sqlite" if str(ConsentEvent._meta.db.engine_type) == "sqlite" else "postgres"


async def events_per_day(first: dt.date, last: dt.date, purpose: str | None = None) -> Series:
    """Ledger events per kind for each UTC day from ``first`` to ``last`` (inclusive),
    for one purpose or all. At most ``MAX_DAYS`` days: more bars are not readable."""
    if last < first or (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"the range must be 1 to {MAX_DAYS} days")
    since = dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC)
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    expression = DAY_EXPRESSIONS[_engine()]
    # The only text put into the SQL is a constant of DAY_EXPRESSIONS; values are bound.
    sql = (
        f"SELECT {expression} AS day, kind, COUNT(*) AS n FROM consent_event "  # noqa: S608 - see above
        "WHERE occurred_at >= {} AND occurred_at < {}"
    )
    values: list[object] = [since, until]
    if purpose is not None:
        sql += " AND purpose = {}"
        values.append(purpose)
    sql += " GROUP BY 1, 2"
    counts: dict[dt.date, Counter[str]] = {}
    for row in await ConsentEvent.raw(sql, *values):
        day = dt.date.fromisoformat(str(row["day"]))
        counts.setdefault(day, Counter())[str(row["kind"])] += int(row["n"])
    days = []
    current = first
    while current <= last:
        found = counts.get(current, Counter())
        days.append(Day(current, {kind: found.get(kind, 0) for kind in KINDS}))
        current += dt.timedelta(days=1)
    return Series(days, purpose)


async def totals(since: dt.datetime, now: dt.datetime | None = None) -> dict[str, PurposeTotals]:
    """Per purpose: people with consent in force, withdrawn, expired or objected now, and
    the ledger events recorded since ``since``."""
    now = now or dt.datetime.now(dt.UTC)
    result: dict[str, PurposeTotals] = {}

    def of(purpose: str) -> PurposeTotals:
        return result.setdefault(purpose, PurposeTotals(purpose))

    people = Count(distinct=[ConsentState.subject_id], alias="n")
    lapsed = ConsentState.expires_at.is_not_null() & (ConsentState.expires_at <= now)
    granted = ConsentState.state == ConsentEventKind.GRANTED.value
    rows = (
        await ConsentState.select(ConsentState.purpose, people)
        .where(granted & (ConsentState.expires_at.is_null() | (ConsentState.expires_at > now)))
        .group_by(ConsentState.purpose)
    )
    for row in rows:
        of(str(row["purpose"])).in_force = int(row["n"])
    rows = (
        await ConsentState.select(ConsentState.purpose, people)
        .where((ConsentState.state == ConsentEventKind.EXPIRED.value) | (granted & lapsed))
        .group_by(ConsentState.purpose)
    )
    for row in rows:
        of(str(row["purpose"])).expired = int(row["n"])
    for kind in (ConsentEventKind.WITHDRAWN, ConsentEventKind.OBJECTED):
        rows = (
            await ConsentState.select(ConsentState.purpose, people)
            .where(ConsentState.state == kind.value)
            .group_by(ConsentState.purpose)
        )
        for row in rows:
            setattr(of(str(row["purpose"])), kind.value, int(row["n"]))
    rows = (
        await ConsentEvent.select(ConsentEvent.purpose, ConsentEvent.kind, Count(alias="n"))
        .where(ConsentEvent.occurred_at >= since)
        .group_by(ConsentEvent.purpose, ConsentEvent.kind)
    )
    for row in rows:
        of(str(row["purpose"])).events[str(row["kind"])] += int(row["n"])
    return result


async def notices() -> list[Notice]:
    """Every published privacy notice, newest first. The engine reads one version at a
    time; the notices page lists them all (versions are few, and the texts are public)."""
    rows = await PrivacyNotice.select().order_by(PrivacyNotice.version, ascending=False)
    return [
        Notice(
            version=int(r["version"]),
            title=str(r["title"]),
            text=str(r["text"]),
            content_hash=str(r["content_hash"]),
            published_at=r["published_at"],
            published_by=str(r["published_by"]),
        )
        for r in rows
    ]


async def withdrawals_by(subject_ids: list[str], purpose: str, since: dt.datetime) -> int:
    """How many of these people withdrew ``purpose`` through the one-click link in a
    message (source ``email_link``) at or after ``since``: a campaign funnel's
    "withdrawn", counted per person, never by tracking who opened what."""
    if not subject_ids:
        return 0
    rows = await ConsentEvent.select(ConsentEvent.subject_id).where(
        ConsentEvent.subject_id.is_in(subject_ids)
        & (ConsentEvent.purpose == purpose)
        & (ConsentEvent.kind == ConsentEventKind.WITHDRAWN.value)
        & (ConsentEvent.source == "email_link")
        & (ConsentEvent.occurred_at >= since)
    )
    return len({str(r["subject_id"]) for r in rows})
