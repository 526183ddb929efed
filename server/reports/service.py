"""The CRM reports, computed through the gateway's ``aggregate``.

Every number is a GROUP BY over the records the signed-in user may list: the record scope
(own / team / all), the restriction register and the consent basis are compiled into the
query by the gateway, so a sales rep's pipeline is their own deals and nothing is
decrypted. Each report is one or two audited ``aggregate`` events with counts only.

Who may open the reports at all is a policy question (``report view``); the gateway then
decides per record type, so a role allowed the reports but not, say, cases gets a 403 for
that report alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from server.datamap import CASE_STATUSES, CHANNELS
from server.gateway import Actor, Gateway
from server.money import format_money
from server.pipelines.service import stage_kinds, stage_order

REPORT_RESOURCE = "report"
WIN_RATE_DAYS = 90
INTERACTION_DAYS = 30
OPEN_CASE_STATUSES = ("open", "pending")  # a case in these states can breach its SLA
PERIODS = ("90d", "all")


def money(amount: int, currency: str | None) -> str:
    """Minor units as a price: 1250000, "GBP" -> "12,500.00 GBP"; 12500, "JPY" ->
    "12,500 JPY" (the currency's own decimals, server.money)."""
    return format_money(amount, currency or None)


@dataclass(frozen=True)
class StageTotal:
    stage: str
    currency: str  # "" for deals without a currency
    deals: int
    amount: int  # minor units; deals without an amount add nothing

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "currency": self.currency or None,
            "deals": self.deals,
            "amount": self.amount,
        }


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[StageTotal, ...]  # in pipeline order, then by currency

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted({s.currency for s in self.stages}))

    def total(self, currency: str) -> int:
        return sum(s.amount for s in self.stages if s.currency == currency)

    def as_json(self) -> dict[str, Any]:
        return {
            "stages": [s.as_json() for s in self.stages],
            "totals": [
                {
                    "currency": c or None,
                    "deals": sum(s.deals for s in self.stages if s.currency == c),
                    "amount": self.total(c),
                }
                for c in self.currencies
            ],
        }


@dataclass(frozen=True)
class WinRate:
    period: str  # "90d" or "all"
    since: dt.datetime | None  # deals last updated at or after this moment; None: all time
    won: int
    lost: int

    @property
    def rate(self) -> float | None:
        closed = self.won + self.lost
        return None if closed == 0 else self.won / closed

    def as_json(self) -> dict[str, Any]:
        rate = self.rate
        return {
            "period": self.period,
            "basis": "deals won or lost, by last update" + ("" if self.since else ", all time"),
            "since": self.since.isoformat() if self.since else None,
            "won": self.won,
            "lost": self.lost,
            "win_rate": None if rate is None else round(rate, 4),
        }


@dataclass(frozen=True)
class CaseReport:
    as_of: dt.datetime
    by_status: dict[str, int]  # every status, zeros included
    breaches: dict[str, int]  # open and pending cases past their SLA due time

    @property
    def breached(self) -> int:
        return sum(self.breaches.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "by_status": self.by_status,
            "total": sum(self.by_status.values()),
            "sla_breaches": {**self.breaches, "total": self.breached},
        }


@dataclass(frozen=True)
class InteractionReport:
    since: dt.datetime
    until: dt.datetime
    by_channel: dict[str, int]  # every channel, zeros included

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "by_channel": self.by_channel,
            "total": sum(self.by_channel.values()),
        }


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)


class CrmReports:
    """The four reports for one gateway; the caller has checked ``may_view`` first."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def may_view(self, role: str) -> bool:
        return self.gateway.policy.allows(role, REPORT_RESOURCE, "view")

    async def pipeline(self, actor: Actor) -> Pipeline:
        groups = await self.gateway.aggregate(
            actor, "deal", group_by=("stage", "currency"), sum_of="amount"
        )
        order = await stage_order()
        stages = sorted(
            (
                StageTotal(
                    stage=str(g.key[0] or ""),
                    currency=str(g.key[1] or ""),
                    deals=g.count,
                    amount=g.total or 0,
                )
                for g in groups
            ),
            key=lambda s: (order.get(s.stage, len(order)), s.stage, s.currency),
        )
        return Pipeline(stages=tuple(stages))

    async def win_rate(
        self, actor: Actor, period: str = "90d", *, now: dt.datetime | None = None
    ) -> WinRate:
        if period not in PERIODS:
            raise ValueError(f"period must be one of: {', '.join(PERIODS)}")
        since = _now(now) - dt.timedelta(days=WIN_RATE_DAYS) if period == "90d" else None
        groups = await self.gateway.aggregate(
            actor,
            "deal",
            group_by=("pipeline_id", "stage"),
            since=("updated_at", since) if since else None,
        )
        # Won and lost by the stage's kind in its pipeline, whatever the stage is called.
        kinds = await stage_kinds()
        counts = {"won": 0, "lost": 0}
        for g in groups:
            kind = kinds.get((str(g.key[0]), str(g.key[1])))
            if kind in counts:
                counts[kind] += g.count
        return WinRate(period=period, since=since, won=counts["won"], lost=counts["lost"])

    async def cases(self, actor: Actor, *, now: dt.datetime | None = None) -> CaseReport:
        moment = _now(now)
        every = await self.gateway.aggregate(actor, "case", group_by=("status",))
        overdue = await self.gateway.aggregate(
            actor, "case", group_by=("status",), before=("due_at", moment)
        )
        by_status = dict.fromkeys(CASE_STATUSES, 0)
        for g in every:
            by_status[str(g.key[0] or "open")] = by_status.get(str(g.key[0] or "open"), 0) + g.count
        late = {str(g.key[0] or "open"): g.count for g in overdue}
        return CaseReport(
            as_of=moment,
            by_status=by_status,
            breaches={s: late.get(s, 0) for s in OPEN_CASE_STATUSES},
        )

    async def interactions(
        self, actor: Actor, *, now: dt.datetime | None = None
    ) -> InteractionReport:
        until = _now(now)
        since = until - dt.timedelta(days=INTERACTION_DAYS)
        groups = await self.gateway.aggregate(
            actor,
            "interaction",
            group_by=("channel",),
            since=("occurred_at", since),
            before=("occurred_at", until),
        )
        by_channel = dict.fromkeys(CHANNELS, 0)
        for g in groups:
            by_channel[str(g.key[0])] = by_channel.get(str(g.key[0]), 0) + g.count
        return InteractionReport(since=since, until=until, by_channel=by_channel)
