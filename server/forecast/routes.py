"""``/api/v1/forecast``: the sales forecast as JSON, the same numbers as the ``/forecast``
page. Roles the policy does not grant ``forecast view`` get 403. Amounts are integers in
minor units, per currency (never added across currencies)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import Parameter

from audit.log import AuditLog
from policy.enforcer import PolicyEngine
from server.forecast.service import Figures, Forecasts, period_for
from server.gateway import Actor, Gateway
from server.settings import Settings
from server.web import policy_guard, provide_actor, provide_identity

NO_ACCESS = "your role may not see the sales forecast"


class ForecastCellOut(msgspec.Struct):
    month: str
    category: str  # commit | best_case | pipeline
    currency: str | None
    deals: int
    amount: int
    weighted: int


class FiguresOut(msgspec.Struct):
    owner_id: int | None  # None for a team row
    team: str
    open_deals: int | None  # None: suppressed (see ``suppressed``)
    weighted: dict[str, int] | None
    won: int | None
    lost: int | None
    won_value: dict[str, int] | None
    win_rate: float | None
    average_cycle_days: float | None
    interactions: int | None  # None: the role may not count interactions
    tasks_done: int | None
    quota: dict[str, int]
    attainment: dict[str, float | None]
    # Small groups hidden in a rep's team totals: "open", "closed", "interactions",
    # "tasks_done" (server.reports.small_groups); their figures are null.
    suppressed: list[str] = msgspec.field(default_factory=list)


class ForecastOut(msgspec.Struct):
    period: str
    start: str  # first day
    end: str  # last day (inclusive)
    months: list[str]
    cells: list[ForecastCellOut]
    people: list[FiguresOut]
    teams: list[FiguresOut]
    team_totals: bool  # the team rows are the caller's team's totals (a rep's view)


def _figures(f: Figures) -> FiguresOut:
    return FiguresOut(
        owner_id=f.owner_id,
        team=f.team,
        open_deals=f.shown("open_deals"),
        weighted=f.shown("weighted"),
        won=f.shown("won"),
        lost=f.shown("lost"),
        won_value=f.shown("won_value"),
        win_rate=None if f.win_rate is None else round(f.win_rate, 4),
        average_cycle_days=None if f.average_cycle is None else round(f.average_cycle, 1),
        interactions=f.shown("interactions"),
        tasks_done=f.shown("tasks_done"),
        quota=f.quota,
        attainment={c: f.attainment(c) for c in sorted(f.quota)},
        suppressed=sorted(f.suppressed),
    )


class ForecastRoutes(Controller):
    path = "/api/v1/forecast"
    tags = ["forecast"]
    guards = [policy_guard("forecast", "view", NO_ACCESS)]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get(
        "/",
        description=(
            "The weighted pipeline by expected close month and category (the deal's own "
            "forecast_category when set, else commit: probability >= 60, best_case: >= 30, "
            "pipeline: below), and per person and team: open deals, "
            "won and lost, won value, win rate, average cycle in days, interactions, tasks "
            "done, quota and attainment, over `period` (month, quarter - the default - or "
            "custom with `start` and `end`, inclusive dates). A rep sees their own figures "
            "and their team's totals. Amounts in minor units per currency; see "
            "docs/analytics.md."
        ),
    )
    async def forecast(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        period: Literal["month", "quarter", "custom"] = Parameter(default="quarter"),
        start: str = Parameter(default="", max_length=10, description="custom: YYYY-MM-DD"),
        end: str = Parameter(default="", max_length=10, description="custom: YYYY-MM-DD"),
        *,
        audit: NamedDependency[AuditLog],
        gateway: NamedDependency[Gateway],
        policy: NamedDependency[PolicyEngine],
        settings: NamedDependency[Settings],
    ) -> ForecastOut:
        chosen = period_for(period, dt.datetime.now(dt.UTC).date(), start, end)
        report = await Forecasts(
            gateway,
            policy,
            audit,
            min_group_size=settings.report_min_group_size,
        ).forecast(actor, chosen)
        return ForecastOut(
            period=chosen.kind,
            start=chosen.start.isoformat(),
            end=chosen.last_day.isoformat(),
            months=list(chosen.months),
            cells=[
                ForecastCellOut(
                    c.month, c.category, c.currency or None, c.deals, c.amount, c.weighted
                )
                for c in report.cells
            ],
            people=[_figures(f) for f in report.people],
            teams=[_figures(f) for f in report.teams],
            team_totals=report.team_totals,
        )
