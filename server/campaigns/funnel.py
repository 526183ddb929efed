"""Campaign effectiveness: a funnel per campaign and per lead source (issue 20, item 6).

Audience and sent come from the campaign's delivery rows; withdrawn counts recipients who
used the one-click withdrawal link of the campaign's purpose after it went out; leads,
qualified, deals and won value come from the ``campaign_id`` (and ``source``) that staff
set on leads and deals, counted through the gateway's ``aggregate`` (the viewer's scope
applies, nothing is decrypted). Nobody's opens or clicks are tracked: there is no pixel
and no per-person link but the withdrawal link the law asks for.

Small groups (``server.reports.small_groups``): each row's stages nest (withdrawn within
sent within audience, qualified within leads, won within deals), so each nest is a little
grid with its total; a nest with a group under the minimum is hidden whole (its figures
``None`` through :meth:`FunnelRow.shown`). Delivery counts are over everyone, so they are
always subject to the rule; leads and deals follow the viewer's list scope.
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
from server.reports.small_groups import SmallGroups

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

    def hide_small_groups(
        self, delivery: SmallGroups, lead: SmallGroups, deal: SmallGroups
    ) -> None:
        nests: list[tuple[str, SmallGroups, dict[str, int]]] = [
            (
                "leads",
                lead,
                {"qualified": self.qualified, "other": self.leads - self.qualified},
            ),
            ("deals", deal, {"won": self.won, "other": self.deals - self.won}),
        ]
        if self.audience is not None:
            sent, withdrawn = self.sent or 0, self.withdrawn or 0
            parts = {"withdrawn": withdrawn, "kept": sent - withdrawn}
            nests.append(("audience", delivery, {**parts, "unsent": self.audience - sent}))
        self.suppressed = frozenset(
            name
            for name, rule, parts in nests
            if rule.hidden(["row"], list(parts), {("row", k): n for k, n in parts.items()})
        )


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
        sources: dict[str, FunnelRow] = {}
        leads = await self._gateway.aggregate(
            actor, "lead", group_by=("campaign_id", "source", "status")
        )
        for g in leads:
            source = str(g.key[1] or "")
            targets = [sources.setdefault(source, FunnelRow(source, source))]
            if g.key[0] is not None and str(g.key[0]) in by_id:
                targets.append(by_id[str(g.key[0])])
            for row in targets:
                row.leads += g.count
                if g.key[2] in QUALIFIED:
                    row.qualified += g.count
        deals_visible = True
        try:
            deals = await self._gateway.aggregate(
                actor,
                "deal",
                group_by=("campaign_id", "pipeline_id", "stage", "currency"),
                sum_of="amount",
            )
        except Forbidden:
            deals, deals_visible = [], False
        kinds = await stage_kinds()
        for g in deals:
            attributed = by_id.get(str(g.key[0])) if g.key[0] is not None else None
            if attributed is None:
                continue
            row = attributed
            row.deals += g.count
            if kinds.get((str(g.key[1]), str(g.key[2]))) == "won":
                row.won += g.count
                currency = str(g.key[3] or "")
                row.won_value[currency] = row.won_value.get(currency, 0) + (g.total or 0)
        rules = (self._rule(actor, None), self._rule(actor, "lead"), self._rule(actor, "deal"))
        for row in [*by_id.values(), *sources.values()]:
            row.hide_small_groups(*rules)
        return Funnel(
            campaigns=tuple(by_id.values()),
            sources=tuple(sorted(sources.values(), key=lambda r: r.key)),
            deals_visible=deals_visible,
        )

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
