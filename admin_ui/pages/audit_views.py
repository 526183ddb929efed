"""What the compliance console's pages share (``admin_ui.pages.compliance``, and the
dashboard and consent pages that show audit rows): reading their query parameters into an
audit filter and a date range, showing audit rows, and recording that a page read the log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Request
from litestar.exceptions import NotFoundException
from litestar.response import Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.forms import problem_message
from admin_ui.rendering import render
from admin_ui.session import Visit
from audit import queries
from audit.events import Action, Outcome, audit_event
from audit.log import AuditLog
from audit.queries import EventFilter, EventPage, InvalidFilter
from audit.signing import SignedTreeHead
from audit.trail import AuditTrail, VerificationReport
from policy.enforcer import PolicyEngine
from server import db
from server.auth.service import StaffAccounts
from server.datamap import PURPOSES, RECORD_TYPES
from server.web import services_of

PURPOSE = "compliance"
DEFAULT_DAYS = 30  # reports open on the last 30 days
MAX_SUBJECTS_SHOWN = 3  # subject links shown inline in an event row; more go in a disclosure
OUTCOME_LABELS = {"allowed": "Allowed", "denied": "Denied", "error": "Error"}
KNOWN_ACTIONS = (
    *(a.value for a in Action),
    "locate",
    "audit.search",
    "audit.report",
    "audit.export",
)
KNOWN_RESOURCE_TYPES = (*RECORD_TYPES, "session", "staff_user", "audit")


@dataclass(frozen=True)
class FilterInput:
    """One text filter of the event search, as the form shows it."""

    name: str  # EventFilter attribute and query parameter
    label: str
    hint: str
    max_length: int
    suggestions: tuple[str, ...] = ()


TEXT_FILTERS = (
    FilterInput(
        "subject_id",
        "Subject id",
        "One customer's pseudonymous id, e.g. 123e4567-e89b-42d3-a456-426614174000. From an "
        "e-mail address or phone number: use “Who accessed a customer?”.",
        36,
    ),
    FilterInput(
        "actor_id", "Staff member (actor id)", "For example user:12, or system:demo-seed.", 64
    ),
    FilterInput("action", "Action", "For example read, list, update, locate.", 32, KNOWN_ACTIONS),
    FilterInput(
        "resource_type",
        "Record type",
        "For example contact or organization.",
        32,
        KNOWN_RESOURCE_TYPES,
    ),
    FilterInput("resource_id", "Record id", "The id of one record.", 64),
)
LABELS = {
    **{f.name: f.label for f in TEXT_FILTERS},
    "purpose": "Purpose",
    "outcome": "Outcome",
    "from": "From date",
    "to": "To date",
    "since": "From date",
    "until": "To date",
    "before": "Page position",
    "after": "Page position",
    "page_size": "Page size",
    "reason": "Reason for the export",
    "contact": "E-mail address or phone number",
}
FILTER_PARAMS = (*(f.name for f in TEXT_FILTERS), "purpose", "outcome", "from", "to")


async def record_refusal(
    request: Request[Any, Any, Any], visit: Visit, report_name: str, filters: str
) -> None:
    """A report refused for its filters is audited as an error, with the filter names only."""
    await record_view(
        services_of(request).audit,
        visit,
        "audit.report",
        outcome=Outcome.ERROR,
        reason="invalid_filter",
        detail={"report": report_name, "filters": filters},
    )


async def refused_report(
    request: Request[Any, Any, Any],
    visit: Visit,
    exc: InvalidFilter | BadInput,
    *,
    report_name: str,
    filters: str,
    template: str,
    title: str,
    **empty: Any,
) -> Template:
    """A report asked for with bad filters: audited as an error (filter names only), and
    the page again with a 400 and a message per field."""
    problem = bad_filter(exc) if isinstance(exc, InvalidFilter) else exc
    await record_refusal(request, visit, report_name, filters)
    return await render(
        request,
        template,
        visit=visit,
        status=HTTP_400_BAD_REQUEST,
        section="compliance",
        title=title,
        dates=DateRange(*dates_or_none(request.query_params)),
        errors=problem.problems,
        error_fields={name for name, _ in problem.problems},
        **empty,
        **row_helpers(),
    )


class BadInput(Exception):
    """Input a console page cannot use: (form field, sentence) pairs for the error summary."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(text for _, text in self.problems))


