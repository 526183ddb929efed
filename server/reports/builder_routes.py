"""``/api/v1/reports/builder`` and ``/api/v1/reports/saved``: the report builder over REST.

Guarded by ``report view`` like the fixed reports. A run goes through the gateway's
audited ``aggregate`` under the caller's role, purpose and record scope; a field the role
may not read (or that is encrypted) is a 403 naming it; small groups are suppressed in
every answer, the CSV included; a differential-privacy release past the role's monthly
budget is a 409.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from server.auth.service import StaffIdentity
from server.datamap import RECORD_TYPES
from server.gateway import Actor, Gateway, NotFound
from server.reports import saved
from server.reports.builder import (
    BUCKETS,
    MEASURES,
    ReportBuilder,
    ReportDefinition,
    ReportResult,
    check_rights,
    date_fields,
    groupable_fields,
    summable_fields,
    to_csv,
)
from server.reports.privacy import PrivacyLedger
from server.reports.saved import SavedReportIn, SavedReportOut
from server.settings import Settings
from server.web import policy_guard, provide_actor, provide_identity

NO_ACCESS = "your role may not see the CRM reports"


class BuilderOptions(msgspec.Struct, frozen=True):
    """What the caller may build a report from, for one record type and purpose."""

    record_type: str
    record_types: list[str]
    group_fields: list[str]
    measure_fields: list[str]
    date_fields: list[str]
    measures: list[str]
    buckets: list[str]
    min_group_size: int
    dp_budget: float
    dp_remaining: float


class SavedReportList(msgspec.Struct, frozen=True):
    items: list[SavedReportOut]


async def builder_options(
    gateway: Gateway, settings: Settings, actor: Actor, record_type: str, purpose: str | None
) -> BuilderOptions:
    if record_type not in RECORD_TYPES:
        raise NotFound(f"unknown record type {record_type!r}")
    listable = [
        rt for rt in RECORD_TYPES if gateway.permitted_fields(actor, rt, "list") is not None
    ]
    left = await PrivacyLedger(settings.dp_epsilon_per_month).remaining(actor.role)
    return BuilderOptions(
        record_type=record_type,
        record_types=listable,
        group_fields=groupable_fields(gateway, actor, record_type, purpose),
        measure_fields=summable_fields(gateway, actor, record_type, purpose),
        date_fields=date_fields(gateway, actor, record_type, purpose),
        measures=list(MEASURES),
        buckets=list(BUCKETS),
        min_group_size=settings.report_min_group_size,
        dp_budget=left.budget,
        dp_remaining=left.remaining,
    )


class ReportBuilderRoutes(Controller):
    path = "/api/v1/reports"
    tags = ["reports"]
    guards = [policy_guard("report", "view", NO_ACCESS)]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get(
        "/builder/options",
        description=(
            "The record types, grouping fields, measure fields and date fields you may use "
            "for a report under `purpose` (your role's default when left out): fields stored "
            "in clear that your role may read. Also the minimum group size and your role's "
            "remaining differential-privacy budget this month."
        ),
    )
    async def options(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        record_type: str = Parameter(default="deal", max_length=64),
        purpose: str | None = Parameter(default=None, max_length=64),
        *,
        gateway: NamedDependency[Gateway],
        settings: NamedDependency[Settings],
    ) -> BuilderOptions:
        return await builder_options(gateway, settings, actor, record_type, purpose)

    @post(
        "/builder/run",
        status_code=HTTP_200_OK,
        description=(
            "Run a report definition: counts (or sum, average, median of a whole-number "
            "field) per group, over the records you may list. Cells of fewer than the "
            "minimum group size are null (suppressed), with complementary suppression so "
            "totals do not reveal them. 403 names a field you may not aggregate; 409 when a "
            "differential-privacy release exceeds your role's budget."
        ),
    )
    async def run(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        data: JSONBody[ReportDefinition],
        *,
        report_builder: NamedDependency[ReportBuilder],
    ) -> ReportResult:
        return await report_builder.run(actor, data)

    @post(
        "/builder/csv",
        status_code=HTTP_200_OK,
        # Not the handler's media_type: that would label its error answers as CSV too.
        responses={
            HTTP_200_OK: ResponseSpec(
                data_container=str,
                media_type="text/csv; charset=utf-8",
                description="The aggregates as CSV (suppressed cells say so)",
                generate_examples=False,
            )
        },
        description="The same report as CSV of the aggregates (suppressed cells say so).",
    )
    async def csv(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        data: JSONBody[ReportDefinition],
        *,
        report_builder: NamedDependency[ReportBuilder],
    ) -> Response[str]:
        result = await report_builder.run(actor, data)
        return Response(
            to_csv(result),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="report.csv"'},
        )

    @get("/saved", description="Your saved reports and those shared with your team or all.")
    async def list_saved(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
    ) -> SavedReportList:
        return SavedReportList(await saved.visible(actor))

    @post(
        "/saved",
        status_code=HTTP_201_CREATED,
        description=(
            "Save a report definition (not its results), shared with nobody, your team or "
            "all staff; `schedule` e-mails it to you as counts only. 403 names a field your "
            "role may not aggregate."
        ),
    )
    async def save(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        data: JSONBody[SavedReportIn],
        *,
        gateway: NamedDependency[Gateway],
    ) -> SavedReportOut:
        check_rights(gateway, actor, data.definition)
        return await saved.save(actor, data)

    @get("/saved/{report_id:uuid}", description="One saved report you may see (else 404).")
    async def get_saved(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        report_id: FromPath[UUID],
    ) -> SavedReportOut:
        return await saved.one(actor, report_id)

    @post(
        "/saved/{report_id:uuid}/run",
        status_code=HTTP_200_OK,
        description="Run a saved report under your own role and scope.",
    )
    async def run_saved(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        report_id: FromPath[UUID],
        *,
        report_builder: NamedDependency[ReportBuilder],
    ) -> ReportResult:
        found = await saved.one(actor, report_id)
        return await report_builder.run(actor, found.definition)

    @delete(
        "/saved/{report_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        description="Delete a saved report you own (403 for a shared one).",
    )
    async def delete_saved(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        report_id: FromPath[UUID],
    ) -> None:
        await saved.delete(actor, report_id)
