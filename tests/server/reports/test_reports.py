"""CRM reports: pipeline by stage, win rate, cases and SLA breaches, interactions per
channel - as JSON endpoints and as a page with charts, over the records the user may see.

Every number goes through ``Gateway.aggregate`` (scope, restriction and consent compiled
into one GROUP BY), so a sales rep limited to own records sees their own pipeline only.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from typing import Any
from unittest.mock import ANY

import pytest
from httpx import AsyncClient

from audit.tables import AuditRecord
from server.gateway import Actor, Forbidden
from server.gateway.tables import Deal
from server.reports.service import CrmReports, money
from server.services import Services
from tests.admin_ui.test_admin_ui import web_login
from tests.conftest import Staff
from tests.server.crm.test_crm_records import (
    case_values,
    deal_values,
    interaction_values,
    sales_contact,
)

API = "/api/v1/reports"
NOW = dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


async def seed(services: Services, staff: Staff) -> dict[str, Any]:
    """Two reps in one team, a support agent and an admin, with known numbers:

    rep A: proposal 10.00 + 25.00 GBP, proposal (no amount) GBP, won 7.00 EUR,
           lost 3.00 EUR; rep B: proposal 99.99 GBP, won 50.00 GBP.
    """
    gw = services.gateway
    rep_a = await staff.create("sales")
    rep_b = await staff.create("sales")
    agent = await staff.create("support")
    admin = await staff.create("admin")
    a, b, s = staff.actor(rep_a), staff.actor(rep_b), staff.actor(agent)
    person_a = await gw.create(a, "contact", sales_contact(first_name="Perpetua"))
    person_b = await gw.create(b, "contact", sales_contact(first_name="Barnabus"))
    deals = {
        "a1": await gw.create(a, "deal", deal_values(person_a.id, amount=1000)),
        "a2": await gw.create(a, "deal", deal_values(person_a.id, amount=2500)),
        "a3": await gw.create(a, "deal", deal_values(person_a.id, amount=None)),
        "a4": await gw.create(
            a, "deal", deal_values(person_a.id, amount=700, currency="EUR", stage="won")
        ),
        "a5": await gw.create(
            a,
            "deal",
            deal_values(person_a.id, amount=300, currency="EUR", stage="lost", lost_reason="price"),
        ),
        "b1": await gw.create(b, "deal", deal_values(person_b.id, amount=9999)),
        "b2": await gw.create(b, "deal", deal_values(person_b.id, amount=5000, stage="won")),
    }
    return {
        "rep_a": rep_a,
        "rep_b": rep_b,
        "agent": agent,
        "admin": admin,
        "support": s,
        "person_a": person_a,
        "person_b": person_b,
        "deals": deals,
    }


async def customers(
    services: Services, staff: Staff, w: dict[str, Any], how_many: int
) -> list[str]:
    """``how_many`` more people (contact ids), each a different data subject."""
    rep = staff.actor(w["rep_a"])
    return [
        (await services.gateway.create(rep, "contact", sales_contact(first_name=f"P{i}"))).id
        for i in range(how_many)
    ]


def stage_rows(body: dict[str, Any]) -> dict[tuple[str, str | None], tuple[int, int]]:
    return {(r["stage"], r["currency"]): (r["deals"], r["amount"]) for r in body["stages"]}


def table_rows(page: str, report: str) -> list[list[str]]:
    """The body rows of the table marked ``data-report=report``, as visible cell texts."""
    match = re.search(rf'<table[^>]*data-report="{report}"[^>]*>(.*?)</table>', page, re.S)
    assert match, f"no {report} table"
    body = re.search(r"<tbody>(.*?)</tbody>", match.group(1), re.S)
    assert body
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


async def test_pipeline_adds_up_and_follows_the_record_scope(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    admin = await staff.login(w["admin"])
    everything = (await admin.get(f"{API}/pipeline")).json()
    # Everyone's deals: every stage under 5 deals is suppressed (small groups), and with
    # the EUR total hidden, the GBP total too (grand total minus GBP would give EUR).
    assert stage_rows(everything) == {
        ("proposal", "GBP"): (None, None),
        ("won", "EUR"): (None, None),
        ("won", "GBP"): (None, None),
        ("lost", "EUR"): (None, None),
    }
    # Pipeline order, not alphabetical.
    assert [r["stage"] for r in everything["stages"]] == ["proposal", "won", "won", "lost"]
    assert {t["currency"]: t["amount"] for t in everything["totals"]} == {
        "EUR": None,
        "GBP": None,
    }

    rep_a = await staff.login(w["rep_a"])
    own = (await rep_a.get(f"{API}/pipeline")).json()
    assert own["suppressed"] == 0  # their own deals: exact, however few
    assert [r["stage"] for r in own["stages"]] == ["proposal", "won", "lost"]
    assert stage_rows(own) == {
        ("proposal", "GBP"): (3, 3500),
        ("won", "EUR"): (1, 700),
        ("lost", "EUR"): (1, 300),
    }
    rep_b = await staff.login(w["rep_b"])
    assert stage_rows((await rep_b.get(f"{API}/pipeline")).json()) == {
        ("proposal", "GBP"): (1, 9999),
        ("won", "GBP"): (1, 5000),
    }


async def test_roles_without_reports_get_403(services: Services, staff: Staff) -> None:
    w = await seed(services, staff)
    agent = await staff.login(w["agent"])
    for name in ("pipeline", "win-rate", "cases", "interactions"):
        response = await agent.get(f"{API}/{name}")
        assert response.status_code == 403, name
        assert "reports" in response.json()["detail"]
    marketer = await staff.login(await staff.create("marketing"))
    assert (await marketer.get(f"{API}/pipeline")).status_code == 403
    anonymous = await staff.login(w["rep_a"])
    anonymous.cookies.clear()
    assert (await anonymous.get(f"{API}/pipeline")).status_code == 401
    # The page says the same, and the menu does not offer it.
    browser = await web_login(staff, w["agent"])
    page = await browser.get("/reports")
    assert page.status_code == 403
    assert 'href="/reports"' not in (await browser.get("/")).text
    rep = await web_login(staff, w["rep_a"])
    assert 'href="/reports"' in (await rep.get("/")).text


async def test_the_gateway_refuses_to_aggregate_what_the_role_may_not_read(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    gw = services.gateway
    marketer = staff.actor(await staff.create("marketing"))
    # Marketing may total stage and value, not probabilities; nobody groups by a title.
    groups = await gw.aggregate(marketer, "deal", group_by=("stage",), sum_of="amount")
    assert sum(g.count for g in groups) == len(w["deals"])
    with pytest.raises(Forbidden):
        await gw.aggregate(marketer, "deal", group_by=("probability",))
    with pytest.raises(Forbidden):
        await gw.aggregate(staff.actor(w["admin"]), "deal", group_by=("title",))
    with pytest.raises(Forbidden):  # support may not list deals at all
        await gw.aggregate(w["support"], "deal", group_by=("stage",))
    denied = await AuditRecord.select().where(
        (AuditRecord.action == "aggregate") & (AuditRecord.outcome == "denied")
    )
    assert len(denied) == 3


async def test_aggregates_are_audited_with_counts_and_no_person(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    rep_a = await staff.login(w["rep_a"])
    assert (await rep_a.get(f"{API}/pipeline")).status_code == 200
    rows = await AuditRecord.select().where(
        (AuditRecord.action == "aggregate") & (AuditRecord.outcome == "allowed")
    )
    assert len(rows) == 1
    event = rows[0]
    assert event["resource_type"] == "deal"
    assert event["actor_id"] == f"user:{w['rep_a'].user_id}"
    assert json.loads(event["subject_ids"]) == []
    assert json.loads(event["fields"]) == ["amount", "currency", "stage"]
    assert json.loads(event["detail"]) == {"group_by": "stage,currency", "groups": 3, "total": 5}
    text = str(event)
    assert w["person_a"].subject_id not in text
    assert "Perpetua" not in text
    assert "Quarterly" not in text


async def test_erased_peoples_deals_still_count(services: Services, staff: Staff) -> None:
    w = await seed(services, staff)
    admin = await staff.login(w["admin"])
    before = (await admin.get(f"{API}/pipeline")).json()
    result = await services.erasure.erase(w["person_a"].subject_id, by="user:1")
    assert result.erased["deal"] == 5
    deal = await services.gateway.read(
        Actor.system("test"), "deal", w["deals"]["a1"].id, purpose="compliance"
    )
    assert deal.erased
    assert deal.values["title"] is None
    assert (await admin.get(f"{API}/pipeline")).json() == before


async def test_win_rate_over_90_days_or_all_time(services: Services, staff: Staff) -> None:
    w = await seed(services, staff)
    admin = await staff.login(w["admin"])
    everyone = (await admin.get(f"{API}/win-rate")).json()  # 2 won, 1 lost: too few
    assert (everyone["won"], everyone["lost"], everyone["win_rate"]) == (None, None, None)
    assert everyone["suppressed"] >= 2
    # A rep's own deals are exact: rep B won one, lost none.
    viewer = await staff.login(w["rep_b"])
    recent = (await viewer.get(f"{API}/win-rate")).json()
    assert (recent["won"], recent["lost"], recent["win_rate"]) == (1, 0, 1.0)
    assert recent["period"] == "90d"
    assert recent["since"]
    # A loss last touched half a year ago counts all time only.
    old = NOW - dt.timedelta(days=200)
    gw, rep_b = services.gateway, staff.actor(w["rep_b"])
    stale = await gw.create(
        rep_b, "deal", deal_values(w["person_b"].id, stage="lost", lost_reason="timing")
    )
    await Deal.update({Deal.updated_at: old}).where(Deal.id == stale.id)
    assert (await viewer.get(f"{API}/win-rate")).json()["lost"] == 0
    every = (await viewer.get(f"{API}/win-rate", params={"period": "all"})).json()
    assert (every["won"], every["lost"], every["win_rate"]) == (1, 1, 0.5)
    assert every["since"] is None
    bad = await admin.get(f"{API}/win-rate", params={"period": "forever"})
    assert bad.status_code == 400
    # A rep's own: one won, one lost.
    rep_a = await staff.login(w["rep_a"])
    assert (await rep_a.get(f"{API}/win-rate")).json()["win_rate"] == 0.5


async def test_sla_breach_is_flagged_from_the_due_time_on(services: Services, staff: Staff) -> None:
    w = await seed(services, staff)
    gw, agent = services.gateway, w["support"]
    due = (NOW + dt.timedelta(hours=2)).replace(microsecond=0)
    person = w["person_a"].id
    await gw.create(agent, "case", case_values(person, due_at=iso(due)))
    await gw.create(agent, "case", case_values(person, due_at=iso(due), status="pending"))
    await gw.create(agent, "case", case_values(person, due_at=iso(due), status="resolved"))
    await gw.create(agent, "case", case_values(person, status="closed"))
    no_sla = {k: v for k, v in case_values(person).items() if k != "due_at"}
    await gw.create(agent, "case", no_sla)  # open, no SLA
    reports = CrmReports(gw, min_group_size=1)  # the SLA arithmetic, no group too small
    admin = staff.actor(w["admin"])
    before = await reports.cases(admin, now=due - dt.timedelta(seconds=1))
    assert before.by_status == {"open": 2, "pending": 1, "resolved": 1, "closed": 1}
    assert before.breached == 0
    at = await reports.cases(admin, now=due)
    assert at.breached == 0  # due *at* this moment: not yet late
    after = await reports.cases(admin, now=due + dt.timedelta(seconds=1))
    assert after.breaches == {"open": 1, "pending": 1}
    # Over HTTP, as of now: a case that was due an hour ago is a breach.
    await gw.create(agent, "case", case_values(person, due_at=iso(NOW - dt.timedelta(hours=1))))
    client = await staff.login(w["admin"])
    body = (await client.get(f"{API}/cases")).json()
    # Over everyone's cases, the small groups are suppressed: all six cases are about one
    # person, so the total goes too (people, not records).
    assert body["sla_breaches"] == {"open": None, "pending": 0, "total": None}
    assert body["by_status"] == {"open": None, "pending": None, "resolved": None, "closed": None}
    assert body["total"] is None
    # Sales read their team's cases (the agent is in the same team): suppressed alike.
    rep = await staff.login(w["rep_a"])
    assert (await rep.get(f"{API}/cases")).json() == {**body, "as_of": ANY}


async def test_interactions_per_channel_in_the_last_30_days(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    gw, a, b = services.gateway, staff.actor(w["rep_a"]), staff.actor(w["rep_b"])
    pa, pb = w["person_a"].id, w["person_b"].id
    day = dt.timedelta(days=1)
    for actor, person, channel, when in (
        (a, pa, "email", NOW - day),
        (a, pa, "email", NOW - 29 * day),
        (a, pa, "phone_call", NOW - 10 * day),
        (a, pa, "email", NOW - 31 * day),  # too old
        (a, pa, "meeting", NOW + 2 * day),  # not yet
        (b, pb, "letter", NOW - 2 * day),
    ):
        values = interaction_values(person, channel=channel, occurred_at=iso(when))
        await gw.create(actor, "interaction", values)
    admin = await staff.login(w["admin"])
    body = (await admin.get(f"{API}/interactions")).json()
    # Everyone's: 2 e-mails, 1 call, 1 letter, 4 in all - each too few to show.
    assert {k for k, v in body["by_channel"].items() if v is None} == {
        "email",
        "phone_call",
        "letter",
    }
    assert body["total"] is None
    assert body["by_channel"]["chat"] == 0  # zero names nobody
    assert set(body["by_channel"]) >= {"chat", "store_visit"}
    rep_a = await staff.login(w["rep_a"])
    own = (await rep_a.get(f"{API}/interactions")).json()
    assert own["total"] == 3
    assert own["by_channel"]["email"] == 2  # their own: exact
    assert own["by_channel"]["letter"] == 0


async def test_the_page_shows_the_same_numbers_as_the_api(services: Services, staff: Staff) -> None:
    w = await seed(services, staff)
    gw = services.gateway
    await gw.create(
        w["support"],
        "case",
        case_values(w["person_a"].id, due_at=iso(NOW - dt.timedelta(hours=1))),
    )
    await gw.create(
        staff.actor(w["rep_a"]),
        "interaction",
        interaction_values(w["person_a"].id, occurred_at=iso(NOW - dt.timedelta(days=3))),
    )
    api: AsyncClient = await staff.login(w["rep_a"])
    browser = await web_login(staff, w["rep_a"])
    page = await browser.get("/reports")
    assert page.status_code == 200
    text = page.text

    pipeline = (await api.get(f"{API}/pipeline")).json()
    shown = table_rows(text, "pipeline")
    expected = [
        [
            r["stage"].capitalize(),
            r["currency"] or "None",
            str(r["deals"]),
            money(r["amount"], r["currency"]),
        ]
        for r in pipeline["stages"]
    ]
    assert shown == expected
    assert ["Proposal", "GBP", "3", "35.00 GBP"] in shown  # minor units, two decimals

    win = (await api.get(f"{API}/win-rate")).json()
    assert table_rows(text, "win-rate-table") == [
        ["Last 90 days", str(win["won"]), str(win["lost"]), f"{win['win_rate'] * 100:.1f}%"]
    ]
    cases = (await api.get(f"{API}/cases")).json()
    case_table = {row[0]: row[1:] for row in table_rows(text, "cases")}
    # The team's cases: one open case past its SLA is a group too small to show.
    assert cases["by_status"]["open"] is None
    assert case_table["Open"] == ["Suppressed", "Suppressed"]
    assert case_table["Closed"] == [str(cases["by_status"]["closed"]), "Not applicable"]
    interactions = (await api.get(f"{API}/interactions")).json()
    channel_table = {row[0]: int(row[1]) for row in table_rows(text, "interactions")}
    assert channel_table["Phone call"] == interactions["by_channel"]["phone_call"] == 1
    assert sum(channel_table.values()) == interactions["total"]
    # Charts: a canvas per report and the numbers as JSON blocks (no inline script).
    assert text.count("<canvas data-chart=") == 4
    assert 'src="/static/vendor/chartjs/chart.umd.min.js"' in text
    assert '<script type="application/json" id="pipeline-data">' in text
    assert "last 90 days" in text.lower()
    all_time = await browser.get("/reports", params={"period": "all"})
    assert "<strong>all time</strong>" in all_time.text


async def test_the_endpoints_are_in_the_openapi_document(client: AsyncClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    for name in ("pipeline", "win-rate", "cases", "interactions"):
        operation = schema["paths"][f"{API}/{name}"]["get"]
        assert operation["tags"] == ["reports"]
        assert operation["description"]
    parameters = schema["paths"][f"{API}/win-rate"]["get"]["parameters"]
    assert any(p["name"] == "period" for p in parameters)


async def test_small_groups_admin_cases_by_status_hides_a_status_of_two_and_its_complement(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    gw, agent = services.gateway, w["support"]
    for status, how_many in (("open", 6), ("pending", 2), ("resolved", 7), ("closed", 5)):
        for person in await customers(services, staff, w, how_many):  # one case each
            no_sla = {k: v for k, v in case_values(person).items() if k != "due_at"}
            await gw.create(agent, "case", {**no_sla, "status": status})
    admin = await staff.login(w["admin"])
    body = (await admin.get(f"{API}/cases")).json()
    shown = body["by_status"]
    assert shown["pending"] is None  # the group of 2
    # Complementary suppression: the total minus the shown statuses does not give it.
    hidden = [s for s, n in shown.items() if n is None]
    assert len(hidden) >= 2 or body["total"] is None
    assert shown["closed"] is None  # the next-smallest status hides with it
    assert (shown["open"], shown["resolved"], body["total"]) == (6, 7, 20)
    assert body["suppressed"] >= 2
    assert body["min_group_size"] == 5
    # The page says so, the same figures.
    browser = await web_login(staff, w["admin"])
    page = (await browser.get("/reports")).text
    table = {row[0]: row[1] for row in table_rows(page, "cases")}
    assert table == {"Open": "6", "Pending": "Suppressed", "Resolved": "7", "Closed": "Suppressed"}
    assert "Some figures are suppressed: groups of fewer than 5 people" in page


async def test_small_groups_a_reps_own_pipeline_keeps_exact_small_numbers(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    rep_b = await staff.login(w["rep_b"])
    own = (await rep_b.get(f"{API}/pipeline")).json()
    # One proposal and one win, their own: shown exactly, nothing suppressed.
    assert stage_rows(own) == {("proposal", "GBP"): (1, 9999), ("won", "GBP"): (1, 5000)}
    assert own["totals"] == [{"currency": "GBP", "deals": 2, "amount": 14999}]
    assert own["suppressed"] == 0
    browser = await web_login(staff, w["rep_b"])
    page = (await browser.get("/reports")).text
    assert ["Proposal", "GBP", "1", "99.99 GBP"] in table_rows(page, "pipeline")
    assert "Suppressed</span></td><td>" not in page.split('data-report="cases"')[0]


async def test_small_groups_the_dashboards_sla_breaches_over_a_teams_cases(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    gw, agent = services.gateway, w["support"]
    people = iter(await customers(services, staff, w, 16))  # one case each
    late = iso(NOW - dt.timedelta(hours=1))
    for _ in range(2):  # two breached cases in the team: too few to show
        await gw.create(agent, "case", case_values(next(people), due_at=late))
    browser = await web_login(staff, w["agent"])
    page = (await browser.get("/")).text
    kpi = re.search(r'data-kpi="sla-breaches">(.*?)</span></span>', page, re.S)
    assert kpi
    assert "Suppressed" in kpi.group(1)
    assert "Open in your scope: suppressed" in page
    for _ in range(4):  # six breached, one not: the one would be the total minus six
        await gw.create(agent, "case", case_values(next(people), due_at=late))
    later = iso(NOW + dt.timedelta(days=1))
    await gw.create(agent, "case", case_values(next(people), due_at=later))
    page = (await browser.get("/")).text
    assert "7 open in your scope" in page  # two hidden parts of 7: neither follows
    assert 'data-kpi="sla-breaches">6<' not in page  # the complement, hidden with the one
    for _ in range(4):  # six breached, five not: both shown
        await gw.create(agent, "case", case_values(next(people), due_at=later))
    page = (await browser.get("/")).text
    assert 'data-kpi="sla-breaches">6<' in page
    assert "11 open in your scope" in page


async def test_small_groups_count_people_not_records(services: Services, staff: Staff) -> None:
    """Ten phone calls with two people are a group of two: hidden like two calls, with a
    complement, in the API and on the page; as are ten deals of two customers."""
    w = await seed(services, staff)
    gw, rep = services.gateway, staff.actor(w["rep_a"])
    pair = await customers(services, staff, w, 2)
    crowd = await customers(services, staff, w, 12)
    when = iso(NOW - dt.timedelta(days=1))
    for i in range(10):
        await gw.create(
            rep,
            "interaction",
            interaction_values(pair[i % 2], channel="phone_call", occurred_at=when),
        )
    for i, person in enumerate(crowd):
        channel = "email" if i < 6 else "meeting"
        await gw.create(
            rep, "interaction", interaction_values(person, channel=channel, occurred_at=when)
        )
    admin = await staff.login(w["admin"])
    body = (await admin.get(f"{API}/interactions")).json()
    shown = body["by_channel"]
    assert shown["phone_call"] is None  # 10 calls, 2 people
    assert (shown["email"], shown["meeting"]) in ((6, None), (None, 6))  # its complement
    assert body["total"] == 22
    # The attack: the total minus everything shown leaves two unknowns, not the calls.
    unknown = [c for c, n in shown.items() if n is None]
    assert len(unknown) >= 2
    assert body["total"] - sum(n for n in shown.values() if n is not None) == 16
    page = (await (await web_login(staff, w["admin"])).get("/reports")).text
    rows = {row[0]: row[1] for row in table_rows(page, "interactions")}
    assert rows["Phone call"] == "Suppressed"

    # Ten negotiation deals of the same two customers: a pipeline cell of two people.
    for i in range(10):
        await gw.create(rep, "deal", deal_values(pair[i % 2], amount=100, stage="negotiation"))
    for person in crowd[:6]:
        await gw.create(rep, "deal", deal_values(person, amount=100, stage="qualification"))
    pipeline = (await admin.get(f"{API}/pipeline")).json()
    cells = stage_rows(pipeline)
    assert cells[("negotiation", "GBP")] == (None, None)
    assert cells[("qualification", "GBP")] == (6, 600)
    # A rep's own pipeline stays exact: they can open each of those deals anyway.
    own = stage_rows((await (await staff.login(w["rep_a"])).get(f"{API}/pipeline")).json())
    assert own[("negotiation", "GBP")] == (10, 1000)
