"""The CRM reports, computed through the gateway's ``aggregate``.

Every number is a GROUP BY over the records the signed-in user may list: the record scope
(own / team / all), the restriction register and the consent basis are compiled into the
query by the gateway, so a sales rep's pipeline is their own deals and nothing is
decrypted. Each report is one or two audited ``aggregate`` events with counts only.

Small groups (``server.reports.small_groups``): a report over the viewer's own records is
exact; over a team's or everyone's records, cells about fewer people than the minimum
group size are suppressed (``None``), with complementary suppression. People, not
records: each aggregate also counts the distinct data subjects per group, so ten deals of
two customers are a group of two.

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
from server.reports.small_groups import TOTAL, SmallGroups

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
    deals: int | None  # None: suppressed (a small group), the amount with it
    amount: int | None  # minor units; deals without an amount add nothing

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
    totals: dict[str, tuple[int, int] | None]  # per currency (deals, amount); None: suppressed
    suppressed: int = 0
    min_group_size: int = 0

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted({s.currency for s in self.stages}))

    def total(self, currency: str) -> int | None:
        shown = self.totals.get(currency)
        return None if shown is None else shown[1]

    def total_deals(self, currency: str) -> int | None:
        shown = self.totals.get(currency)
        return None if shown is None else shown[0]

    def as_json(self) -> dict[str, Any]:
        return {
            "stages": [s.as_json() for s in self.stages],
            "totals": [
                {
                    "currency": c or None,
                    "deals": self.total_deals(c),
                    "amount": self.total(c),
                }
                for c in self.currencies
            ],
            "suppressed": self.suppressed,
            "min_group_size": self.min_group_size,
        }


@dataclass(frozen=True)
class WinRate:
    period: str  # "90d" or "all"
    since: dt.datetime | None  # deals last updated at or after this moment; None: all time
    won: int | None  # None: suppressed
    lost: int | None
    suppressed: int = 0
    min_group_size: int = 0

    @property
    def rate(self) -> float | None:
        if self.won is None or self.lost is None:
            return None
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
            "suppressed": self.suppressed,
            "min_group_size": self.min_group_size,
        }


@dataclass(frozen=True)
class CaseReport:
    as_of: dt.datetime
    by_status: dict[str, int | None]  # every status, zeros included; None: suppressed
    breaches: dict[str, int | None]  # open and pending cases past their SLA due time
    total: int | None
    breached: int | None  # every breach
    suppressed: int = 0
    min_group_size: int = 0

    def within(self, status: str) -> int | None:
        """Cases of ``status`` within their SLA (or closed), None when not shown."""
        count, late = self.by_status[status], self.breaches.get(status, 0)
        return None if count is None or late is None else count - late

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "by_status": self.by_status,
            "total": self.total,
            "sla_breaches": {**self.breaches, "total": self.breached},
            "suppressed": self.suppressed,
            "min_group_size": self.min_group_size,
        }


@dataclass(frozen=True)
class InteractionReport:
    since: dt.datetime
    until: dt.datetime
    by_channel: dict[str, int | None]  # every channel, zeros included; None: suppressed
    total: int | None
    suppressed: int = 0
    min_group_size: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "by_channel": self.by_channel,
            "total": self.total,
            "suppressed": self.suppressed,
            "min_group_size": self.min_group_size,
        }


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)


class CrmReports:
    """The four reports for one gateway; the caller has checked ``may_view`` first."""

    def __init__(self, gateway: Gateway, *, min_group_size: int) -> None:
        self.gateway = gateway
        self.min_group_size = min_group_size

    def _rule(self, actor: Actor, resource: str) -> SmallGroups:
        return SmallGroups.for_scope(self.min_group_size, self.gateway.list_scope(actor, resource))

    def may_view(self, role: str) -> bool:
        return self.gateway.policy.allows(role, REPORT_RESOURCE, "view")

    async def pipeline(self, actor: Actor) -> Pipeline:
        rule = self._rule(actor, "deal")
        groups = await self.gateway.aggregate(
            actor,
            "deal",
            group_by=("stage", "currency"),
            sum_of="amount",
            count_people=not rule.exact,
        )
        # The people behind each currency's total (exact; not needed when nothing is hidden).
        per_currency = (
            []
            if rule.exact
            else await self.gateway.aggregate(
                actor, "deal", group_by=("currency",), count_people=True
            )
        )
        order = await stage_order()
        exact = sorted(
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
        rows = list(dict.fromkeys(s.stage for s in exact))
        currencies = sorted({s.currency for s in exact})
        counts = {(s.stage, s.currency): s.deals or 0 for s in exact}
        people = {(str(g.key[0] or ""), str(g.key[1] or "")): g.people or 0 for g in groups}
        people |= {(TOTAL, str(g.key[0] or "")): g.people or 0 for g in per_currency}
        hidden = rule.hidden(rows, currencies, counts, people)
        stages = tuple(
            StageTotal(s.stage, s.currency, None, None) if (s.stage, s.currency) in hidden else s
            for s in exact
        )
        totals: dict[str, tuple[int, int] | None] = {
            c: None
            if (TOTAL, c) in hidden
            else (
                sum(s.deals or 0 for s in exact if s.currency == c),
                sum(s.amount or 0 for s in exact if s.currency == c),
            )
            for c in currencies
        }
        return Pipeline(
            stages=stages,
            totals=totals,
            suppressed=len(hidden),
            min_group_size=self.min_group_size,
        )

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
            count_people=True,
        )
        # Won and lost by the stage's kind in its pipeline, whatever the stage is called.
        kinds = await stage_kinds()
        counts = {"won": 0, "lost": 0}
        people = {"won": 0, "lost": 0}  # folded from stages: the largest, a lower bound
        for g in groups:
            kind = kinds.get((str(g.key[0]), str(g.key[1])))
            if kind in counts:
                counts[kind] += g.count
                people[kind] = max(people[kind], g.people or 0)
        hidden = self._rule(actor, "deal").hidden(
            ["closed"],
            ["won", "lost"],
            {("closed", k): n for k, n in counts.items()},
            {("closed", k): n for k, n in people.items()},
        )
        won, lost = (None if ("closed", k) in hidden else counts[k] for k in ("won", "lost"))
        return WinRate(
            period=period,
            since=since,
            won=won,
            lost=lost,
            suppressed=len(hidden),
            min_group_size=self.min_group_size,
        )

    async def cases(self, actor: Actor, *, now: dt.datetime | None = None) -> CaseReport:
        moment = _now(now)
        every = await self.gateway.aggregate(actor, "case", group_by=("status",), count_people=True)
        overdue = await self.gateway.aggregate(
            actor, "case", group_by=("status",), before=("due_at", moment), count_people=True
        )
        by_status = dict.fromkeys(CASE_STATUSES, 0)
        for g in every:
            by_status[str(g.key[0] or "open")] = by_status.get(str(g.key[0] or "open"), 0) + g.count
        late = {str(g.key[0] or "open"): g.count for g in overdue}
        breaches = {s: late.get(s, 0) for s in OPEN_CASE_STATUSES}
        # One grid: status x (within SLA, breached); the row totals are the status counts.
        statuses = list(by_status)
        counts = {(s, "within"): n - breaches.get(s, 0) for s, n in by_status.items()}
        counts |= {(s, "breached"): n for s, n in breaches.items()}
        # People per cell: a status's people are within or breached (or both), so those
        # within are at least the status's people minus the breached ones.
        status_people = {str(g.key[0] or "open"): g.people or 0 for g in every}
        late_people = {str(g.key[0] or "open"): g.people or 0 for g in overdue}
        people = {(s, TOTAL): n for s, n in status_people.items()}
        people |= {(s, "breached"): late_people.get(s, 0) for s in breaches}
        people |= {
            (s, "within"): max(0, n - (late_people.get(s, 0) if s in breaches else 0))
            for s, n in status_people.items()
        }
        hidden = self._rule(actor, "case").hidden(statuses, ["within", "breached"], counts, people)
        return CaseReport(
            as_of=moment,
            by_status={s: None if (s, TOTAL) in hidden else n for s, n in by_status.items()},
            breaches={s: None if (s, "breached") in hidden else n for s, n in breaches.items()},
            total=None if (TOTAL, TOTAL) in hidden else sum(by_status.values()),
            breached=None if (TOTAL, "breached") in hidden else sum(breaches.values()),
            suppressed=len(hidden),
            min_group_size=self.min_group_size,
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
            count_people=True,
        )
        by_channel = dict.fromkeys(CHANNELS, 0)
        people: dict[tuple[str, str], int] = {}
        for g in groups:
            by_channel[str(g.key[0])] = by_channel.get(str(g.key[0]), 0) + g.count
            people[(str(g.key[0]), "n")] = g.people or 0
        channels = list(by_channel)
        hidden = self._rule(actor, "interaction").hidden(
            channels, ["n"], {(c, "n"): n for c, n in by_channel.items()}, people
        )
        return InteractionReport(
            since=since,
            until=until,
            by_channel={c: None if (c, "n") in hidden else n for c, n in by_channel.items()},
            total=None if (TOTAL, "n") in hidden else sum(by_channel.values()),
            suppressed=len(hidden),
            min_group_size=self.min_group_size,
        )
