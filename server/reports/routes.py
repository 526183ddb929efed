"""``/api/v1/reports``: the CRM reports as JSON, the same numbers as the ``/reports`` page.

Staff session as for every API route. Roles the policy does not grant ``report view``
get 403 for all four; a role that has it but may not list a record type gets the
gateway's (audited) 403 for that report. Amounts are integers in minor units. Over records
beyond the viewer's own (a team's, everyone's), groups under the deployment's minimum
group size are null, with complementary suppression; ``suppressed`` counts them.
"""

from __future__ import annotations

from typing import Any, Literal

from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import PermissionDeniedException
from litestar.params import Parameter

from server.auth.service import StaffIdentity
from server.gateway import Actor
from server.reports.service import INTERACTION_DAYS, WIN_RATE_DAYS, CrmReports
from server.web import provide_actor, provide_identity, services_of

NO_ACCESS = "your role may not see the CRM reports"


def _reports(request: Request[Any, Any, Any], identity: StaffIdentity) -> CrmReports:
    services = services_of(request)
    reports = CrmReports(services.gateway, min_group_size=services.settings.report_min_group_size)
    if not reports.may_view(identity.role):
        raise PermissionDeniedException(NO_ACCESS)
    return reports


class ReportRoutes(Controller):
    path = "/api/v1/reports"
    tags = ["reports"]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get(
        "/pipeline",
        description=(
            "Pipeline value by stage: for each deal stage and currency, the number of deals "
            "and the sum of their amounts (integer minor units: 1250000 GBP is 12,500.00 GBP), "
            "plus totals per currency. Over the deals you may list (a rep limited to own "
            "records sees their own); erased people's deals still count. 403 for roles "
            "without access to reports or to deals."
        ),
    )
    async def pipeline(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
    ) -> dict[str, Any]:
        return (await _reports(request, identity).pipeline(actor)).as_json()

    @get(
        "/win-rate",
        description=(
            "Win rate: won / (won + lost) over deals whose last update falls in the last "
            f"{WIN_RATE_DAYS} days (`period=90d`, the default) or over all deals "
            "(`period=all`). `win_rate` is null when no deal was won or lost."
        ),
    )
    async def win_rate(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        period: Literal["90d", "all"] = Parameter(
            default="90d", description="`90d` (last update in the last 90 days) or `all`"
        ),
    ) -> dict[str, Any]:
        return (await _reports(request, identity).win_rate(actor, period)).as_json()

    @get(
        "/cases",
        description=(
            "Cases by status (every status, zeros included) and SLA breaches: open or "
            "pending cases whose SLA due time (`due_at`) has passed, as of `as_of`."
        ),
    )
    async def cases(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
    ) -> dict[str, Any]:
        return (await _reports(request, identity).cases(actor)).as_json()

    @get(
        "/interactions",
        description=(
            f"Interactions per channel that took place in the last {INTERACTION_DAYS} days "
            "(by `occurred_at`, up to now), every channel listed, zeros included."
        ),
    )
    async def interactions(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
    ) -> dict[str, Any]:
        return (await _reports(request, identity).interactions(actor)).as_json()
