"""The campaign funnel page: per campaign and per lead source, from audience to won value
and cost per won deal (``server.campaigns.funnel``), as a chart and the same numbers as a
table; people who manage campaigns also set a campaign's cost here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.response import Redirect, Template

from admin_ui.forms import FieldChoices, choice_label
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.campaigns.funnel import CampaignFunnel, Funnel
from server.campaigns.service import Campaigns, campaign_choices
from server.datamap import CURRENCIES
from server.gateway import InvalidInput
from server.money import AmountError, format_money, parse_major
from server.web import services_of

STEPS = (
    ("audience", "Audience"),
    ("sent", "Sent"),
    ("leads", "Leads"),
    ("qualified", "Qualified"),
    ("deals", "Deals"),
    ("won", "Won"),
)


def funnel_chart(funnel: Funnel) -> dict[str, Any]:
    """One bar group per campaign: how many at each step (counts, side by side)."""
    return {
        "stacked": False,
        "labels": [row.label for row in funnel.campaigns],
        "series": [
            {"key": key, "label": label, "data": [r.shown(key) for r in funnel.campaigns]}
            for key, label in STEPS
        ],
    }


async def lead_choices(
    request: Request[Any, Any, Any], current: Mapping[str, Any]
) -> dict[str, FieldChoices]:
    """The lead form's choices provider (``admin_ui.pages.records``): the campaign select."""
    return {"campaign_id": FieldChoices(options=tuple(await campaign_choices()))}


def _funnel(request: Request[Any, Any, Any]) -> CampaignFunnel:
    services = services_of(request)
    return CampaignFunnel(
        services.gateway,
        services.campaigns,
        min_group_size=services.settings.report_min_group_size,
    )


class FunnelPages(Controller):
    path = "/campaigns/funnel"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await self._page(request, visit)

    async def _page(
        self, request: Request[Any, Any, Any], visit: Visit, *, error: str = "", status: int = 200
    ) -> Template:
        funnel = await _funnel(request).funnel(visit.actor)
        return await render(
            request,
            "campaigns/funnel.html",
            visit=visit,
            status=status,
            section="campaigns",
            title="Campaign funnel",
            funnel=funnel,
            chart=funnel_chart(funnel),
            money=format_money,
            label=choice_label,
            currencies=CURRENCIES,
            min_group_size=services_of(request).settings.report_min_group_size,
            error=error,
        )

    @post("/cost")
    async def set_cost(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template | Redirect:
        form = await request.form()
        campaign_id = str(form.get("campaign") or "")[:40]
        currency = str(form.get("currency") or "")[:3]
        try:
            cost = parse_major(
                str(form.get("cost") or "")[:40], currency if currency in CURRENCIES else None
            )
            await campaigns.set_cost(visit.actor, campaign_id, cost, currency)
        except AmountError as exc:
            return await self._page(request, visit, error=f"Cost: {exc}", status=400)
        except InvalidInput as exc:
            return await self._page(request, visit, error=exc.message, status=400)
        await flash(request, visit, "Cost saved.")
        return see_other("/campaigns/funnel")
