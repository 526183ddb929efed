"""Campaign effectiveness (issue 20, item 6): audience, sent, withdrawn, leads, qualified,
deals, won value and cost per won deal per campaign, and leads per source - attributed by
the campaign field staff set, never by tracking anyone's opens or clicks."""

from __future__ import annotations

from pathlib import Path

import pytest
from httpx import AsyncClient

from server.campaigns.funnel import CampaignFunnel
from server.gateway import Forbidden, InvalidInput
from server.services import Services
from tests.admin_ui.test_admin_ui import web_login
from tests.conftest import Staff
from tests.server.campaigns.test_campaigns import (
    LINK,
    World,
    _email_campaign,
    _mails,
    _segment,
    outbox,
)
from tests.server.crm.test_crm_records import deal_values

__all__ = ["outbox"]  # the fixture, imported for this module's tests


async def test_the_funnel_counts_a_campaign_from_audience_to_won_value(
    services: Services, staff: Staff, outbox: Path, client: AsyncClient
) -> None:
    world = await World(services, staff).build()
    segment = await _segment(services, world.marketer, "prospect")
    campaign = await _email_campaign(services, world.marketer, segment)
    assert (await services.campaigns.send(world.marketer, campaign, 1)).sent == 1
    [mail] = _mails(outbox)
    [path] = LINK.findall(mail.get_content())
    assert (await client.post(path)).status_code == 200  # the one recipient withdraws
    gw = services.gateway
    for status in ("new", "qualified"):
        await gw.create(
            world.seller,
            "lead",
            {
                "first_name": "Lea",
                "last_name": "Dix",
                "source": "event",
                "status": status,
                "campaign_id": campaign,
            },
        )
    await gw.create(
        world.seller, "lead", {"first_name": "Ned", "last_name": "Ode", "source": "web"}
    )
    for stage in ("won", "won", "proposal"):
        await gw.create(
            world.seller,
            "deal",
            deal_values(world.customer.id, amount=5000, stage=stage, campaign_id=campaign),
        )
    funnel = CampaignFunnel(gw, services.campaigns, min_group_size=1)  # the arithmetic
    with pytest.raises(InvalidInput):
        await services.campaigns.set_cost(world.marketer, campaign, 100, "XXX")
    await services.campaigns.set_cost(world.marketer, campaign, 4001, "GBP")
    result = await funnel.funnel(world.marketer)
    (row,) = result.campaigns
    assert (row.audience, row.sent, row.withdrawn) == (1, 1, 1)
    assert (row.leads, row.qualified, row.deals, row.won) == (2, 1, 3, 2)
    assert row.won_value == {"GBP": 10_000}
    assert row.cost_per_won == 2001  # 40.01 GBP over two won deals, rounded
    assert {r.key: (r.leads, r.qualified) for r in result.sources} == {
        "event": (2, 1),
        "web": (1, 0),
    }
    with pytest.raises(Forbidden):  # sales does not manage campaigns
        await funnel.funnel(world.seller)
    # With the deployment's minimum (5), every nest here is a small group: hidden whole.
    small = await CampaignFunnel(gw, services.campaigns, min_group_size=5).funnel(world.marketer)
    (row,) = small.campaigns
    assert row.suppressed == {"audience", "leads", "deals"}
    assert (row.shown("sent"), row.shown("qualified"), row.shown("won")) == (None, None, None)
    assert row.cost_per_won is None  # derived from the hidden won count
    page_client = await web_login(staff, world.marketer_identity)
    page = await page_client.get("/campaigns/funnel")
    assert page.status_code == 200
    assert "100.00 GBP" not in page.text  # won value: suppressed
    assert "20.01 GBP" not in page.text  # cost per won deal: suppressed
    assert "Suppressed" in page.text
    assert "40.01 GBP" in page.text  # the cost itself is no one's data
    dashboard = await page_client.get("/")
    assert 'data-panel="funnel"' in dashboard.text
    # Staff pick the campaign on the deal and lead forms (a select of campaign names).
    seller = await web_login(staff, await staff.create("sales"))
    for form in ("/deals/new", "/leads/new"):
        page = await seller.get(form)
        assert f'<option value="{campaign}">Spring offer</option>' in page.text, form


def recovered(shown: list[int | None], total: int | None) -> bool:
    """What a reader can work out from one column: with one unknown among the rows and
    the total, it is the total minus the others (or their sum)."""
    unknowns = [n for n in [*shown, total] if n is None]
    return len(unknowns) == 1


async def test_a_small_campaign_cannot_be_recovered_from_the_other_rows_and_totals(
    services: Services, staff: Staff
) -> None:
    """Campaign A brought two leads, B six, C seven: A is hidden, and so is enough else
    that neither the campaign table's total, nor the source table (the same leads), nor
    the row without a campaign gives A away."""
    world = await World(services, staff).build()
    segment = await _segment(services, world.marketer, "prospect")
    campaigns = {}
    for name in ("A", "B", "C"):
        campaigns[name] = await _email_campaign(services, world.marketer, segment)
        await services.campaigns.update_campaign(world.marketer, campaigns[name], {"name": name})
    gw = services.gateway
    for name, how_many in (("A", 2), ("B", 6), ("C", 7)):
        for i in range(how_many):
            values = {"first_name": f"L{name}{i}", "last_name": "Dix", "source": "web"}
            await gw.create(world.seller, "lead", {**values, "campaign_id": campaigns[name]})
    funnel = await CampaignFunnel(gw, services.campaigns, min_group_size=5).funnel(world.marketer)
    rows = {r.label: r for r in funnel.campaigns}
    assert rows["A"].shown("leads") is None
    shown = [r.shown("leads") for r in funnel.campaigns] + [funnel.unattributed.shown("leads")]
    assert not recovered(shown, funnel.campaign_total.shown("leads"))
    # The source table counts the same fifteen leads: its total is no way round.
    source_total = funnel.source_total.shown("leads")
    assert not recovered(shown, source_total)
    assert [r.shown("leads") for r in funnel.sources] == [source_total] == [15]
    hidden = sorted(name for name, r in rows.items() if r.shown("leads") is None)
    assert hidden == ["A", "B"]  # the complement is the next smallest, C stays exact
    assert rows["C"].shown("leads") == 7
    # The page shows the same: a total row, A and B suppressed, C and the total exact.
    page_client = await web_login(staff, world.marketer_identity)
    page = (await page_client.get("/campaigns/funnel")).text
    assert 'data-row="total"' in page
    assert page.count("Suppressed") >= 4  # A's and B's leads and qualified

    # One source of two leads: hidden with a complement among the sources, and the
    # campaign table (the same total) gives it away no more.
    for i in range(2):
        values = {"first_name": f"E{i}", "last_name": "Dix", "source": "event"}
        await gw.create(world.seller, "lead", {**values, "campaign_id": campaigns["C"]})
    funnel = await CampaignFunnel(gw, services.campaigns, min_group_size=5).funnel(world.marketer)
    by_source = {r.key: r.shown("leads") for r in funnel.sources}
    assert by_source["event"] is None
    assert not recovered(list(by_source.values()), funnel.source_total.shown("leads"))
    assert not recovered(list(by_source.values()), funnel.campaign_total.shown("leads"))