def bad_filter(exc: InvalidFilter) -> BadInput:
    """Query-layer problems as sentences naming the form field (never echoing input)."""
    renamed = {"since": "from", "until": "to", "after": "before"}
    return BadInput(
        (renamed.get(name, name), problem_message(LABELS.get(name, name), text))
        for name, text in exc.problems.items()
    )


# --- input ----------------------------------------------------------------------------------


def text_param(params: Mapping[str, Any], name: str, limit: int = 200) -> str:
    """A single text parameter, trimmed; over-long input is kept long so it is refused."""
    value = params.get(name, "")
    return value.strip()[: limit + 1] if isinstance(value, str) else ""


def date_param(params: Mapping[str, Any], name: str) -> tuple[dt.date | None, str]:
    raw = text_param(params, name, 10)
    if not raw:
        return None, ""
    try:
        return dt.date.fromisoformat(raw), ""
    except ValueError:
        return None, f"{LABELS[name]} must be a date written as YYYY-MM-DD."


def start_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclass(frozen=True)
class DateRange:
    """Whole days in UTC, both ends included (as the date inputs show them)."""

    start: dt.date | None
    end: dt.date | None

    @property
    def since(self) -> dt.datetime | None:
        return start_of(self.start) if self.start else None

    @property
    def until(self) -> dt.datetime | None:
        return start_of(self.end + dt.timedelta(days=1)) if self.end else None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1 if self.start and self.end else 0

    def params(self) -> dict[str, str]:
        return {
            k: v.isoformat() for k, v in (("from", self.start), ("to", self.end)) if v is not None
        }


def report_range(params: Mapping[str, Any]) -> tuple[DateRange, dt.datetime, dt.datetime]:
    """A report's days, and their first and last instant (reports always have both)."""
    dates = date_range(params, bounded=True)
    assert dates.since is not None  # bounded ranges have both ends
    assert dates.until is not None
    return dates, dates.since, dates.until


def date_range(params: Mapping[str, Any], *, bounded: bool) -> DateRange:
    """The ``from`` / ``to`` dates. ``bounded``: missing ends default to the last
    ``DEFAULT_DAYS`` days (reports always cover a range); otherwise a missing end is open."""
    start, start_problem = date_param(params, "from")
    end, end_problem = date_param(params, "to")
    problems = [(n, p) for n, p in (("from", start_problem), ("to", end_problem)) if p]
    if problems:
        raise BadInput(problems)
    if bounded:
        span = dt.timedelta(days=DEFAULT_DAYS - 1)
        if end is None:
            end = max(start, min(start + span, today())) if start else today()
        start = start or end - span
    if start and end and end < start:
        raise BadInput([("to", "To date must be the same as or later than the from date.")])
    return DateRange(start, end)


def default_range() -> DateRange:
    end = today()
    return DateRange(end - dt.timedelta(days=DEFAULT_DAYS - 1), end)


