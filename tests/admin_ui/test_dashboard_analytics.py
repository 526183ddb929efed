"""The role dashboards' analytical widgets (issue 20, item 7): a rep's forecast panel
(weighted, commit, won, win rate, attainment), a manager's row per person, support's
cases by status, compliance's profiling count; and the start page's figures over other
people's records going through the small-group rule (own-scope figures stay exact)."""

from __future__ import annotations

import datetime as dt
import html

from server.services import Services
from tests.admin_ui.test_admin_ui import web_login
from tests.admin_ui.test_admin_workspace import kpi, support_contact
from tests.conftest import Staff
from tests.server.crm.test_crm_records import case_values, deal_values, sales_contact

TODAY = dt.datetime.now(dt.UTC).date().isoformat()
SUPPRESSED = '<span class="suppressed"'


def panel(page: str, name: str) -> str:
    assert f'data-panel="{name}"' in page, f"no {name} panel"
    return page.split(f'data-panel="{name}"')[1].split("</section>")[0]


async def test_sales_dashboards_show_the_forecast_and_a_manager_sees_each_person(
    services: Services, staff: Staff
) -> None:
    gw = services.gateway
    rep_identity = await staff.create("sales", team="north")
    admin_identity = await staff.create("admin", team="north")
    rep = staff.actor(rep_identity)
    person = await gw.create(rep, "contact", sales_contact(first_name="Wanda"))
    other = await gw.create(rep, "contact", sales_contact(first_name="Xavier"))
    await gw.create(
        rep, "deal", deal_values(person.id, amount=10_000, probability=70, expected_close=TODAY)
    )
    await gw.create(rep, "deal", deal_values(other.id, amount=20_000, stage="won"))
    await gw.create(
        rep, "deal", deal_values(other.id, amount=500, stage="lost", lost_reason="price")
    )
    page = (await (await web_login(staff, rep_identity)).get("/")).text
    assert "Your forecast this quarter" in page
    me = panel(page, "forecast").split('data-row="me"')[1].split("</tr>")[0]
    assert me.count("70.00 GBP") == 2  # weighted, and all of it commit (70%)
    assert "200.00 GBP" in me  # won
    assert "50%" in me  # win rate: one won, one lost
    assert 'data-panel="team-people"' not in page  # a rep: their own row and team totals
    assert kpi(page, "open-deals") == 1  # their own deals: exact, however few
    assert kpi(page, "count-contacts") == 2

    # The manager's view (scope all): a row per person; figures over everyone's records
    # go through the small-group rule.
    admin_page = (await (await web_login(staff, admin_identity)).get("/")).text
    assert "Forecast this quarter, by team" in admin_page
    people = html.unescape(panel(admin_page, "team-people"))
    assert rep_identity.display_name in people
    assert "50%" in people
    assert f'data-kpi="open-deals">{SUPPRESSED}' in admin_page  # one deal of one customer
    assert f'data-kpi="count-contacts">{SUPPRESSED}' in admin_page  # two people
    proposal = admin_page.split('<tr data-stage="proposal">')[1].split("</tr>")[0]
    assert SUPPRESSED in proposal
    for i in range(5):  # six customers' deals in proposal: shown
        customer = await gw.create(rep, "contact", sales_contact(first_name=f"Y{i}"))
        await gw.create(rep, "deal", deal_values(customer.id, amount=1000))
    admin_page = (await (await web_login(staff, admin_identity)).get("/")).text
    assert kpi(admin_page, "open-deals") == 6
    assert kpi(admin_page, "count-contacts") == 7


async def test_support_sees_cases_by_status_and_compliance_the_profiling_count(
    services: Services, staff: Staff
) -> None:
    gw = services.gateway
    agent_identity = await staff.create("support", team="north")
    agent = staff.actor(agent_identity)
    for status, how_many in (("open", 6), ("pending", 2)):
        for i in range(how_many):
            person = await gw.create(agent, "contact", support_contact(first_name=f"C{i}"))
            await gw.create(agent, "case", {**case_values(person.id), "status": status})
    # Ten more pending cases of the same two people are still a group of two.
    two = [await gw.create(agent, "contact", support_contact(first_name=f"T{i}")) for i in range(2)]
    for i in range(10):
        await gw.create(agent, "case", {**case_values(two[i % 2].id), "status": "resolved"})
    page = (await (await web_login(staff, agent_identity)).get("/")).text
    cases = panel(page, "cases-by-status")
    rows = {row.split('"')[0]: row.split("</tr>")[0] for row in cases.split('data-status="')[1:]}
    assert SUPPRESSED in rows["pending"]  # two people
    assert SUPPRESSED in rows["resolved"]  # ten cases, two people
    assert SUPPRESSED not in rows["open"]  # six people: shown
    assert ">6<" in rows["open"]
    total = cases.split("<tfoot>")[1]
    assert ">18<" in total  # the total stays; the two hidden rows do not follow from it
    assert kpi(page, "count-contacts") == 10

    officer = await web_login(staff, await staff.create("compliance"))
    page = (await officer.get("/")).text
    assert 'data-widget="scored">0<' in panel(page, "profiling")
    sales_page = (await (await web_login(staff, await staff.create("sales"))).get("/")).text
    assert 'data-panel="profiling"' not in sales_page
    assert 'data-panel="cases-by-status"' not in sales_page
