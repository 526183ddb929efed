"""The compliance console: "who looked at this customer, and why?" answered from the audit
log alone - ids, field names, purposes and outcomes, never record contents.

Only the compliance role sees these pages (404 for everyone else, and the role must have
a second factor, which the session layer enforces). The policy is the source of truth on
top of that: each page also asks ``policy.allows(role, "audit", "read" | "export")``.

The console's own reading of the log is audited like any other access: every page that
reads it appends an ``audit.search`` / ``audit.report`` / ``audit.export`` event with the
purpose ``compliance``, the subject when the page is about one person, and the *names* of
the filters used (ids are the only values kept: they are pseudonymous).

E-mail addresses and phone numbers typed to find a customer are sent by POST, resolved to
a subject id through the gateway's audited ``locate``, and never written into a URL, a
log or the page that answers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_403_FORBIDDEN

from admin_ui.forms import problem_message
from admin_ui.rendering import flash, render, see_other
from admin_ui.rights import CONSOLE_RIGHT
from admin_ui.session import Visit, page_access, provide_visit, require_recent_login
from audit import queries
from audit.events import Action, Outcome, audit_event
from audit.queries import EventFilter, EventPage, InvalidFilter
from audit.signing import SignedTreeHead
from audit.trail import AuditTrail, VerificationReport
from server import db
from server.datamap import PURPOSES, RECORD_TYPES
from server.gateway import Forbidden, InvalidInput
from server.services import Services
from server.web import services_of

PURPOSE = "compliance"
DEFAULT_DAYS = 30  # reports open on the last 30 days
CHART_DAYS = 30
EXPORT_LIMIT = 10_000  # events in one slice export (each carries an inclusion proof)
MAX_CONTACT_INPUT = 320
MAX_SUBJECTS_SHOWN = 3  # subject links shown inline in an event row; more go in a disclosure
EXPORT_REASONS = {  # fixed codes: free text could carry personal data into the audit log
    "data_subject_request": "Data-subject request",
    "internal_investigation": "Internal investigation",
    "regulator_request": "Regulator request",
    "external_audit": "External audit",
}
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
    await record_view(
        services_of(request),
        visit,
        "audit.report",
        outcome=Outcome.ERROR,
        reason="invalid_filter",
        detail={"report": report_name, "filters": filters},
    )
    return await render(
        request,
        template,
        visit=visit,
        status=HTTP_400_BAD_REQUEST,
        section="compliance",
        title=title,
        dates=DateRange(*_dates_or_none(request.query_params)),
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


def _text(params: Mapping[str, Any], name: str, limit: int = 200) -> str:
    """A single text parameter, trimmed; over-long input is kept long so it is refused."""
    value = params.get(name, "")
    return value.strip()[: limit + 1] if isinstance(value, str) else ""


def _date(params: Mapping[str, Any], name: str) -> tuple[dt.date | None, str]:
    raw = _text(params, name, 10)
    if not raw:
        return None, ""
    try:
        return dt.date.fromisoformat(raw), ""
    except ValueError:
        return None, f"{LABELS[name]} must be a date written as YYYY-MM-DD."


def _start_of(day: dt.date) -> dt.datetime:
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
        return _start_of(self.start) if self.start else None

    @property
    def until(self) -> dt.datetime | None:
        return _start_of(self.end + dt.timedelta(days=1)) if self.end else None

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
    start, start_problem = _date(params, "from")
    end, end_problem = _date(params, "to")
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
        raw = _text(params, name, 20)
        if not raw:
            found.append(None)
            continue
        if not raw.isdigit():
            raise BadInput([("before", "The page position must be a whole number.")])
        found.append(int(raw))
    return found[0], found[1]


def event_filter(params: Mapping[str, Any], dates: DateRange) -> EventFilter:
    values = {f.name: _text(params, f.name, f.max_length) or None for f in TEXT_FILTERS}
    purpose = _text(params, "purpose", 64) or None
    if purpose is not None and purpose not in PURPOSES:
        raise BadInput([("purpose", "Purpose must be one of the registered purposes.")])
    try:
        return EventFilter(
            **values,
            purpose=purpose,
            outcome=_text(params, "outcome", 16) or None,
            since=dates.since,
            until=dates.until,
        )
    except InvalidFilter as exc:
        raise bad_filter(exc) from None


def used_filters(params: Mapping[str, Any]) -> str:
    """The names of the filters a request used (for the audit event of a refused search)."""
    return ",".join(n for n in FILTER_PARAMS if _text(params, n, 1))


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


async def staff_names(services: Services, actor_ids: Iterable[str]) -> dict[str, str]:
    """Display names of the staff members among ``actor_ids`` ("user:12" -> "Ada Lovelace"),
    so officers see people, not numbers. Staff data, not customer data."""
    names: dict[str, str] = {}
    for actor_id in sorted(set(actor_ids)):
        prefix, _, number = actor_id.partition(":")
        if prefix != "user" or not number.isdigit():
            continue
        found = await services.accounts.get_user(int(number))
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


def require_policy(services: Services, visit: Visit, act: str) -> None:
    """The policy decides, on top of the page's role list; a refusal looks like no page."""
    if not services.policy.allows(visit.identity.role, "audit", act):
        raise NotFoundException()


