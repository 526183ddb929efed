"""The report builder page (``/reports/builder``): choose a record type, grouping fields,
a measure, a time bucket and a filter; see the result as a table and a chart, download
its aggregates as CSV, save and share it, schedule it as an e-mail of counts.

The form is a plain GET (a report is a question: its address can be bookmarked); a
differential-privacy release spends budget, so it is a POST. Everything runs through
``server.reports.builder`` (the gateway's audited ``aggregate``, small groups suppressed),
exactly as ``/api/v1/reports/builder`` does. Who may open it is the policy's
``report view``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT

from admin_ui.forms import choice_label
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import PURPOSES, RECORD_TYPES
from server.gateway import Forbidden, Gateway, GatewayError, NotFound
from server.reports import saved
from server.reports.builder import (
    ReportBuilder,
    ReportDefinition,
    ReportResult,
    check_rights,
    to_csv,
)
from server.reports.builder_routes import builder_options
from server.web import services_of

PAGE = "/reports/builder"
NO_ACCESS = "your role may not see the CRM reports"


def _text(form: Mapping[str, Any], name: str, limit: int = 64) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def definition_from(form: Mapping[str, Any], *, with_dp: bool = False) -> ReportDefinition:
    """The form's fields as a definition (the Struct validates; the builder checks more)."""
    group_by = [g for g in (_text(form, "group_1"), _text(form, "group_2")) if g]
    filter_field, filter_value = _text(form, "filter_field"), _text(form, "filter_value", 200)
    raw: dict[str, Any] = {
        "record_type": _text(form, "record_type") or "deal",
        "group_by": list(dict.fromkeys(group_by)),
        "measure": _text(form, "measure") or "count",
        "measure_field": _text(form, "measure_field") or None,
        "bucket": _text(form, "bucket") or None,
        "bucket_field": (_text(form, "bucket_field") or None) if _text(form, "bucket") else None,
        "filters": {filter_field: filter_value} if filter_field and filter_value else {},
        "purpose": _text(form, "purpose") or None,
    }
    if raw["measure"] == "count":
        raw["measure_field"] = None
    if with_dp:
        try:
            raw["dp_epsilon"] = float(_text(form, "dp_epsilon") or "0.5")
        except ValueError:
            raw["dp_epsilon"] = -1  # refused by the Struct, with its reason
    return msgspec.convert(raw, ReportDefinition)


def form_values(definition: ReportDefinition | None, form: Mapping[str, Any]) -> dict[str, str]:
    if definition is None:
        return {k: _text(form, k, 200) for k in form}
    first_filter = next(iter(definition.filters.items()), ("", ""))
    return {
        "record_type": definition.record_type,
        "group_1": definition.group_by[0] if definition.group_by else "",
        "group_2": definition.group_by[1] if len(definition.group_by) > 1 else "",
        "measure": definition.measure,
        "measure_field": definition.measure_field or "",
        "bucket": definition.bucket or "",
        "bucket_field": definition.bucket_field or "",
        "filter_field": first_filter[0],
        "filter_value": first_filter[1],
        "purpose": definition.purpose or "",
        "dp_epsilon": str(definition.dp_epsilon or "0.5"),
    }


def result_chart(result: ReportResult) -> dict[str, Any]:
    """One bar per row; one series per column (suppressed cells are gaps, not zeros)."""
    return {
        "stacked": False,
        "labels": [choice_label(r.label) for r in result.rows],
        "series": [
            {
                "key": f"column-{i}",
                "label": choice_label(column),
                "data": [r.cells[i] for r in result.rows],
            }
            for i, column in enumerate(result.columns)
        ],
    }


