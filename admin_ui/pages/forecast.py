"""The sales forecast page: weighted pipeline by expected close month and category, and
staff performance (won value, win rate, cycle, activities, quota attainment) per person
and team, over this month, this quarter or a custom range.

The numbers come from ``server.forecast`` (the gateway's audited ``aggregate``); each chart
is drawn by ``charts.js`` from a JSON block, and the same numbers are always in a table.
Who may open the page and who may set quotas are policy questions (``forecast view``,
``quota manage``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.response import Redirect, Template

from admin_ui.forms import choice_label
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.auth.directory import ActiveStaff, active_teams
from server.datamap import CURRENCIES
from server.forecast.service import CATEGORIES, Forecast, Forecasts, Period, period_for
from server.gateway import Forbidden, InvalidInput
from server.money import AmountError, format_money, parse_major, to_major
from server.web import services_of

CATEGORY_LABELS = {"commit": "Commit", "best_case": "Best case", "pipeline": "Pipeline"}


def _forecasts(request: Request[Any, Any, Any], role: str) -> Forecasts:
    services = services_of(request)
    forecasts = Forecasts(
        services.gateway,
        services.policy,
        services.audit,
        min_group_size=services.settings.report_min_group_size,
    )
    if not forecasts.may_view(role):
        raise Forbidden("your role may not see the sales forecast")
    return forecasts


def forecast_chart(report: Forecast, currency: str) -> dict[str, Any]:
    """Weighted value per expected close month, stacked by category (major units)."""
    return {
        "labels": list(report.period.months),
        "series": [
            {
                "key": category,
                "label": CATEGORY_LABELS[category],
                "data": [
                    float(to_major(report.month_total(m, category, currency), currency or None))
                    for m in report.period.months
                ],
            }
            for category in CATEGORIES
        ],
    }


def attainment_chart(report: Forecast, currency: str) -> dict[str, Any]:
    """Won value beside quota, per person and team (side by side: they do not add up)."""
    rows = [*report.people, *report.teams]
    return {
        "stacked": False,
        "labels": [
            r.label.split(" (")[0] if r.owner_id is not None else f"Team {r.label}" for r in rows
        ],
        "series": [
            {
                "key": "won",
                "label": "Won",
                "data": [
                    None  # suppressed: a gap, not a zero
                    if r.shown("won_value") is None
                    else float(to_major(r.won_value.get(currency, 0), currency))
                    for r in rows
                ],
            },
            {
                "key": "quota",
                "label": "Quota",
                "data": [float(to_major(r.quota.get(currency, 0), currency)) for r in rows],
            },
        ],
    }


def _period(request: Request[Any, Any, Any]) -> Period:
    q = request.query_params
    return period_for(
        str(q.get("period") or "quarter"),
        dt.datetime.now(dt.UTC).date(),
        str(q.get("start") or ""),
        str(q.get("end") or ""),
    )


class ForecastPages(Controller):
    path = "/forecast"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await self._page(request, visit, _period(request))

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        period: Period,
        *,
        error: str = "",
        status: int = 200,
    ) -> Template:
        forecasts = _forecasts(request, visit.identity.role)
        report = await forecasts.forecast(visit.actor, period)
        rows = [*report.people, *report.teams]
        money_currencies = sorted({c for r in rows for c in r.currencies} | set(report.currencies))
        charts: dict[str, Any] = {}
        for currency in report.currencies:
            charts[f"forecast-{currency or 'none'}"] = forecast_chart(report, currency)
        for currency in sorted(
            {c for r in rows for c in (*(r.shown("won_value") or {}), *r.quota)}
        ):
            charts[f"attainment-{currency}"] = attainment_chart(report, currency)
        manager = forecasts.quotas.may_manage(visit.identity.role)
        return await render(
            request,
            "forecast/index.html",
            visit=visit,
            status=status,
            section="forecast",
            title="Sales forecast",
            report=report,
            charts=charts,
            attainment=[name for name in charts if name.startswith("attainment-")],
            money_currencies=money_currencies,
            categories=CATEGORIES,
            category_labels=CATEGORY_LABELS,
            money=format_money,
            label=choice_label,
            manager=manager,
            staff=await ActiveStaff().choices() if manager else [],
            teams=await active_teams() if manager else [],
            this_month=dt.datetime.now(dt.UTC).strftime("%Y-%m"),
            currencies=CURRENCIES,
            error=error,
        )

    @post("/quotas")
    async def set_quota(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template | Redirect:
        forecasts = _forecasts(request, visit.identity.role)
        form = await request.form()

        def text(name: str, limit: int) -> str:
            value = form.get(name, "")
            return value.strip()[:limit] if isinstance(value, str) else ""

        period = period_for("quarter", dt.datetime.now(dt.UTC).date())
        who, currency = text("who", 80), text("currency", 3)
        try:
            amount = parse_major(text("amount", 40), currency if currency in CURRENCIES else None)
        except AmountError as exc:
            return await self._page(request, visit, period, error=f"Amount: {exc}", status=400)
        owner_id: int | None = None
        team = ""
        if who.startswith("user:") and who[5:].isdigit():
            owner_id = int(who[5:])
        elif who.startswith("team:"):
            team = who[5:]
        try:
            await forecasts.quotas.set(
                visit.actor,
                owner_id=owner_id,
                team=team,
                month=text("month", 7),
                currency=currency,
                amount=amount,
            )
        except InvalidInput as exc:
            return await self._page(request, visit, period, error=exc.message, status=400)
        await flash(request, visit, "Quota saved.")
        return see_other("/forecast")