async def record_view(
    services: Services,
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
        await services.audit.append(event)


# --- pages ----------------------------------------------------------------------------------


class CompliancePages(Controller):
    path = "/compliance"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=CONSOLE_RIGHT)

    @get("/")
    async def overview(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Is the trail intact and sealed, and what has happened in the last 30 days."""
        services = services_of(request)
        require_policy(services, visit, "read")
        verification = None
        if services.policy.allows(visit.identity.role, "audit", "verify"):
            verification = await trail_status(
                services.audit_trail, services.settings.audit_stall_seconds
            )
        end = today()
        histogram = await queries.activity_histogram(
            _start_of(end - dt.timedelta(days=CHART_DAYS - 1)),
            _start_of(end + dt.timedelta(days=1)),
            "day",
        )
        totals = {key: sum(getattr(b, key) for b in histogram.buckets) for key in OUTCOME_LABELS}
        await record_view(
            services,
            visit,
            "audit.report",
            detail={
                "report": "overview",
                "days": CHART_DAYS,
                "events": sum(totals.values()),
                "verified": int(verification is not None and verification.report.ok),
            },
        )
        return await render(
            request,
            "compliance/index.html",
            visit=visit,
            section="compliance",
            title="Compliance console",
            verification=verification,
            histogram=histogram,
            chart=chart_data(histogram),
            totals=totals,
            outcome_labels=OUTCOME_LABELS,
            chart_days=CHART_DAYS,
            when=when,
        )

    @get("/events")
    async def events(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Search the log with any combination of filters, newest first."""
        services = services_of(request)
        require_policy(services, visit, "read")
        params = request.query_params
        # Opened from a link: the last 30 days. Sent from the form (every field present,
        # perhaps empty): exactly what was asked, so empty dates mean the whole log.
        first_visit = not any(n in params for n in (*FILTER_PARAMS, "before", "after"))
        values = {n: _text(params, n, 64) for n in FILTER_PARAMS}
        try:
            dates = default_range() if first_visit else date_range(params, bounded=False)
            values.update(dates.params() if first_visit else {})
            filters = event_filter(params, dates)
            before, after = cursors(params)
            page = await queries.search(filters, before_seq=before, after_seq=after)
            matched, more = await queries.matching_seqs(filters, limit=EXPORT_LIMIT)
        except InvalidFilter as exc:
            return await self._events_refused(request, visit, values, bad_filter(exc))
        except BadInput as exc:
            return await self._events_refused(request, visit, values, exc)
        await record_view(
            services,
            visit,
            "audit.search",
            subject_ids=(filters.subject_id,) if filters.subject_id else (),
            detail={
                "filters": ",".join(filters.names()),
                "returned": len(page.events),
                "matched": len(matched),
                "capped": int(more),
                "actor": filters.actor_id or "",  # ids are pseudonymous; kept to say whom
            },
        )
        kept = {k: v for k, v in values.items() if v}
        newer, older = page_links("/compliance/events", kept, page)
        return await self._events_page(
            request,
            visit,
            values=values,
            page=page,
            newer=newer,
            older=older,
            matched=len(matched),
            more=more,
            names=await staff_names(services, (e.actor_id for e in page.events)),
        )

    async def _events_refused(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        values: dict[str, str],
        exc: BadInput,
    ) -> Template:
        await record_view(
            services_of(request),
            visit,
            "audit.search",
            outcome=Outcome.ERROR,
            reason="invalid_filter",
            detail={"filters": used_filters(request.query_params)},
        )
        return await self._events_page(
            request, visit, values=values, errors=exc.problems, status=HTTP_400_BAD_REQUEST
        )

    async def _events_page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        values: Mapping[str, str],
        page: EventPage | None = None,
        newer: str = "",
        older: str = "",
        matched: int = 0,
        more: bool = False,
        names: Mapping[str, str] | None = None,
        errors: Sequence[tuple[str, str]] = (),
        status: int = 200,
    ) -> Template:
        return await render(
            request,
            "compliance/events.html",
            visit=visit,
            status=status,
            section="compliance",
            title="Audit events",
            values=values,
            text_filters=TEXT_FILTERS,
            purposes=list(PURPOSES),
            page=page,
            newer=newer,
            older=older,
            matched=matched,
            more=more,
            export_limit=EXPORT_LIMIT,
            export_reasons=EXPORT_REASONS,
            may_export=services_of(request).policy.allows(visit.identity.role, "audit", "export"),
            names=names or {},
            # The summary links each message to its input (ids are "f-" + the field name).
            errors=[(f"f-{n}" if n in FILTER_PARAMS else "", text) for n, text in errors],
            error_fields={name for name, _ in errors},
            **row_helpers(),
        )

    @post("/events/export", status_code=200)
    async def export(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Response[Any] | Redirect | Template:
        """The matching events (newest ``EXPORT_LIMIT``) with inclusion proofs, as a JSON
        file anyone can check offline with ``consentry audit verify-slice``."""
        services = services_of(request)
        require_policy(services, visit, "export")
        form = await request.form()
        values = {n: _text(form, n, 64) for n in FILTER_PARAMS}
        kept = {k: v for k, v in values.items() if v}
        back = "/compliance/events?" + urlencode(kept) if kept else "/compliance/events"
        require_recent_login(visit, back)
        reason = _text(form, "reason", 40)
        if reason not in EXPORT_REASONS:
            await flash(request, visit, "Choose the reason for the export.", "error")
            return see_other(back)
        try:
            filters = event_filter(form, date_range(form, bounded=False))
            seqs, more = await queries.matching_seqs(filters, limit=EXPORT_LIMIT)
        except BadInput as exc:
            return await self._events_page(
                request, visit, values=values, errors=exc.problems, status=HTTP_400_BAD_REQUEST
            )
        if not seqs:
            await flash(request, visit, "No events match these filters: nothing was exported.")
            return see_other(back)
        bundle = await services.audit_trail.slice_bundle(seqs)
        await record_view(
            services,
            visit,
            "audit.export",
            subject_ids=(filters.subject_id,) if filters.subject_id else (),
            detail={
                "reason": reason,
                "filters": ",".join(filters.names()),
                "events": len(bundle.get("events") or []),
                "unsealed": len(bundle.get("unsealed") or []),
                "capped": int(more),
            },
        )
        filename = f"audit-slice-{today().isoformat()}.json"
        return Response(
            json.dumps(bundle, indent=2, sort_keys=True).encode(),
            media_type="application/json",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    @get("/subjects")
    async def subjects(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Who accessed one customer: by subject id (in the URL: it is pseudonymous)."""
        services = services_of(request)
        require_policy(services, visit, "read")
        params = request.query_params
        subject = _text(params, "subject", 64)
        if not subject:
            return await self._subjects_page(request, visit, dates=default_range())
        try:
            dates, since, until = report_range(params)
            before, after = cursors(params)
            report = await queries.subject_accesses(
                subject, since, until, before_seq=before, after_seq=after
            )
        except InvalidFilter as exc:
            return await self._subjects_refused(request, visit, subject, bad_filter(exc))
        except BadInput as exc:
            return await self._subjects_refused(request, visit, subject, exc)
        await record_view(
            services,
            visit,
            "audit.report",
            subject_ids=(report.subject_id,),
            detail={
                "report": "subject",
                "days": dates.days,
                "actors": len(report.actors),
                "events": report.total,
            },
        )
        kept = {"subject": report.subject_id, **dates.params()}
        newer, older = page_links("/compliance/subjects", kept, report.events)
        actors = [a.actor_id for a in report.actors]
        return await self._subjects_page(
            request,
            visit,
            dates=dates,
            report=report,
            newer=newer,
            older=older,
            names=await staff_names(
                services, [*actors, *(e.actor_id for e in report.events.events)]
            ),
        )

    async def _subjects_refused(
        self, request: Request[Any, Any, Any], visit: Visit, subject: str, exc: BadInput
    ) -> Template:
        await record_view(
            services_of(request),
            visit,
            "audit.report",
            outcome=Outcome.ERROR,
            reason="invalid_filter",
            detail={
                "report": "subject",
                "filters": "subject_id," + used_filters(request.query_params),
            },
        )
        inputs = {"subject_id": "subject", "from": "subject-from", "to": "subject-to"}
        problems = [(inputs.get(n, n), text) for n, text in exc.problems]
        return await self._subjects_page(
            request,
            visit,
            dates=DateRange(*_dates_or_none(request.query_params)),
            errors=problems,
            # A valid id is shown again; anything else may be a pasted e-mail address.
            subject_value=subject if "subject" not in {n for n, _ in problems} else "",
            status=HTTP_400_BAD_REQUEST,
        )

    @post("/subjects", status_code=200)
    async def find_subject(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template | Redirect:
        """Find a customer by e-mail address or phone number, then show the report by
        subject id. The value only travels in this POST body: the gateway matches it on
        the blind index, audits the lookup, and returns ids only."""
        services = services_of(request)
        require_policy(services, visit, "read")
        form = await request.form()
        typed = _text(form, "contact", MAX_CONTACT_INPUT)
        if not typed:
            return await self._subjects_page(
                request,
                visit,
                dates=default_range(),
                errors=[("contact", "Enter an e-mail address or a phone number.")],
                status=HTTP_400_BAD_REQUEST,
            )
        with contextlib.suppress(InvalidFilter):  # a pasted subject id is welcome too
            return see_other(subject_link(queries.canonical_subject_id(typed)))
        field_name = "email" if "@" in typed else "phone"
        label = "e-mail address" if field_name == "email" else "phone number"
        try:
            found = await services.gateway.locate_people(  # contacts and leads alike
                visit.actor, field_name, typed, purpose=PURPOSE
            )
        except (InvalidInput, Forbidden) as exc:
            refused = isinstance(exc, Forbidden)
            message = (
                f"Your role may not look customers up by {label}."
                if refused
                else f"That is not a complete {label}. Check it and try again."
            )
            return await self._subjects_page(
                request,
                visit,
                dates=default_range(),
                errors=[("contact", message)],
                status=HTTP_403_FORBIDDEN if refused else HTTP_400_BAD_REQUEST,
            )
        subjects = sorted({subject for _, _, subject in found})
        if len(subjects) == 1:
            return see_other(subject_link(subjects[0]))
        return await self._subjects_page(
            request,
            visit,
            dates=default_range(),
            candidates=subjects,
            searched_by=label,
        )

    async def _subjects_page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        dates: DateRange,
        report: queries.SubjectAccesses | None = None,
        newer: str = "",
        older: str = "",
        names: Mapping[str, str] | None = None,
        candidates: Sequence[str] | None = None,
        searched_by: str = "",
        errors: Sequence[tuple[str, str]] = (),
        subject_value: str = "",
        status: int = 200,
    ) -> Template:
        return await render(
            request,
            "compliance/subjects.html",
            visit=visit,
            status=status,
            section="compliance",
            title="Who accessed a customer?",
            dates=dates,
            report=report,
            newer=newer,
            older=older,
            names=names or {},
            candidates=candidates,
            searched_by=searched_by,
            errors=errors,
            error_fields={name for name, _ in errors},
            subject_value=report.subject_id if report else subject_value,
            **row_helpers(),
        )

    @get("/staff")
    async def staff_index(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Everyone with events in a range, busiest first: the way into one person's report
        when the question starts from a colleague rather than from a customer."""
        services = services_of(request)
        require_policy(services, visit, "read")
        params = request.query_params
        try:
            dates, since, until = report_range(params)
            overview = await queries.actor_overview(since, until)
        except (InvalidFilter, BadInput) as exc:
            return await refused_report(
                request,
                visit,
                exc,
                report_name="staff_overview",
                filters=used_filters(params),
                template="compliance/staff_index.html",
                title="Staff activity",
                overview=None,
            )
        await record_view(
            services,
            visit,
            "audit.report",
            detail={
                "report": "staff_overview",
                "days": dates.days,
                "actors": len(overview.actors),
                "events": sum(a.events for a in overview.actors),
            },
        )
        return await render(
            request,
            "compliance/staff_index.html",
            visit=visit,
            section="compliance",
            title="Staff activity",
            overview=overview,
            dates=dates,
            range_query=urlencode(dates.params()),
            names=await staff_names(services, (a.actor_id for a in overview.actors)),
            errors=(),
            error_fields=set(),
            **row_helpers(),
        )

    @get("/staff/{actor_id:str}")
    async def staff(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        actor_id: FromPath[str],
    ) -> Template:
        """What one staff member (or system job) did in a range of days."""
        services = services_of(request)
        require_policy(services, visit, "read")
        params = request.query_params
        try:
            dates, since, until = report_range(params)
            before, after = cursors(params)
            report = await queries.staff_activity(
                actor_id, since, until, before_seq=before, after_seq=after
            )
        except (InvalidFilter, BadInput) as exc:
            return await refused_report(
                request,
                visit,
                exc,
                report_name="staff",
                filters="actor_id," + used_filters(params),
                template="compliance/staff.html",
                title="Staff activity",
                report=None,
                actor_id="",
            )
        await record_view(
            services,
            visit,
            "audit.report",
            detail={
                "report": "staff",
                "actor": report.actor_id,
                "days": dates.days,
                "events": report.total,
                "subjects": report.distinct_subjects,
            },
        )
        kept = dates.params()
        newer, older = page_links(staff_link(report.actor_id), kept, report.events)
        names = await staff_names(services, [report.actor_id])
        return await render(
            request,
            "compliance/staff.html",
            visit=visit,
            section="compliance",
            title="Staff activity",
            report=report,
            actor_id=report.actor_id,
            person=names.get(report.actor_id, ""),
            dates=dates,
            newer=newer,
            older=older,
            names=names,
            errors=(),
            error_fields=set(),
            **row_helpers(),
        )

    @get("/denials")
    async def denials(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Refused operations, grouped by who was refused and why."""
        services = services_of(request)
        require_policy(services, visit, "read")
        params = request.query_params
        try:
            dates, since, until = report_range(params)
            before, after = cursors(params)
            report = await queries.denials(since, until, before_seq=before, after_seq=after)
        except (InvalidFilter, BadInput) as exc:
            return await refused_report(
                request,
                visit,
                exc,
                report_name="denials",
                filters=used_filters(params),
                template="compliance/denials.html",
                title="Denied access",
                report=None,
            )
        await record_view(
            services,
            visit,
            "audit.report",
            detail={
                "report": "denials",
                "days": dates.days,
                "events": report.total,
                "groups": len(report.groups),
            },
        )
        newer, older = page_links("/compliance/denials", dates.params(), report.events)
        return await render(
            request,
            "compliance/denials.html",
            visit=visit,
            section="compliance",
            title="Denied access",
            report=report,
            dates=dates,
            newer=newer,
            older=older,
            names=await staff_names(
                services,
                [*(g.actor_id for g in report.groups), *(e.actor_id for e in report.events.events)],
            ),
            errors=(),
            error_fields=set(),
            **row_helpers(),
        )


def _dates_or_none(params: Mapping[str, Any]) -> tuple[dt.date | None, dt.date | None]:
    """The dates to show again in a refused form (whatever parsed)."""
    return _date(params, "from")[0], _date(params, "to")[0]


def row_helpers() -> dict[str, Any]:
    """Functions the event tables call."""
    return {
        "when": when,
        "staff_link": staff_link,
        "subject_link": subject_link,
        "outcome_labels": OUTCOME_LABELS,
        "max_subjects_shown": MAX_SUBJECTS_SHOWN,
    }
