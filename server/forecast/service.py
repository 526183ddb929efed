"""The sales forecast and staff performance, through the gateway's ``aggregate``.

Every figure is a GROUP BY over the records the signed-in user may list: record scope,
restriction and consent are compiled into the SQL by the gateway, nothing is decrypted,
and each query is one audited ``aggregate`` event with counts only. A role whose deal
scope is its own records (a sales rep) sees its own figures, and its team's totals when
the policy grants ``totals:team`` (one more aggregate per record type, never grouped by
owner, so no colleague's own numbers show).

- **Weighted pipeline**: open deals (stage kind ``open``) whose expected close date falls
  in the period, by month; weighted amount = amount x probability / 100. The probability
  is the deal's own (``deal.probability``: set from the stage when the deal enters it,
  changed by whoever may edit the deal), or the stage's when the deal has none.
- **Categories**: the deal's own ``forecast_category`` when someone set one (a rep's call:
  "commit" on a verbal yes at 50%), else from its probability: commit (>= ``COMMIT_FROM``),
  best case (>= ``BEST_CASE_FROM``), pipeline (below). The category never changes the
  weighted amount, only the column it is counted in.
- **Won value, win rate, cycle length**: deals that entered a won or lost stage in the
  period (``stage_entered_at``); cycle = days from the deal's creation to its win.
- **Activities**: interactions that took place in the period; tasks done whose last change
  falls in the period.
- **Quota and attainment**: quotas per staff member or team and month (:class:`Quotas`);
  attainment = won value / quota, per currency.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import PolicyEngine, Scope
from server import db
from server.auth.directory import staff_labels, staff_teams
from server.datamap import CURRENCIES
from server.forecast.tables import SalesQuota
from server.gateway import Actor, Forbidden, Gateway, Group, InvalidInput
from server.pipelines.service import stage_kinds, stage_probabilities
from server.reports.small_groups import SmallGroups

FORECAST_RESOURCE = "forecast"  # policy: ``p, sales, forecast, view, allow``
QUOTA_RESOURCE = "quota"  # policy: ``p, admin, quota, manage, allow``
COMMIT_FROM = 60  # the default pipeline's negotiation stage and beyond
BEST_CASE_FROM = 30  # from the proposal stage
CATEGORIES = ("commit", "best_case", "pipeline")
PERIOD_KINDS = ("month", "quarter", "custom")
MAX_PERIOD_DAYS = 731
MAX_QUOTA = 10**15  # minor units


def category_of(probability: int, chosen: object = None) -> str:
    """The deal's forecast category: ``chosen`` (the deal's ``forecast_category``) when
    set to a category, else what the probability gives."""
    if chosen in CATEGORIES:
        return str(chosen)
    if probability >= COMMIT_FROM:
        return "commit"
    if probability >= BEST_CASE_FROM:
        return "best_case"
    return "pipeline"


def weighted(amount: int, probability: int) -> int:
    """Minor units, rounded half up: 1001 at 50% -> 501."""
    return (amount * probability + 50) // 100


def _month(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    kind: str  # month | quarter | custom
    start: dt.date
    end: dt.date  # exclusive

    @property
    def months(self) -> tuple[str, ...]:
        """Every month the period touches, "2026-12"."""
        out, day = [], dt.date(self.start.year, self.start.month, 1)
        while day < self.end:
            out.append(_month(day))
            day = _next_month(day)
        return tuple(out)

    @property
    def last_day(self) -> dt.date:
        return self.end - dt.timedelta(days=1)

    def moments(self) -> tuple[dt.datetime, dt.datetime]:
        return (
            dt.datetime.combine(self.start, dt.time(), dt.UTC),
            dt.datetime.combine(self.end, dt.time(), dt.UTC),
        )


def _date(value: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{what}: expected a date as YYYY-MM-DD", problems={what: "expected YYYY-MM-DD"}
        ) from None


def period_for(kind: str, today: dt.date, start: str = "", end: str = "") -> Period:
    """This month, this quarter, or a custom range (``start`` and ``end`` inclusive)."""
    if kind == "month":
        first = dt.date(today.year, today.month, 1)
        return Period("month", first, _next_month(first))
    if kind == "quarter":
        first = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        return Period("quarter", first, _next_month(_next_month(_next_month(first))))
    if kind != "custom":
        raise InvalidInput(
            "period: must be one of: " + ", ".join(PERIOD_KINDS),
            problems={"period": "unknown period"},
        )
    first, last = _date(start, "start"), _date(end, "end")
    if last < first:
        raise InvalidInput("end: must not be before start", problems={"end": "before start"})
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise InvalidInput(
            f"end: a period is at most {MAX_PERIOD_DAYS} days", problems={"end": "too long"}
        )
    return Period("custom", first, last + dt.timedelta(days=1))


@dataclass(frozen=True)
class ForecastCell:
    month: str
    category: str
    currency: str  # "" for deals without a currency
    deals: int
    amount: int  # minor units, unweighted
    weighted: int


@dataclass
class Figures:
    """One staff member's (``owner_id`` set) or one team's figures over the period."""

    owner_id: int | None
    team: str
    label: str = ""
    open_deals: int = 0
    weighted: dict[str, int] = field(default_factory=dict)
    by_category: dict[str, dict[str, int]] = field(default_factory=dict)  # cat -> cur -> wtd
    won: int = 0
    lost: int = 0
    won_value: dict[str, int] = field(default_factory=dict)
    cycle_days: int = 0  # summed over won deals
    interactions: int | None = None  # None: the role may not count them
    tasks_done: int | None = None
    quota: dict[str, int] = field(default_factory=dict)
    # Figures hidden as small groups (server.reports.small_groups): "open" (open deals and
    # their weighted value), "closed" (won, lost, won value, cycle), "interactions",
    # "tasks_done". Only in a rep's team totals, where they are about colleagues' customers.
    suppressed: frozenset[str] = frozenset()

    def shown(self, name: str) -> Any:
        """A figure as it may be shown: None when suppressed."""
        group = _GROUP_OF.get(name, name)
        return None if group in self.suppressed else getattr(self, name)

    @property
    def win_rate(self) -> float | None:
        closed = self.won + self.lost
        return None if closed == 0 or "closed" in self.suppressed else self.won / closed

    @property
    def average_cycle(self) -> float | None:
        return None if self.won == 0 or "closed" in self.suppressed else self.cycle_days / self.won

    def attainment(self, currency: str) -> float | None:
        target = self.quota.get(currency, 0)
        if target <= 0 or "closed" in self.suppressed:
            return None
        return self.won_value.get(currency, 0) / target

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted({*self.weighted, *self.won_value, *self.quota}))

    def add(self, other: Figures) -> None:
        """Fold a member's figures into a team's."""
        self.open_deals += other.open_deals
        _merge(self.weighted, other.weighted)
        for cat, amounts in other.by_category.items():
            _merge(self.by_category.setdefault(cat, {}), amounts)
        self.won += other.won
        self.lost += other.lost
        _merge(self.won_value, other.won_value)
        self.cycle_days += other.cycle_days
        for name in ("interactions", "tasks_done"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                setattr(self, name, (mine or 0) + theirs)


_GROUP_OF = {
    "open_deals": "open",
    "weighted": "open",
    "by_category": "open",
    "won": "closed",
    "lost": "closed",
    "won_value": "closed",
}


def _small_groups_beyond(rule: SmallGroups, team: Figures, own: Figures) -> frozenset[str]:
    """What of a team's totals to hide from a member: the figures minus the member's own
    are the colleagues' (a reader subtracts), so the rule runs on that difference."""
    others = {
        "open": team.open_deals - own.open_deals,
        "won": team.won - own.won,
        "lost": team.lost - own.lost,
        "interactions": (team.interactions or 0) - (own.interactions or 0),
        "tasks_done": (team.tasks_done or 0) - (own.tasks_done or 0),
    }
    hidden: set[str] = set()
    closed = rule.hidden(
        ["others"], ["won", "lost"], {("others", k): others[k] for k in ("won", "lost")}
    )
    if closed:
        hidden.add("closed")
    for name in ("open", "interactions", "tasks_done"):
        if rule.hidden(["others"], [name], {("others", name): others[name]}):
            hidden.add(name)
    return frozenset(hidden)


