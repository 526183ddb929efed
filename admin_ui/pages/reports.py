"""The CRM reports page: pipeline, win rate, cases and SLA breaches, interactions.

The numbers come from ``server.reports`` (the gateway's audited ``aggregate``), exactly
as the JSON endpoints under ``/api/v1/reports`` return them. Each report is a table that
is always there, plus a Chart.js chart drawn from the same numbers by ``charts.js`` when
JavaScript runs (the CSP allows no inline script, so the numbers travel as JSON blocks).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.response import Template

from admin_ui.forms import choice_label
from admin_ui.rendering import render
from admin_ui.session import Visit, page_access, provide_visit
from server.gateway import Forbidden, Gateway
from server.money import to_major
from server.reports.service import (
    INTERACTION_DAYS,
    OPEN_CASE_STATUSES,
    WIN_RATE_DAYS,
    CaseReport,
    CrmReports,
    InteractionReport,
    Pipeline,
    WinRate,
    money,
)
from server.settings import Settings

NOT_YOURS = "Your role may not list these records, so this report is left out."


def pipeline_chart(report: Pipeline) -> dict[str, Any]:
    """Value per stage in major units (the currency's own decimals: JPY has none), one bar
    per currency (side by side: amounts in different currencies do not add up)."""
    stages = list(dict.fromkeys(s.stage for s in report.stages))
    return {
        "stacked": False,
        "labels": [choice_label(s) for s in stages],
        "series": [
            {
                "key": f"currency-{currency or 'none'}",
                "label": currency or "No currency",
                "data": [_stage_value(report, s, currency) for s in stages],
            }
            for currency in report.currencies
        ],
    }


def _stage_value(report: Pipeline, stage: str, currency: str) -> float | None:
    """A stage's value in major units; None (a gap) when suppressed."""
    amounts = [t.amount for t in report.stages if t.stage == stage and t.currency == currency]
    if any(a is None for a in amounts):
        return None
    return float(to_major(sum(a or 0 for a in amounts), currency or None))


def win_rate_chart(report: WinRate, label: str) -> dict[str, Any]:
    return {
        "labels": [label],
        "series": [
            {"key": "won", "label": "Won", "data": [report.won]},
            {"key": "lost", "label": "Lost", "data": [report.lost]},
        ],
    }


def cases_chart(report: CaseReport) -> dict[str, Any]:
    statuses = list(report.by_status)
    return {
        "labels": [choice_label(s) for s in statuses],
        "series": [
            {
                "key": "within_sla",
                "label": "Within SLA or closed",
                "data": [report.within(s) for s in statuses],
            },
            {
                "key": "breached",
                "label": "SLA breached",
                "data": [report.breaches.get(s, 0) for s in statuses],
            },
        ],
    }


def interactions_chart(report: InteractionReport) -> dict[str, Any]:
    return {
        "labels": [choice_label(c) for c in report.by_channel],
        "series": [
            {
                "key": "interactions",
                "label": "Interactions",
                "data": list(report.by_channel.values()),
            }
        ],
    }


class ReportPages(Controller):
    path = "/reports"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
        settings: NamedDependency[Settings],
    ) -> Template:
        reports = CrmReports(gateway, min_group_size=settings.report_min_group_size)
        if not reports.may_view(visit.identity.role):
            raise Forbidden("your role may not see the CRM reports")
        period = "all" if request.query_params.get("period") == "all" else "90d"
        period_label = "All time" if period == "all" else f"Last {WIN_RATE_DAYS} days"
        sections: dict[str, Any] = {}
        charts: dict[str, Any] = {}
        try:
            pipeline = await reports.pipeline(visit.actor)
            win_rate = await reports.win_rate(visit.actor, period)
        except Forbidden:
            sections["pipeline"] = sections["win_rate"] = None
        else:
            sections["pipeline"] = pipeline
            sections["win_rate"] = win_rate
            charts["pipeline"] = pipeline_chart(pipeline)
            charts["win_rate"] = win_rate_chart(win_rate, period_label)
        try:
            cases = await reports.cases(visit.actor)
        except Forbidden:
            sections["cases"] = None
        else:
            sections["cases"] = cases
            charts["cases"] = cases_chart(cases)
        try:
            interactions = await reports.interactions(visit.actor)
        except Forbidden:
            sections["interactions"] = None
        else:
            sections["interactions"] = interactions
            charts["interactions"] = interactions_chart(interactions)
        return await render(
            request,
            "reports/index.html",
            visit=visit,
            section="reports",
            title="Reports",
            reports=sections,
            charts=charts,
            period=period,
            period_label=period_label,
            win_rate_days=WIN_RATE_DAYS,
            interaction_days=INTERACTION_DAYS,
            open_statuses=OPEN_CASE_STATUSES,
            money=money,
            label=choice_label,
            not_yours=NOT_YOURS,
        )
