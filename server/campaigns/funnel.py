"""Campaign effectiveness: a funnel per campaign and per lead source (issue 20, item 6).

Audience and sent come from the campaign's delivery rows; withdrawn counts recipients who
used the one-click withdrawal link of the campaign's purpose after it went out; leads,
qualified, deals and won value come from the ``campaign_id`` (and ``source``) that staff
set on leads and deals, counted through the gateway's ``aggregate`` (the viewer's scope
applies, nothing is decrypted). Nobody's opens or clicks are tracked: there is no pixel
and no per-person link but the withdrawal link the law asks for.

Small groups (``server.reports.small_groups``): each row's stages nest (withdrawn within
sent within audience, qualified within leads, won within deals). Each nest is one grid
over all the rows of a table (rows x the nest's parts), with a total row, so complementary
suppression works across rows: a hidden campaign cannot be recovered as "total minus the
other campaigns". The campaign table has a row for leads and deals without a campaign, so
its lead totals are the source table's, and a total hidden in one table is hidden in the
other. A row's nest with any hidden part is hidden whole (its figures ``None`` through
:meth:`FunnelRow.shown`). The rule counts people: a deal cell's people come from the
gateway (``count_people``). Delivery counts are over everyone (one delivery per person),
so they are always subject to the rule; leads and deals follow the viewer's list scope.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from piccolo.query.functions.aggregate import Count

from policy.enforcer import Scope
from server.campaigns.service import Campaigns
from server.campaigns.tables import Campaign, CampaignDelivery
from server.consent.reports import withdrawals_by
from server.gateway import Actor, Forbidden, Gateway
from server.pipelines.service import stage_kinds
from server.reports.small_groups import TOTAL, SmallGroups

QUALIFIED = ("qualified", "converted")  # lead statuses that passed qualification


@dataclass
class FunnelRow:
    key: str  # a campaign id, or a lead source
    label: str
    audience: int | None = None  # None: not a campaign (a source row)
    sent: int | None = None
    withdrawn: int | None = None
    leads: int = 0
    qualified: int = 0
    deals: int = 0
    won: int = 0
    won_value: dict[str, int] = field(default_factory=dict)
    cost: int = 0
    cost_currency: str = ""
    suppressed: frozenset[str] = frozenset()  # "audience", "leads", "deals": hidden nests

    def shown(self, name: str) -> Any:
        """A figure as it may be shown: None when its nest is suppressed."""
        return None if _NEST_OF.get(name, name) in self.suppressed else getattr(self, name)

    @property
    def cost_per_won(self) -> int | None:
        """Minor units of ``cost_currency``; None without a cost or a won deal, or when the
        deals are suppressed."""
        if not self.cost or not self.won or "deals" in self.suppressed:
            return None
        return (self.cost + self.won // 2) // self.won

    def parts(self, nest: str) -> dict[str, int]:
        """The disjoint parts of a nest, which add up to its total (the row's audience,
        leads or deals)."""
        if nest == "audience":
            sent, withdrawn = self.sent or 0, self.withdrawn or 0
            return {
                "withdrawn": withdrawn,
                "kept": sent - withdrawn,
                "unsent": (self.audience or 0) - sent,
            }
        if nest == "leads":
            return {"qualified": self.qualified, "other": self.leads - self.qualified}
        return {"won": self.won, "other": self.deals - self.won}

    def add(self, other: FunnelRow) -> None:
        """Fold another row into this one (a total)."""
        for name in ("leads", "qualified", "deals", "won"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.audience is not None:
            for name in ("audience", "sent", "withdrawn"):
                setattr(self, name, (getattr(self, name) or 0) + (getattr(other, name) or 0))
        for currency, value in other.won_value.items():
            self.won_value[currency] = self.won_value.get(currency, 0) + value


NESTS = ("audience", "leads", "deals")
NO_CAMPAIGN = "\x00none"  # the row of leads and deals that name no campaign
TOTAL_ROW = "\x00total"

# People behind a nest part, per row (a lower bound when folded from several groups).
People = dict[tuple[str, str], int]


def _hide_nest(
    rows: list[FunnelRow],
    total: FunnelRow,
    nest: str,
    rule: SmallGroups,
    people: People | None = None,
    force_total: bool = False,
) -> bool:
    """Suppress one nest over a table's rows (one grid, with complements across rows);
    hide each row's nest whole when any part of it is hidden. Returns whether the total
    row's nest is hidden."""
    if not rows:
        return False
    columns = list(rows[0].parts(nest))
    counts = {(r.key, c): n for r in rows for c, n in r.parts(nest).items()}
    forced = [(TOTAL, c) for c in [*columns, TOTAL]] if force_total else []
    hidden = rule.hidden([r.key for r in rows], columns, counts, people, forced)
    for row in rows:
        if any(label[0] == row.key for label in hidden):
            row.suppressed = row.suppressed | {nest}
    total_hidden = any(label[0] == TOTAL for label in hidden)
    if total_hidden:
        total.suppressed = total.suppressed | {nest}
    return total_hidden


