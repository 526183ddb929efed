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
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_403_FORBIDDEN

from admin_ui.pages.audit_views import (
    FILTER_PARAMS,
    OUTCOME_LABELS,
    PURPOSE,
    TEXT_FILTERS,
    BadInput,
    DateRange,
    bad_filter,
    chart_data,
    cursors,
    date_range,
    dates_or_none,
    default_range,
    event_filter,
    page_links,
    record_refusal,
    record_view,
    refused_report,
    report_range,
    require_policy,
    row_helpers,
    staff_link,
    staff_names,
    start_of,
    subject_link,
    text_param,
    today,
    trail_status,
    used_filters,
    when,
)
from admin_ui.rendering import flash, render, see_other
from admin_ui.rights import CONSOLE_RIGHT
from admin_ui.session import Visit, page_access, provide_visit, require_recent_login
from audit import queries
from audit.events import Outcome
from audit.log import AuditLog
from audit.queries import EventPage, InvalidFilter
from audit.trail import AuditTrail
from policy.enforcer import PolicyEngine
from server.auth.service import StaffAccounts
from server.datamap import PURPOSES
from server.gateway import Forbidden, Gateway, InvalidInput
from server.settings import Settings
from server.web import services_of

CHART_DAYS = 30
EXPORT_LIMIT = 10_000  # events in one slice export (each carries an inclusion proof)
MAX_CONTACT_INPUT = 320
EXPORT_REASONS = {  # fixed codes: free text could carry personal data into the audit log
    "data_subject_request": "Data-subject request",
    "internal_investigation": "Internal investigation",
    "regulator_request": "Regulator request",
    "external_audit": "External audit",
}
# --- pages ----------------------------------------------------------------------------------


class CompliancePages(Controller):
    path = "/compliance"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=CONSOLE_RIGHT)

    @get("/")
    async def overview(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        policy: NamedDependency[PolicyEngine],
        audit: NamedDependency[AuditLog],
        audit_trail: NamedDependency[AuditTrail],
        settings: NamedDependency[Settings],
    ) -> Template:
        """Is the trail intact and sealed, and what has happened in the last 30 days."""
        require_policy(policy, visit, "read")
        verification = None
        if policy.allows(visit.identity.role, "audit", "verify"):
            verification = await trail_status(audit_trail, settings.audit_stall_seconds)
        end = today()
        histogram = await queries.activity_histogram(
            start_of(end - dt.timedelta(days=CHART_DAYS - 1)),
            start_of(end + dt.timedelta(days=1)),
            "day",
        )
        totals = {key: sum(getattr(b, key) for b in histogram.buckets) for key in OUTCOME_LABELS}
        await record_view(
            audit,
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
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        policy: NamedDependency[PolicyEngine],
        audit: NamedDependency[AuditLog],
        accounts: NamedDependency[StaffAccounts],
    ) -> Template:
        """Search the log with any combination of filters, newest first."""
        require_policy(policy, visit, "read")
        params = request.query_params
        # Opened from a link: the last 30 days. Sent from the form (every field present,
        # perhaps empty): exactly what was asked, so empty dates mean the whole log.
        first_visit = not any(n in params for n in (*FILTER_PARAMS, "before", "after"))
        values = {n: text_param(params, n, 64) for n in FILTER_PARAMS}
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
            audit,
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
            names=await staff_names(accounts, (e.actor_id for e in page.events)),
        )

    async def _events_refused(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        values: dict[str, str],
        exc: BadInput,
    ) -> Template:
        await record_view(
            services_of(request).audit,
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
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        policy: NamedDependency[PolicyEngine],
        audit: NamedDependency[AuditLog],
        audit_trail: NamedDependency[AuditTrail],
    ) -> Response[Any] | Redirect | Template:
        """The matching events (newest ``EXPORT_LIMIT``) with inclusion proofs, as a JSON
        file anyone can check offline with ``consentry audit verify-slice``."""
        require_policy(policy, visit, "export")
        form = await request.form()
        values = {n: text_param(form, n, 64) for n in FILTER_PARAMS}
        kept = {k: v for k, v in values.items() if v}
        back = "/compliance/events?" + urlencode(kept) if kept else "/compliance/events"
        require_recent_login(visit, back)
        reason = text_param(form, "reason", 40)
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
        bundle = await audit_trail.slice_bundle(seqs)
        await record_view(
            audit,
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
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        policy: NamedDependency[PolicyEngine],
        audit: NamedDependency[AuditLog],
        accounts: NamedDependency[StaffAccounts],
    ) -> Template:
        """Who accessed one customer: by subject id (in the URL: it is pseudonymous)."""
        require_policy(policy, visit, "read")
        params = request.query_params
        subject = text_param(params, "subject", 64)
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
            audit,
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
                accounts, [*actors, *(e.actor_id for e in report.events.events)]
            ),
        )

    async def _subjects_refused(
        self, request: Request[Any, Any, Any], visit: Visit, subject: str, exc: BadInput
    ) -> Template:
        filters = "subject_id," + used_filters(request.query_params)
        await record_refusal(request, visit, "subject", filters)
        inputs = {"subject_id": "subject", "from": "subject-from", "to": "subject-to"}
        problems = [(inputs.get(n, n), text) for n, text in exc.problems]
        return await self._subjects_page(
            request,
            visit,
            dates=DateRange(*dates_or_none(request.query_params)),
            errors=problems,
            # A valid id is shown again; anything else may be a pasted e-mail address.
            subject_value=subject if "subject" not in {n for n, _ in problems} else "",
            status=HTTP_400_BAD_REQUEST,
        )

    @post("/subjects", status_code=200)
    async def find_subject(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        policy: NamedDependency[PolicyEngine],
        gateway: NamedDependency[Gateway],
    ) -> Template | Redirect:
        """Find a customer by e-mail address or phone number, then show the report by
        subject id. The value only travels in this POST body: the gateway matches it on
        the blind index, audits the lookup, and returns ids only."""
        require_policy(policy, visit, "read")
        form = await request.form()
        typed = text_param(form, "contact", MAX_CONTACT_INPUT)
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
            found = await gateway.locate_people(  # contacts and leads alike
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
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        policy: NamedDependency[PolicyEngine],
        audit: NamedDependency[AuditLog],
        accounts: NamedDependency[StaffAccounts],
    ) -> Template:
        """Everyone with events in a range, busiest first: the way into one person's report
        when the question starts from a colleague rather than from a customer."""
        require_policy(policy, visit, "read")
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
            audit,
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
            names=await staff_names(accounts, (a.actor_id for a in overview.actors)),
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
        *,
        policy: NamedDependency[PolicyEngine],
        audit: NamedDependency[AuditLog],
        accounts: NamedDependency[StaffAccounts],
    ) -> Template:
        """What one staff member (or system job) did in a range of days."""
        require_policy(policy, visit, "read")
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
            audit,
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
        names = await staff_names(accounts, [report.actor_id])
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
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        policy: NamedDependency[PolicyEngine],
        audit: NamedDependency[AuditLog],
        accounts: NamedDependency[StaffAccounts],
    ) -> Template:
        """Refused operations, grouped by who was refused and why."""
        require_policy(policy, visit, "read")
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
            audit,
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
                accounts,
                [*(g.actor_id for g in report.groups), *(e.actor_id for e in report.events.events)],
            ),
            errors=(),
            error_fields=set(),
            **row_helpers(),
        )