def cursors(params: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """``before`` / ``after``: the keyset position of an older or newer page."""
    found: list[int | None] = []
    for name in ("before", "after"):
        raw = text_param(params, name, 20)
        if not raw:
            found.append(None)
            continue
        if not raw.isdigit():
            raise BadInput([("before", "The page position must be a whole number.")])
        found.append(int(raw))
    return found[0], found[1]


def event_filter(params: Mapping[str, Any], dates: DateRange) -> EventFilter:
    values = {f.name: text_param(params, f.name, f.max_length) or None for f in TEXT_FILTERS}
    purpose = text_param(params, "purpose", 64) or None
    if purpose is not None and purpose not in PURPOSES:
        raise BadInput([("purpose", "Purpose must be one of the registered purposes.")])
    try:
        return EventFilter(
            **values,
            purpose=purpose,
            outcome=text_param(params, "outcome", 16) or None,
            since=dates.since,
            until=dates.until,
        )
    except InvalidFilter as exc:
        raise bad_filter(exc) from None


def used_filters(params: Mapping[str, Any]) -> str:
    """The names of the filters a request used (for the audit event of a refused search)."""
    return ",".join(n for n in FILTER_PARAMS if text_param(params, n, 1))


# --- presentation helpers -------------------------------------------------------------------


def when(moment: dt.datetime | None) -> str:
    """A time as the console prints it: UTC, to the second (the column says "UTC")."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def staff_link(actor_id: str) -> str:
    return "/compliance/staff/" + quote(actor_id, safe=":@")


def subject_link(subject_id: str, dates: DateRange | None = None) -> str:
    query = {"subject": subject_id, **(dates.params() if dates else {})}
    return "/compliance/subjects?" + urlencode(query)


def duration(delta: dt.timedelta) -> str:
    """How far a signed head lags the newest event, in its largest whole unit."""
    seconds = int(delta.total_seconds())
    if seconds < 1:
        return "less than a second"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def chart_data(histogram: queries.Histogram) -> dict[str, Any]:
    """What charts.js draws (the page's table shows the same numbers)."""
    return {
        "labels": [b.start.strftime("%Y-%m-%d") for b in histogram.buckets],
        "series": [
            {"key": key, "label": label, "data": [getattr(b, key) for b in histogram.buckets]}
            for key, label in OUTCOME_LABELS.items()
        ],
    }


async def staff_names(accounts: StaffAccounts, actor_ids: Iterable[str]) -> dict[str, str]:
    """Display names of the staff members among ``actor_ids`` ("user:12" -> "Ada Lovelace"),
    so officers see people, not numbers. Staff data, not customer data."""
    names: dict[str, str] = {}
    for actor_id in sorted(set(actor_ids)):
        prefix, _, number = actor_id.partition(":")
        if prefix != "user" or not number.isdigit():
            continue
        found = await accounts.get_user(int(number))
        if found is not None:
            names[actor_id] = found[0].display_name or found[0].email
    return names


def page_links(base: str, kept: Mapping[str, str], page: EventPage) -> tuple[str, str]:
    """The "newer" and "older" links of a keyset page, keeping the filters."""
    newer = f"{base}?{urlencode({**kept, 'after': page.newer})}" if page.newer else ""
    older = f"{base}?{urlencode({**kept, 'before': page.older})}" if page.older else ""
    return newer, older


@dataclass(frozen=True)
class TrailStatus:
    """The landing page's answer to "can this log be trusted, and is it sealed?"."""

    report: VerificationReport
    head: SignedTreeHead | None
    newest_seq: int
    newest_ts: dt.datetime | None
    behind_events: int  # events appended after the latest signed head
    behind_time: str  # how much newer the newest event is than that head ("" if no head)
    stalled: str = ""  # "N entries unsigned, the oldest (entry S) for T s" past the threshold


async def trail_status(trail: AuditTrail, stall_seconds: float = 10.0) -> TrailStatus:
    """Verify incrementally (from the head this server verified last), measure the gap
    between the latest signed head and the newest event, and say if sealing is stuck."""
    report = await trail.verify(incremental=True)
    backlog = await trail.unsigned_backlog()
    stalled = trail.stalled(backlog, stall_seconds, once=False) if backlog else None
    head = await trail.latest_head()
    newest = await trail.newest_event()
    newest_seq, newest_ts = newest if newest else (0, None)
    covered = head.tree_size if head else 0
    behind = max(0, newest_seq - covered)
    lag = duration(newest_ts - head.signed_at) if behind and newest_ts and head else ""
    return TrailStatus(
        report, head, newest_seq, newest_ts, behind, lag, stalled.problem if stalled else ""
    )


# --- audit and policy -----------------------------------------------------------------------


def require_policy(policy: PolicyEngine, visit: Visit, act: str) -> None:
    """The policy decides, on top of the page's role list; a refusal looks like no page."""
    if not policy.allows(visit.identity.role, "audit", act):
        raise NotFoundException()


async def record_view(
    audit: AuditLog,
    visit: Visit,
    action: str,
    *,
    detail: dict[str, int | str],
    subject_ids: Sequence[str] = (),
    outcome: Outcome = Outcome.ALLOWED,
    reason: str = "allowed",
) -> None:
    """Audit the console's own reading of the audit log (fails the page if it fails)."""
    event = audit_event(
        actor_id=visit.actor.id,
        actor_role=visit.identity.role,
        action=action,
        resource_type="audit",
        outcome=outcome,
        purpose=PURPOSE,
        subject_ids=tuple(subject_ids),
        reason=reason,
        request_id=visit.request_id,
        detail=detail,
    )
    async with db.write_transaction():
        await audit.append(event)


def dates_or_none(params: Mapping[str, Any]) -> tuple[dt.date | None, dt.date | None]:
    """The dates to show again in a refused form (whatever parsed)."""
    return date_param(params, "from")[0], date_param(params, "to")[0]


def row_helpers() -> dict[str, Any]:
    """Functions the event tables call."""
    return {
        "when": when,
        "staff_link": staff_link,
        "subject_link": subject_link,
        "outcome_labels": OUTCOME_LABELS,
        "max_subjects_shown": MAX_SUBJECTS_SHOWN,
    }
