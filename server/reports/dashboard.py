"""The start page's numbers for each kind of work, through the gateway.

Each figure is a ``count`` or an ``aggregate``: the actor's record scope is compiled into
the query, nothing is decrypted, and the gateway audits a count (no customer touched), so
opening the start page never shows up in anyone's access report. Which sections a role
gets is a policy question: the work the role does (it may create deals, tasks, cases or
manage campaigns), never a role name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from policy.enforcer import PolicyEngine
from server.gateway import Actor, Forbidden, Gateway, InvalidInput
from server.pipelines.service import PipelineConfig, stage_kinds
from server.reports.service import OPEN_CASE_STATUSES
from server.reports.small_groups import TOTAL, SmallGroups


@dataclass(frozen=True)
class StageLine:
    pipeline: str
    stage: str
    key: str
    pipeline_id: str
    deals: int
    amounts: tuple[tuple[str, int], ...]  # (currency, minor units)


@dataclass(frozen=True)
class SalesFigures:
    open_by_stage: tuple[StageLine, ...]
    open_deals: int
    won_this_month: int
    won_amounts: tuple[tuple[str, int], ...]
    month_start: dt.date


@dataclass(frozen=True)
class TaskFigures:
    due_today: int  # open tasks of mine due by the end of today (overdue included)
    overdue: int


@dataclass(frozen=True)
class CaseFigures:
    mine_open: int  # open or pending cases I own
    breaches: int | None  # open or pending cases past their SLA due time, in my scope
    open_in_scope: int | None  # None: a small group beyond my own cases, suppressed


def month_start(now: dt.datetime) -> dt.datetime:
    return dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)


def _amounts(totals: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(totals.items()))


class Dashboard:
    """What the start page shows, for one gateway and policy."""

    def __init__(self, gateway: Gateway, policy: PolicyEngine, *, min_group_size: int) -> None:
        self._min_group_size = min_group_size
        self._gateway = gateway
        self._policy = policy

    # --- which sections ------------------------------------------------------------------

    def sells(self, role: str) -> bool:
        """Deals are this role's work (it may create them and read their stages)."""
        return self._policy.allows(role, "deal", "create") and self._policy.allows(
            role, "deal.stage", "read"
        )

    def does_tasks(self, role: str) -> bool:
        return self._policy.allows(role, "task", "create")

    def serves(self, role: str) -> bool:
        """Cases are this role's work (it may open them)."""
        return self._policy.allows(role, "case", "create")

    def markets(self, role: str) -> bool:
        return self._policy.allows(role, "campaign", "manage")

    def audits(self, role: str) -> bool:
        return self._policy.allows(role, "audit", "read")

    # --- figures ---------------------------------------------------------------------------

    async def sales(
        self, actor: Actor, pipelines: Sequence[PipelineConfig], now: dt.datetime
    ) -> SalesFigures:
        """Open deals per open stage (board order), and deals won since the first of the
        month (by their last change, as the reports count wins)."""
        kinds = await stage_kinds()
        groups = await self._gateway.aggregate(
            actor, "deal", group_by=("pipeline_id", "stage", "currency"), sum_of="amount"
        )
        per_stage: dict[tuple[str, str], tuple[int, dict[str, int]]] = {}
        for g in groups:
            key = (str(g.key[0]), str(g.key[1]))
            count, totals = per_stage.get(key, (0, {}))
            if g.key[2] and g.total:
                totals[str(g.key[2])] = totals.get(str(g.key[2]), 0) + g.total
            per_stage[key] = (count + g.count, totals)
        lines = []
        for pipeline in pipelines:
            for stage in pipeline.active_stages:
                if stage.kind != "open":
                    continue
                count, totals = per_stage.get((pipeline.id, stage.key), (0, {}))
                if count or pipeline is pipelines[0]:
                    lines.append(
                        StageLine(
                            pipeline.name,
                            stage.name,
                            stage.key,
                            pipeline.id,
                            count,
                            _amounts(totals),
                        )
                    )
        start = month_start(now)
        won_groups = await self._gateway.aggregate(
            actor,
            "deal",
            group_by=("pipeline_id", "stage", "currency"),
            sum_of="amount",
            since=("updated_at", start),
        )
        won = 0
        won_totals: dict[str, int] = {}
        for g in won_groups:
            if kinds.get((str(g.key[0]), str(g.key[1]))) != "won":
                continue
            won += g.count
            if g.key[2] and g.total:
                won_totals[str(g.key[2])] = won_totals.get(str(g.key[2]), 0) + g.total
        return SalesFigures(
            open_by_stage=tuple(lines),
            open_deals=sum(line.deals for line in lines),
            won_this_month=won,
            won_amounts=_amounts(won_totals),
            month_start=start.date(),
        )

    async def tasks(self, actor: Actor, now: dt.datetime) -> TaskFigures:
        end_of_day = dt.datetime.combine(now.date(), dt.time(), dt.UTC) + dt.timedelta(days=1)
        mine = {"owner_id": actor.user_id, "status": "open"}
        due = await self._gateway.count(
            actor, "task", filters={**mine, "due_at_before": end_of_day.isoformat()}
        )
        overdue = await self._gateway.count(
            actor, "task", filters={**mine, "due_at_before": now.isoformat()}
        )
        return TaskFigures(due_today=due, overdue=overdue)

    async def cases(self, actor: Actor, now: dt.datetime) -> CaseFigures:
        open_ = {"status": list(OPEN_CASE_STATUSES)}
        mine = await self._gateway.count(
            actor, "case", filters={**open_, "owner_id": actor.user_id}
        )
        overdue = await self._gateway.aggregate(
            actor, "case", group_by=("status",), before=("due_at", now)
        )
        late = sum(g.count for g in overdue if str(g.key[0] or "open") in OPEN_CASE_STATUSES)
        in_scope = await self._gateway.count(actor, "case", filters=open_)
        # Open cases in scope, split into breached and not: one small grid (the owner's own
        # open cases are theirs to list, so that figure is exact).
        rule = SmallGroups.for_scope(self._min_group_size, self._gateway.list_scope(actor, "case"))
        parts = {("open", "breached"): late, ("open", "other"): in_scope - late}
        hidden = rule.hidden(["open"], ["breached", "other"], parts)
        return CaseFigures(
            mine_open=mine,
            breaches=None if ("open", "breached") in hidden else late,
            open_in_scope=None if ("open", TOTAL) in hidden else in_scope,
        )

    async def count(self, actor: Actor, resource: str) -> int | None:
        """How many records of a type the actor can reach (None: the role may not list
        them; the gateway has audited the refusal)."""
        try:
            return await self._gateway.count(actor, resource)
        except (Forbidden, InvalidInput):
            return None
