"""The start page's numbers for each kind of work, through the gateway.

Each figure is a ``count`` or an ``aggregate``: the actor's record scope is compiled into
the query, nothing is decrypted, and the gateway audits a count (no customer touched), so
opening the start page never shows up in anyone's access report. Which sections a role
gets is a policy question: the work the role does (it may create deals, tasks, cases or
manage campaigns), never a role name.

Small groups (``server.reports.small_groups``): a figure over the viewer's own records (a
rep's own deals, my open cases) is exact; a figure over other people's records (an
admin's open deals by stage, a support team's cases, the contacts a team can reach) goes
through the rule, counting people where the records are about people: a figure about
fewer than the minimum is ``None`` (shown as suppressed), with complements.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

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
    deals: int | None  # None: a small group over other people's deals, suppressed
    amounts: tuple[tuple[str, int], ...]  # (currency, minor units); empty when suppressed


@dataclass(frozen=True)
class SalesFigures:
    open_by_stage: tuple[StageLine, ...]
    open_deals: int | None  # None: suppressed
    won_this_month: int | None
    won_amounts: tuple[tuple[str, int], ...]
    month_start: dt.date


@dataclass(frozen=True)
class Count:
    """A record count as the start page may show it."""

    total: int | None  # None: the role may not list these records
    suppressed: bool = False  # a small group over other people's records


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
        rule = self._rule(actor, "deal")
        groups = await self._gateway.aggregate(
            actor,
            "deal",
            group_by=("pipeline_id", "stage", "currency"),
            sum_of="amount",
            count_people=not rule.exact,
        )
        per_stage: dict[tuple[str, str], tuple[int, dict[str, int]]] = {}
        people: dict[tuple[str, str], int] = {}  # per stage: the largest group, a lower bound
        for g in groups:
            key = (str(g.key[0]), str(g.key[1]))
            count, totals = per_stage.get(key, (0, {}))
            if g.key[2] and g.total:
                totals[str(g.key[2])] = totals.get(str(g.key[2]), 0) + g.total
            per_stage[key] = (count + g.count, totals)
            people[key] = max(people.get(key, 0), g.people or 0)
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
        won, won_people, won_totals = await self._won_since(actor, start, kinds, rule)
        # Open deals by stage: one grid (stages x deals) with its total.
        labels = [f"{line.pipeline_id}/{line.key}" for line in lines]
        hidden = rule.hidden(
            labels,
            ["deals"],
            {(label, "deals"): line.deals or 0 for label, line in zip(labels, lines, strict=True)},
            {
                (label, "deals"): people.get((line.pipeline_id, line.key), 0)
                for label, line in zip(labels, lines, strict=True)
            },
        )
        shown = tuple(
            replace(line, deals=None, amounts=()) if (label, "deals") in hidden else line
            for label, line in zip(labels, lines, strict=True)
        )
        won_hidden = rule.hidden(
            ["won"], ["deals"], {("won", "deals"): won}, {("won", "deals"): won_people}
        )
        return SalesFigures(
            open_by_stage=shown,
            open_deals=None
            if (TOTAL, "deals") in hidden
            else sum(line.deals or 0 for line in lines),
            won_this_month=None if won_hidden else won,
            won_amounts=() if won_hidden else _amounts(won_totals),
            month_start=start.date(),
        )

    async def _won_since(
        self,
        actor: Actor,
        start: dt.datetime,
        kinds: Mapping[tuple[str, str], str],
        rule: SmallGroups,
    ) -> tuple[int, int, dict[str, int]]:
        """Deals won since ``start``: how many, the people behind the largest group (a lower
        bound, for small-group suppression) and the amounts per currency."""
        won_groups = await self._gateway.aggregate(
            actor,
            "deal",
            group_by=("pipeline_id", "stage", "currency"),
            sum_of="amount",
            since=("updated_at", start),
            count_people=not rule.exact,
        )
        won = won_people = 0
        won_totals: dict[str, int] = {}
        for g in won_groups:
            if kinds.get((str(g.key[0]), str(g.key[1]))) != "won":
                continue
            won += g.count
            won_people = max(won_people, g.people or 0)
            if g.key[2] and g.total:
                won_totals[str(g.key[2])] = won_totals.get(str(g.key[2]), 0) + g.total
        return won, won_people, won_totals

    def _rule(self, actor: Actor, resource: str) -> SmallGroups:
        return SmallGroups.for_scope(
            self._min_group_size, self._gateway.list_scope(actor, resource)
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
            actor,
            "case",
            group_by=("status",),
            before=("due_at", now),
            filters=open_,
            count_people=True,
        )
        late = sum(g.count for g in overdue)
        late_people = max((g.people or 0 for g in overdue), default=0)  # a lower bound
        every = await self._gateway.aggregate(
            actor, "case", group_by=("status",), filters=open_, count_people=True
        )
        in_scope = sum(g.count for g in every)
        in_scope_people = max((g.people or 0 for g in every), default=0)  # a lower bound
        # Open cases in scope, split into breached and not: one small grid (the owner's own
        # open cases are theirs to list, so that figure is exact). People, not records:
        # those not breached are at least everyone's people minus the breached ones'.
        rule = self._rule(actor, "case")
        parts = {("open", "breached"): late, ("open", "other"): in_scope - late}
        people = {
            ("open", "breached"): late_people,
            ("open", TOTAL): in_scope_people,
            ("open", "other"): max(0, in_scope_people - late_people),
        }
        hidden = rule.hidden(["open"], ["breached", "other"], parts, people)
        return CaseFigures(
            mine_open=mine,
            breaches=None if ("open", "breached") in hidden else late,
            open_in_scope=None if ("open", TOTAL) in hidden else in_scope,
        )

    async def count(self, actor: Actor, resource: str) -> Count:
        """How many records of a type the actor can reach (``total`` None: the role may
        not list them; the gateway has audited the refusal). Over other people's records
        the small-group rule applies (a count of fewer than the minimum is suppressed)."""
        try:
            total = await self._gateway.count(actor, resource)
        except (Forbidden, InvalidInput):
            return Count(None)
        hidden = self._rule(actor, resource).hidden(["n"], ["n"], {("n", "n"): total})
        return Count(None, suppressed=True) if hidden else Count(total)