_NEST_OF = {
    "audience": "audience",
    "sent": "audience",
    "withdrawn": "audience",
    "leads": "leads",
    "qualified": "leads",
    "deals": "deals",
    "won": "deals",
    "won_value": "deals",
}


@dataclass(frozen=True)
class Funnel:
    campaigns: tuple[FunnelRow, ...]
    sources: tuple[FunnelRow, ...]
    deals_visible: bool  # False: the role may not count deals (deal columns left empty)
    # Leads and deals that name no campaign (its audience None), and the totals of each
    # table (the campaign total includes the row without a campaign).
    unattributed: FunnelRow = field(default_factory=lambda: FunnelRow(NO_CAMPAIGN, ""))
    campaign_total: FunnelRow = field(default_factory=lambda: FunnelRow(TOTAL_ROW, ""))
    source_total: FunnelRow = field(default_factory=lambda: FunnelRow(TOTAL_ROW, ""))


def _at_least(people: People, key: tuple[str, str], n: int | None) -> None:
    people[key] = max(people.get(key, 0), n or 0)


class CampaignFunnel:
    def __init__(self, gateway: Gateway, campaigns: Campaigns, *, min_group_size: int) -> None:
        self._gateway = gateway
        self._campaigns = campaigns
        self._min_group_size = min_group_size

    def _rule(self, actor: Actor, resource: str | None) -> SmallGroups:
        """The small-group rule for a record type (None: delivery rows, everyone's)."""
        scope = Scope.ALL if resource is None else self._gateway.list_scope(actor, resource)
        return SmallGroups.for_scope(self._min_group_size, scope)

    async def funnel(self, actor: Actor) -> Funnel:
        await self._campaigns.require_manager(actor, "funnel")
        by_id = await self._campaign_rows()
        unattributed = FunnelRow(NO_CAMPAIGN, "Without a campaign")
        sources: dict[str, FunnelRow] = {}
        lead_people: People = {}  # (campaign row key, part) and (source, part)
        source_people: People = {}
        leads = await self._gateway.aggregate(
            actor, "lead", group_by=("campaign_id", "source", "status"), count_people=True
        )
        for g in leads:
            source = str(g.key[1] or "")
            row = by_id.get(str(g.key[0]), unattributed) if g.key[0] is not None else unattributed
            part = "qualified" if g.key[2] in QUALIFIED else "other"
            for target, people in (
                (sources.setdefault(source, FunnelRow(source, source)), source_people),
                (row, lead_people),
            ):
                target.leads += g.count
                target.qualified += g.count if part == "qualified" else 0
                _at_least(people, (target.key, part), g.people)
        deal_people, deals_visible = await self._count_deals(actor, by_id, unattributed)
        campaign_rows = [*by_id.values(), unattributed]
        campaign_total = FunnelRow(TOTAL_ROW, "Total", audience=0, sent=0, withdrawn=0)
        source_total = FunnelRow(TOTAL_ROW, "Total")
        for row in campaign_rows:
            campaign_total.add(row)
        for row in sources.values():
            source_total.add(row)
        delivery, lead, deal = (
            self._rule(actor, None),
            self._rule(actor, "lead"),
            self._rule(actor, "deal"),
        )
        sent = [r for r in by_id.values() if r.audience]
        _hide_nest(sent, campaign_total, "audience", delivery)
        _hide_nest(campaign_rows, campaign_total, "deals", deal, deal_people)
        # Both tables count the same leads: a total hidden in one is hidden in the other,
        # and its complements are found there too.
        source_rows = list(sources.values())
        force = False
        while True:
            hidden = _hide_nest(campaign_rows, campaign_total, "leads", lead, lead_people, force)
            hidden |= _hide_nest(source_rows, source_total, "leads", lead, source_people, force)
            if hidden == force:
                break
            force = hidden
        return Funnel(
            campaigns=tuple(by_id.values()),
            sources=tuple(sorted(sources.values(), key=lambda r: r.key)),
            deals_visible=deals_visible,
            unattributed=unattributed,
            campaign_total=campaign_total,
            source_total=source_total,
        )

    async def _campaign_rows(self) -> dict[str, FunnelRow]:
        """A row per campaign, newest first, with its audience, sends and withdrawals."""
        rows = await Campaign.select(
            Campaign.id,
            Campaign.name,
            Campaign.purpose,
            Campaign.sent_at,
            Campaign.cost,
            Campaign.cost_currency,
        ).order_by(Campaign.created_at, ascending=False)
        by_id: dict[str, FunnelRow] = {}
        for r in rows:
            row = FunnelRow(
                str(r["id"]),
                str(r["name"]),
                cost=int(r["cost"] or 0),
                cost_currency=str(r["cost_currency"] or ""),
            )
            row.audience, row.sent, row.withdrawn = await self._deliveries(
                str(r["id"]), str(r["purpose"]), r["sent_at"]
            )
            by_id[row.key] = row
        return by_id

    async def _count_deals(
        self, actor: Actor, by_id: dict[str, FunnelRow], unattributed: FunnelRow
    ) -> tuple[People, bool]:
        """Deals and won deals per campaign row; the people behind them per (row, part),
        and whether the actor may see deals at all (else the columns stay empty)."""
        deals_visible = True
        try:
            deals = await self._gateway.aggregate(
                actor,
                "deal",
                group_by=("campaign_id", "pipeline_id", "stage", "currency"),
                sum_of="amount",
                count_people=True,
            )
        except Forbidden:
            deals, deals_visible = [], False
        kinds = await stage_kinds()
        deal_people: People = {}
        for g in deals:
            row = by_id.get(str(g.key[0]), unattributed) if g.key[0] is not None else unattributed
            row.deals += g.count
            part = "other"
            if kinds.get((str(g.key[1]), str(g.key[2]))) == "won":
                part = "won"
                row.won += g.count
                currency = str(g.key[3] or "")
                row.won_value[currency] = row.won_value.get(currency, 0) + (g.total or 0)
            _at_least(deal_people, (row.key, part), g.people)
        return deal_people, deals_visible

    @staticmethod
    async def _deliveries(campaign_id: str, purpose: str, sent_at: object) -> tuple[int, int, int]:
        rows = (
            await CampaignDelivery.select(CampaignDelivery.status, Count(alias="n"))
            .where(CampaignDelivery.campaign_id == uuid.UUID(campaign_id))
            .group_by(CampaignDelivery.status)
        )
        audience = sum(int(r["n"]) for r in rows)
        sent = sum(int(r["n"]) for r in rows if r["status"] == "sent")
        withdrawn = 0
        if sent and sent_at is not None:
            people = await CampaignDelivery.select(CampaignDelivery.subject_id).where(
                (CampaignDelivery.campaign_id == uuid.UUID(campaign_id))
                & (CampaignDelivery.status == "sent")
            )
            withdrawn = await withdrawals_by(
                [str(p["subject_id"]) for p in people],
                purpose,
                sent_at,  # type: ignore[arg-type]  # a Timestamptz value: a datetime
            )
        return audience, sent, withdrawn