def _merge(into: dict[str, int], more: Mapping[str, int]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


@dataclass(frozen=True)
class Forecast:
    period: Period
    cells: tuple[ForecastCell, ...]  # what the actor's own scope reaches
    people: tuple[Figures, ...]  # per staff member, in the actor's scope
    teams: tuple[Figures, ...]  # per team: summed from people, or the team's totals
    team_totals: bool  # teams come from team totals (a rep), not from the people rows

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(sorted({c.currency for c in self.cells}))

    def weighted_total(self, currency: str) -> int:
        return sum(c.weighted for c in self.cells if c.currency == currency)

    def month_total(self, month: str, category: str, currency: str) -> int:
        return sum(
            c.weighted
            for c in self.cells
            if (c.month, c.category, c.currency) == (month, category, currency)
        )


Key = tuple[int | None, str]


class Forecasts:
    """The forecast for one gateway; quotas through :class:`Quotas`."""

    def __init__(
        self, gateway: Gateway, policy: PolicyEngine, audit: AuditLog, *, min_group_size: int
    ) -> None:
        self._gateway = gateway
        self._min_group_size = min_group_size
        self._policy = policy
        self.quotas = Quotas(policy, audit)

    def may_view(self, role: str) -> bool:
        return self._policy.allows(role, FORECAST_RESOURCE, "view")

    def _sees_team_totals_only(self, role: str) -> bool:
        """A role limited to its own deals that may see its team's totals."""
        return not self._policy.allows(role, "deal", "scope:team") and self._policy.allows(
            role, "deal", "totals:team"
        )

    async def forecast(self, actor: Actor, period: Period) -> Forecast:
        cells, people = await self._figures(actor, period, team_totals=False)
        totals_only = self._sees_team_totals_only(actor.role) and bool(actor.team)
        if totals_only:
            _, team_rows = await self._figures(actor, period, team_totals=True)
            teams = {key: fig for key, fig in team_rows.items() if key[1] == actor.team}
            own = Figures(actor.user_id, actor.team)
            for fig in people.values():
                own.add(fig)
            rule = SmallGroups.for_scope(self._min_group_size, Scope.OWN, team_totals=True)
            for fig in teams.values():
                fig.suppressed = _small_groups_beyond(rule, fig, own)
        else:
            teams = {}
            for fig in people.values():
                teams.setdefault((None, fig.team), Figures(None, fig.team)).add(fig)
        await self._quotas_and_labels(period, people, teams)
        return Forecast(
            period=period,
            cells=tuple(sorted(cells, key=lambda c: (c.month, CATEGORIES.index(c.category)))),
            people=tuple(sorted(people.values(), key=lambda f: (f.team, f.label))),
            teams=tuple(sorted(teams.values(), key=lambda f: f.team)),
            team_totals=totals_only,
        )

    async def _figures(
        self, actor: Actor, period: Period, *, team_totals: bool
    ) -> tuple[list[ForecastCell], dict[Key, Figures]]:
        owner: tuple[str, ...] = () if team_totals else ("owner_id",)
        n = len(owner)
        kinds = await stage_kinds()
        chances = await stage_probabilities()
        rows: dict[Key, Figures] = {}

        def figures(g: Group) -> Figures:
            key: Key = (int(g.key[0]) if n else None, str(g.key[n] or ""))
            return rows.setdefault(key, Figures(key[0], key[1]))

        open_groups = await self._gateway.aggregate(
            actor,
            "deal",
            group_by=(
                *owner,
                "team",
                "pipeline_id",
                "stage",
                "probability",
                "expected_close",
                "currency",
                "forecast_category",
            ),
            sum_of="amount",
            since=("expected_close", period.start),
            before=("expected_close", period.end),
            team_totals=team_totals,
        )
        cells: dict[tuple[str, str, str], list[int]] = {}
        for g in open_groups:
            stage = (str(g.key[n + 1]), str(g.key[n + 2]))
            if kinds.get(stage) != "open":
                continue
            chance = g.key[n + 3]
            chance = chances.get(stage, 0) if chance is None else int(chance)
            close = g.key[n + 4]
            month = str(close)[:7]
            currency = str(g.key[n + 5] or "")
            amount = g.total or 0
            share = weighted(amount, chance)
            category = category_of(chance, g.key[n + 6])
            cell = cells.setdefault((month, category, currency), [0, 0, 0])
            cell[0] += g.count
            cell[1] += amount
            cell[2] += share
            fig = figures(g)
            fig.open_deals += g.count
            _merge(fig.weighted, {currency: share})
            _merge(fig.by_category.setdefault(category, {}), {currency: share})
        start, end = period.moments()
        await self._closed(actor, (start, end), owner, team_totals, figures, kinds)
        counted = await self._activities(actor, start, end, owner, team_totals, figures)
        for fig in rows.values():  # zero, not "not available", where the role could count
            if counted[0] and fig.interactions is None:
                fig.interactions = 0
            if counted[1] and fig.tasks_done is None:
                fig.tasks_done = 0
        return [
            ForecastCell(month, category, currency, deals, amount, share)
            for (month, category, currency), (deals, amount, share) in cells.items()
        ], rows

    async def _closed(
        self,
        actor: Actor,
        period: tuple[dt.datetime, dt.datetime],
        owner: tuple[str, ...],
        team_totals: bool,
        figures: Callable[[Group], Figures],
        kinds: Mapping[tuple[str, str], str],
    ) -> None:
        """Deals won or lost in the period per row: counts, won value and sales cycle."""
        n = len(owner)
        start, end = period
        closed = await self._gateway.aggregate(
            actor,
            "deal",
            group_by=(
                *owner,
                "team",
                "pipeline_id",
                "stage",
                "currency",
                "created_at",
                "stage_entered_at",
            ),
            sum_of="amount",
            since=("stage_entered_at", start),
            before=("stage_entered_at", end),
            team_totals=team_totals,
        )
        for g in closed:
            kind = kinds.get((str(g.key[n + 1]), str(g.key[n + 2])))
            if kind == "lost":
                figures(g).lost += g.count
            elif kind == "won":
                fig = figures(g)
                fig.won += g.count
                _merge(fig.won_value, {str(g.key[n + 3] or ""): g.total or 0})
                created, entered = g.key[n + 4], g.key[n + 5]
                if isinstance(created, dt.datetime) and isinstance(entered, dt.datetime):
                    fig.cycle_days += g.count * max(0, (entered - created).days)

    async def _activities(
        self,
        actor: Actor,
        start: dt.datetime,
        end: dt.datetime,
        owner: tuple[str, ...],
        team_totals: bool,
        figures: Callable[[Group], Figures],
    ) -> tuple[bool, bool]:
        """Interactions and tasks done per row; whether the role could count each."""
        try:
            met = await self._gateway.aggregate(
                actor,
                "interaction",
                group_by=(*owner, "team"),
                since=("occurred_at", start),
                before=("occurred_at", end),
                team_totals=team_totals,
            )
        except Forbidden:
            met = None
        try:
            done = await self._gateway.aggregate(
                actor,
                "task",
                group_by=(*owner, "team", "status"),
                since=("updated_at", start),
                before=("updated_at", end),
                team_totals=team_totals,
            )
        except Forbidden:
            done = None
        for g in met or ():
            fig = figures(g)
            fig.interactions = (fig.interactions or 0) + g.count
        for g in done or ():
            fig = figures(g)
            fig.tasks_done = (fig.tasks_done or 0) + (g.count if g.key[-1] == "done" else 0)
        return met is not None, done is not None

    async def _quotas_and_labels(
        self,
        period: Period,
        people: dict[Key, Figures],
        teams: dict[Key, Figures],
    ) -> None:
        quotas = await self.quotas.for_period(period)
        labels = await staff_labels(k[0] for k in people if k[0] is not None)
        for (owner_id, _), fig in people.items():
            fig.label = labels.get(owner_id or 0, f"Staff #{owner_id}")
            for q in quotas:
                if q.owner_id == owner_id:
                    _merge(fig.quota, {q.currency: q.amount})
        members: dict[str, dict[str, int]] = {}
        for q in quotas:
            if q.owner_id:
                _merge(members.setdefault(q.team_of_owner, {}), {q.currency: q.amount})
        for (_, team), fig in teams.items():
            fig.label = team or "No team"
            own = [q for q in quotas if not q.owner_id and q.team == team]
            for q in own:
                _merge(fig.quota, {q.currency: q.amount})
            if not own:  # no team quota set: the members' quotas add up
                _merge(fig.quota, members.get(team, {}))


@dataclass(frozen=True)
class Quota:
    id: str
    owner_id: int  # 0 for a team quota
    team: str
    month: str
    currency: str
    amount: int
    team_of_owner: str = ""  # the staff member's current team (team sums)


class Quotas:
    """Quotas per staff member or team and month. Setting one needs ``quota manage``."""

    def __init__(self, policy: PolicyEngine, audit: AuditLog) -> None:
        self._policy = policy
        self._audit = audit

    def may_manage(self, role: str) -> bool:
        return self._policy.allows(role, QUOTA_RESOURCE, "manage")

    async def for_period(self, period: Period) -> list[Quota]:
        rows = await SalesQuota.select().where(SalesQuota.month.is_in(list(period.months)))
        teams = await staff_teams(int(r["owner_id"]) for r in rows if r["owner_id"])
        return [
            Quota(
                id=str(r["id"]),
                owner_id=int(r["owner_id"]),
                team=str(r["team"]),
                month=str(r["month"]),
                currency=str(r["currency"]),
                amount=int(r["amount"]),
                team_of_owner=teams.get(int(r["owner_id"]), ""),
            )
            for r in rows
        ]

    async def set(
        self,
        actor: Actor,
        *,
        owner_id: int | None,
        team: str,
        month: str,
        currency: str,
        amount: int,
    ) -> None:
        """One quota (a staff member's when ``owner_id`` is given, else ``team``'s) for a
        month and currency; setting it again replaces it, 0 removes it."""
        if not self.may_manage(actor.role):
            await self._event(actor, Outcome.DENIED, reason="not_allowed")
            raise Forbidden("your role may not set quotas")
        problems: dict[str, str] = {}
        try:
            first = dt.date.fromisoformat(f"{month}-01")
        except ValueError:
            problems["month"] = "expected a month as YYYY-MM"
            first = None
        if currency not in CURRENCIES:
            problems["currency"] = "must be one of: " + ", ".join(CURRENCIES)
        if isinstance(amount, bool) or not 0 <= amount < MAX_QUOTA:
            problems["amount"] = "must be a whole number of minor units, 0 or more"
        if owner_id is None and not team:
            problems["team"] = "give a staff member or a team"
        if problems:
            raise InvalidInput(
                "invalid quota: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
                problems=problems,
            )
        assert first is not None
        key = (owner_id or 0, "" if owner_id else team, _month(first), currency)
        where = (
            (SalesQuota.owner_id == key[0])
            & (SalesQuota.team == key[1])
            & (SalesQuota.month == key[2])
            & (SalesQuota.currency == key[3])
        )
        async with db.write_transaction():
            await SalesQuota.delete().where(where)
            if amount:
                await SalesQuota.insert(
                    SalesQuota(
                        id=uuid.uuid4(),
                        owner_id=key[0],
                        team=key[1],
                        month=key[2],
                        currency=key[3],
                        amount=amount,
                        set_by=actor.user_id or 0,
                        updated_at=dt.datetime.now(dt.UTC),
                    )
                ).run()
            await self._event(
                actor,
                Outcome.ALLOWED,
                detail={"month": key[2], "currency": key[3], "for": "staff" if key[0] else "team"},
            )

    async def _event(
        self,
        actor: Actor,
        outcome: Outcome,
        *,
        reason: str = "allowed",
        detail: dict[str, int | str] | None = None,
    ) -> None:
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action="quota.set",
                resource_type=QUOTA_RESOURCE,
                outcome=outcome,
                reason=reason,
                fields=("amount",),
                request_id=actor.request_id,
                detail=detail or {},
            )
        )