def shown(value: float) -> str:
    """A cell as the table shows it: whole numbers with thousands separators."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


def _guard(request: Request[Any, Any, Any], visit: Visit) -> None:
    if not services_of(request).policy.allows(visit.identity.role, "report", "view"):
        raise Forbidden(NO_ACCESS)


class ReportBuilderPages(Controller):
    path = PAGE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/")
    async def builder(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """The form; with ``run`` (or a saved report) in the address, its result too."""
        _guard(request, visit)
        query = dict(request.query_params)
        definition: ReportDefinition | None = None
        shown_saved: saved.SavedReportOut | None = None
        if query.get("saved"):
            try:
                shown_saved = await saved.one(visit.actor, uuid.UUID(str(query["saved"])))
            except (ValueError, NotFound):
                raise NotFoundException() from None
            definition = shown_saved.definition
        elif query.get("run"):
            try:
                definition = definition_from(query)
            except msgspec.ValidationError as exc:
                return await self._page(request, visit, None, query, problem=str(exc))
        return await self._page(request, visit, definition, query, shown_saved=shown_saved)

    @post("/release")
    async def release(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """The same report released with differential privacy (spends the role's budget)."""
        _guard(request, visit)
        form = dict(await request.form())
        try:
            definition = definition_from(form, with_dp=True)
        except msgspec.ValidationError as exc:
            return await self._page(request, visit, None, form, problem=str(exc))
        return await self._page(request, visit, definition, form)

    @get("/export.csv")
    async def export(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        report_builder: NamedDependency[ReportBuilder],
    ) -> Response[str]:
        """The aggregates as CSV (small groups suppressed), for the form in the address."""
        _guard(request, visit)
        try:
            definition = definition_from(dict(request.query_params))
        except msgspec.ValidationError as exc:
            return Response(f"invalid report: {exc}\n", status_code=400, media_type="text/plain")
        result = await report_builder.run(visit.actor, definition)
        return Response(
            to_csv(result),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="report.csv"'},
        )

    @post("/save")
    async def save(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Any:
        _guard(request, visit)
        form = dict(await request.form())
        try:
            body = msgspec.convert(
                {
                    "name": _text(form, "name", 120) or "Report",
                    "definition": msgspec.to_builtins(definition_from(form)),
                    "shared_with": _text(form, "shared_with") or "none",
                    "schedule": _text(form, "schedule") or "none",
                },
                saved.SavedReportIn,
            )
            check_rights(gateway, visit.actor, body.definition)
        except msgspec.ValidationError as exc:
            return await self._page(request, visit, None, form, problem=str(exc))
        except GatewayError as exc:
            return await self._page(request, visit, None, form, problem=exc.message)
        kept = await saved.save(visit.actor, body)
        await flash(request, visit, "Report saved.")
        return see_other(f"{PAGE}?saved={kept.id}")

    @post("/saved/{report_id:uuid}/delete")
    async def delete(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        report_id: FromPath[uuid.UUID],
    ) -> Redirect:
        _guard(request, visit)
        await saved.delete(visit.actor, report_id)
        await flash(request, visit, "Report deleted.")
        return see_other(PAGE)

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        definition: ReportDefinition | None,
        form: Mapping[str, Any],
        *,
        problem: str = "",
        shown_saved: saved.SavedReportOut | None = None,
    ) -> Template:
        services = services_of(request)
        values = form_values(definition, form)
        record_type = values.get("record_type") or "deal"
        if record_type not in RECORD_TYPES:
            record_type, problem = "deal", problem or "record_type: not a record type"
        purpose = values.get("purpose") or None
        if purpose is not None and purpose not in PURPOSES:
            purpose, problem = None, problem or "purpose: not a registered purpose"
        result: ReportResult | None = None
        status = 200
        if definition is not None and not problem:
            try:
                result = await services.report_builder.run(visit.actor, definition)
            except GatewayError as exc:
                problem = exc.message
                status = HTTP_409_CONFLICT if exc.status_code == 409 else HTTP_400_BAD_REQUEST
        if problem and status == 200:
            status = HTTP_400_BAD_REQUEST
        try:
            options = await builder_options(
                services.gateway, services.settings, visit.actor, record_type, purpose
            )
        except GatewayError:
            options = await builder_options(
                services.gateway, services.settings, visit.actor, "deal", None
            )
        purposes = [
            p
            for p in PURPOSES
            if services.policy.allows(visit.identity.role, f"purpose:{p}", "use")
        ]
        return await render(
            request,
            "reports/builder.html",
            visit=visit,
            section="reports",
            title="Report builder",
            status=status,
            values=values,
            options=options,
            purposes=purposes,
            result=result,
            chart=result_chart(result) if result is not None else None,
            problem=problem,
            saved_reports=await saved.visible(visit.actor),
            shown_saved=shown_saved,
            query=request.url.query,
            label=choice_label,
            shown=shown,
        )
