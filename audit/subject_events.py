"""The audit events naming one person, over the whole history: what the person's own
access page shows (``server.portal.access``), what a receipt lists as evidence
(``server.dsr.receipts``) and a subject export's access log (``server.dsr.export``).

Unlike the console's reports (:mod:`audit.queries`) these need no time range: they page
by ``seq`` and are read for one person at a time. The subject is validated as a UUID
first, so its ``LIKE`` pattern holds no wildcard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audit.queries import (
    DEFAULT_PAGE_SIZE,
    EVENT_COLUMNS,
    EventPage,
    EventRow,
    canonical_subject_id,
    check_page,
    event_row,
    events_exist,
)
from audit.tables import AuditRecord


async def every_event_about(subject_id: str, *, batch: int = 1_000) -> list[EventRow]:
    """Every event naming one subject, oldest first, over the whole history (keyset pages
    by ``seq``): what a data-subject export's access log needs. The console's reports
    stay bounded to a year; an export must not be."""
    subject = canonical_subject_id(subject_id)
    pattern = f'%"{subject}"%'  # safe: a canonical UUID has hex digits and hyphens only
    events: list[EventRow] = []
    after = 0
    while True:
        rows = await (
            AuditRecord.select(*EVENT_COLUMNS)
            .where(AuditRecord.subject_ids.like(pattern))
            .where(AuditRecord.seq > after)
            .order_by(AuditRecord.seq)
            .limit(batch)
        )
        events.extend(event_row(row) for row in rows)
        if len(rows) < batch:
            return events
        after = events[-1].seq


def _about(subject_id: str) -> Any:
    subject = canonical_subject_id(subject_id)
    # Safe as a LIKE pattern: a canonical UUID has hex digits and hyphens only.
    return AuditRecord.subject_ids.like(f'%"{subject}"%')


async def events_about(
    subject_id: str, *, before_seq: int | None = None, page_size: int = DEFAULT_PAGE_SIZE
) -> EventPage:
    """One page of the events naming one subject, newest first, over the whole history
    (what the person's own access page shows; keyset pages by ``seq``)."""
    check_page(page_size, before_seq, None)
    about = _about(subject_id)
    query = AuditRecord.select(*EVENT_COLUMNS).where(about)
    if before_seq is not None:
        query = query.where(AuditRecord.seq < before_seq)
    rows = await query.order_by(AuditRecord.seq, ascending=False).limit(page_size + 1)
    events = tuple(event_row(r) for r in rows[:page_size])
    if not events:
        return EventPage((), None, None)
    newer = before_seq is not None and await events_exist([about], AuditRecord.seq > events[0].seq)
    return EventPage(
        events,
        older=events[-1].seq if len(rows) > page_size else None,
        newer=events[0].seq if newer else None,
    )


async def event_about(subject_id: str, seq: int) -> EventRow | None:
    """Event ``seq`` if it names this subject, else None (whether it exists or not)."""
    row = (
        await AuditRecord.select(*EVENT_COLUMNS)
        .where(_about(subject_id))
        .where(AuditRecord.seq == seq)
        .first()
    )
    return None if row is None else event_row(row)


async def events_of_resource(
    subject_id: str, resource_type: str, resource_id: str, *, limit: int = 200
) -> list[EventRow]:
    """The events about one record (a consent ledger event, a request) that name this
    subject, oldest first: the evidence a receipt lists."""
    rows = await (
        AuditRecord.select(*EVENT_COLUMNS)
        .where(_about(subject_id))
        .where(AuditRecord.resource_type == resource_type)
        .where(AuditRecord.resource_id == resource_id)
        .order_by(AuditRecord.seq)
        .limit(limit)
    )
    return [event_row(r) for r in rows]


async def events_of_actions(
    subject_id: str, actions: Sequence[str], *, limit: int = 200
) -> list[EventRow]:
    """The events of these actions that name this subject, oldest first."""
    rows = await (
        AuditRecord.select(*EVENT_COLUMNS)
        .where(_about(subject_id))
        .where(AuditRecord.action.is_in(list(actions)))
        .order_by(AuditRecord.seq)
        .limit(limit)
    )
    return [event_row(r) for r in rows]
