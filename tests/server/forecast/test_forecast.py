"""Sales forecast and staff performance (issue 20, item 1): weighted pipeline by expected
close month, categories, won value, win rate, cycle, activities, quotas and attainment,
each role seeing what its record scope reaches (a rep: their own figures and their team's
totals, never another team's)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from server.forecast.service import Forecasts, Period, period_for, weighted
from server.gateway import Forbidden, InvalidInput
from server.services import Services
from tests.admin_ui.test_admin_ui import submit, web_login
from tests.conftest import Staff
from tests.server.crm.test_crm_records import deal_values, interaction_values, sales_contact

WINTER = period_for("custom", dt.date(2026, 12, 2), "2027-01-01", "2027-03-31")
TODAY = dt.datetime.now(dt.UTC).date()


def forecasts(services: Services) -> Forecasts:
    return Forecasts(
        services.gateway,
        services.policy,
        services.audit,
        min_group_size=services.settings.report_min_group_size,
    )


async def seed(services: Services, staff: Staff) -> dict[str, Any]:
    """Reps A and B in team north, rep C in team south, each with open deals closing in
    the winter quarter of 2027 (and one outside it), A with a won and a lost deal."""
    gw = services.gateway
    users = {
        "a": await staff.create("sales", team="north"),
        "b": await staff.create("sales", team="north"),
        "c": await staff.create("sales", team="south"),
        "admin": await staff.create("admin", team="north"),
    }
    actors = {k: staff.actor(u) for k, u in users.items()}
    people = {
        k: await gw.create(actors[k], "contact", sales_contact(first_name=f"Person{k}"))
        for k in "abc"
    }

    async def deal(who: str, **values: Any) -> None:
        await gw.create(actors[who], "deal", deal_values(people[who].id, **values))

    await deal("a", amount=1000, probability=40, expected_close="2027-01-15")  # best case
    await deal(
        "a",
        amount=2001,
        stage="negotiation",
        probability=None,  # the stage's 60
        expected_close="2027-02-10",
    )
    await deal("a", amount=5000, expected_close="2027-05-01")  # after the period
    await deal("a", amount=2500, stage="won", expected_close="2027-01-20")  # closed
    await deal("a", amount=100, stage="lost", lost_reason="price")
    await deal("b", amount=3000, probability=25, expected_close="2027-03-01")
    await deal("c", amount=7000, probability=90, expected_close="2027-01-20")
    now = dt.datetime.now(dt.UTC).isoformat()
    await gw.create(actors["a"], "interaction", interaction_values(people["a"].id, occurred_at=now))
    return {"users": users, "actors": actors}


async def test_a_reps_forecast_is_their_own_weighted_deals_and_the_team_total_adds_up(
    services: Services, staff: Staff
) -> None:
    world = await seed(services, staff)
    mine = await forecasts(services).forecast(world["actors"]["a"], WINTER)
    # 1000 x 40% + 2001 x 60% (the negotiation stage's probability) = 400 + 1201
    assert mine.weighted_total("GBP") == weighted(1000, 40) + weighted(2001, 60) == 1601
    assert [(p.owner_id, p.weighted) for p in mine.people] == [
        (world["users"]["a"].user_id, {"GBP": 1601})
    ]
    assert {(c.month, c.category, c.weighted) for c in mine.cells} == {
        ("2027-01", "best_case", 400),
        ("2027-02", "commit", 1201),
    }
    # The team's totals: A's and B's (3000 x 25% = 750), not C's in the south team.
    assert mine.team_totals
    assert [(t.team, t.weighted, t.open_deals) for t in mine.teams] == [
        ("north", {"GBP": 1601 + 750}, 3)
    ]
    everything = await forecasts(services).forecast(world["actors"]["admin"], WINTER)
    assert {t.team: t.weighted["GBP"] for t in everything.teams} == {"north": 2351, "south": 6300}
    assert everything.weighted_total("GBP") == 2351 + 6300
    assert len(everything.people) == 3


async def test_a_rep_never_sees_another_teams_figures(services: Services, staff: Staff) -> None:
    world = await seed(services, staff)
    theirs = await forecasts(services).forecast(world["actors"]["c"], WINTER)
    assert [t.team for t in theirs.teams] == ["south"]
    assert theirs.weighted_total("GBP") == 6300
    assert all(p.owner_id == world["users"]["c"].user_id for p in theirs.people)
    # Team totals are never grouped by owner, and a role without the right gets none.
    gw = services.gateway
    with pytest.raises(Forbidden):
        await gw.aggregate(
            world["actors"]["c"], "deal", group_by=("owner_id", "team"), team_totals=True
        )
    agent = staff.actor(await staff.create("support", team="south"))
    with pytest.raises(Forbidden):
        await gw.aggregate(agent, "interaction", group_by=("team",), team_totals=True)


async def test_won_value_win_rate_activities_and_quota_attainment(
    services: Services, staff: Staff
) -> None:
    world = await seed(services, staff)
    month = period_for("month", TODAY)
    service = forecasts(services)
    a = world["users"]["a"]
    with pytest.raises(Forbidden):  # a rep may not set quotas
        await service.quotas.set(
            world["actors"]["a"],
            owner_id=a.user_id,
            team="",
            month=month.months[0],
            currency="GBP",
            amount=1,
        )
    with pytest.raises(InvalidInput):
        await service.quotas.set(
            world["actors"]["admin"],
            owner_id=a.user_id,
            team="",
            month="2027-13",
            currency="GBP",
            amount=1,
        )
    await service.quotas.set(
        world["actors"]["admin"],
        owner_id=a.user_id,
        team="",
        month=month.months[0],
        currency="GBP",
        amount=10_000,
    )
    mine = await service.forecast(world["actors"]["a"], month)
    (me,) = mine.people
    assert (me.won, me.lost, me.won_value) == (1, 1, {"GBP": 2500})
    assert me.win_rate == 0.5
    assert me.average_cycle == 0  # created and won today
    assert me.interactions == 1
    assert me.tasks_done == 0
    assert me.attainment("GBP") == 0.25
    (team,) = mine.teams
    assert team.quota == {"GBP": 10_000}  # no team quota set: the members' add up


def test_periods() -> None:
    day = dt.date(2026, 11, 17)
    assert period_for("quarter", day) == Period(
        "quarter", dt.date(2026, 10, 1), dt.date(2027, 1, 1)
    )
    assert period_for("month", day).months == ("2026-11",)
    assert WINTER.months == ("2027-01", "2027-02", "2027-03")
    for bad in (("custom", "2027-02-01", "2027-01-01"), ("custom", "x", "y"), ("year", "", "")):
        with pytest.raises(InvalidInput):
            period_for(bad[0], day, bad[1], bad[2])


async def test_the_forecast_page_shows_a_reps_numbers_and_the_teams(
    services: Services, staff: Staff
) -> None:
    world = await seed(services, staff)
    client = await web_login(staff, world["users"]["a"])
    page = await client.get("/forecast?period=custom&start=2027-01-01&end=2027-03-31")
    assert page.status_code == 200
    assert "16.01" in page.text  # A's weighted pipeline, GBP 16.01
    # The north team's open deals beyond A's own are one deal of B's: too few to show.
    assert "23.51" not in page.text
    assert "Suppressed" in page.text
    assert "63.00" not in page.text  # nothing of the south team
    dashboard = await client.get("/")
    assert 'data-panel="forecast"' in dashboard.text
    assert "Team north" in dashboard.text
    backwards = await client.get("/forecast?period=custom&start=2027-02-01&end=2027-01-01")
    assert backwards.status_code == 400
    agent = await web_login(staff, await staff.create("support"))
    assert (await agent.get("/forecast")).status_code == 403


async def test_an_admin_sets_a_quota_on_the_page_and_a_rep_may_not(
    services: Services, staff: Staff
) -> None:
    world = await seed(services, staff)
    a = world["users"]["a"]
    admin = await web_login(staff, world["users"]["admin"])
    month = period_for("month", TODAY)
    form = {"who": f"user:{a.user_id}", "month": month.months[0], "currency": "GBP"}
    refused = await submit(admin, "/forecast", "/forecast/quotas", {**form, "amount": "1,2,3"})
    assert refused.status_code == 400
    saved = await submit(admin, "/forecast", "/forecast/quotas", {**form, "amount": "50.00"})
    assert saved.status_code == 303
    page = await admin.get("/forecast?period=month")
    assert "50.00 GBP" in page.text  # A's quota; A won 25.00 GBP this month
    assert "50% GBP" in page.text
    rep = await web_login(staff, a)
    assert 'action="/forecast/quotas"' not in (await rep.get("/forecast")).text
    tried = await submit(rep, "/forecast", "/forecast/quotas", {**form, "amount": "1.00"})
    assert tried.status_code == 403  # with a valid CSRF token: the policy refuses
    quotas = await forecasts(services).quotas.for_period(month)
    assert [(q.owner_id, q.amount) for q in quotas] == [(a.user_id, 5000)]  # unchanged


async def test_the_api_gives_a_rep_the_same_numbers(services: Services, staff: Staff) -> None:
    world = await seed(services, staff)
    client = await web_login(staff, world["users"]["a"])
    answer = await client.get(
        "/api/v1/forecast", params={"period": "custom", "start": "2027-01-01", "end": "2027-03-31"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert sum(c["weighted"] for c in body["cells"]) == 1601
    # The team's open deals beyond A's own are one of B's: suppressed (small group).
    assert [(t["team"], t["weighted"], t["open_deals"]) for t in body["teams"]] == [
        ("north", None, None)
    ]
    assert body["teams"][0]["suppressed"] == ["open"]
    assert body["team_totals"] is True
    bad = await client.get("/api/v1/forecast", params={"period": "custom", "start": "x"})
    assert bad.status_code == 400


async def test_a_team_total_of_two_customers_deals_is_suppressed_for_a_rep(
    services: Services, staff: Staff
) -> None:
    """Rep B's two open deals (two customers) are all the north team has beyond A's own:
    A's team total would give them away by subtraction, so it is hidden; with five of B's
    deals it is shown, and equals the sum over the team."""
    world = await seed(services, staff)
    gw, b = services.gateway, world["actors"]["b"]

    async def b_deal(first_name: str, amount: int) -> None:
        other = await gw.create(b, "contact", sales_contact(first_name=first_name))
        values = deal_values(other.id, amount=amount, probability=50)
        await gw.create(b, "deal", {**values, "expected_close": "2027-02-01"})

    await b_deal("Second", 4000)  # B: 3000 x 25% + this one: two customers' deals
    client = await web_login(staff, world["users"]["a"])
    params = {"period": "custom", "start": "2027-01-01", "end": "2027-03-31"}
    body = (await client.get("/api/v1/forecast", params=params)).json()
    (me,) = body["people"]
    assert (me["open_deals"], me["weighted"]) == (2, {"GBP": 1601})  # A's own: exact
    (team,) = body["teams"]
    assert team["suppressed"] == ["open"]
    assert (team["open_deals"], team["weighted"]) == (None, None)
    # Nothing shown adds up to B's deals: the cells are A's own, the team row hides them.
    assert sum(c["weighted"] for c in body["cells"]) == 1601
    assert (team["won"], team["lost"]) == (me["won"], me["lost"])  # B closed none: exact
    page = (await client.get("/forecast", params=params)).text
    assert "35.51" not in page  # 1601 + 750 + 2000: the team total in any form
    assert "Suppressed" in page
    # Five deals of B's beyond A's: shown, the sum over the team.
    for n in range(3):
        await b_deal(f"More{n}", 1000)
    body = (await client.get("/api/v1/forecast", params=params)).json()
    (team,) = body["teams"]
    assert team["suppressed"] == []
    assert team["open_deals"] == 2 + 5
    assert team["weighted"] == {"GBP": 1601 + 750 + 2000 + 3 * 500}


async def test_a_deals_forecast_category_can_be_overridden_and_the_sums_still_hold(
    services: Services, staff: Staff
) -> None:
    """A rep calls a 25% deal "commit": it moves to the commit column at its weighted
    amount (the probability still weighs it). A rep's forecast is the sum of their own
    open deals' weighted amounts; a team's is the sum over the team; an admin (the
    manager's view) sees a row per person and per team that add up."""
    world = await seed(services, staff)
    gw, b = services.gateway, world["actors"]["b"]
    [deal] = (await gw.list(b, "deal")).items
    with pytest.raises(InvalidInput):
        await gw.update(b, "deal", deal.id, {"forecast_category": "certain"})
    await gw.update(b, "deal", deal.id, {"forecast_category": "commit"})
    service = forecasts(services)
    theirs = await service.forecast(b, WINTER)
    assert {(c.month, c.category, c.weighted) for c in theirs.cells} == {
        ("2027-03", "commit", weighted(3000, 25))  # 750, counted as commit
    }
    (me,) = theirs.people
    assert me.by_category == {"commit": {"GBP": 750}}
    assert me.weighted == {"GBP": 750}
    # Each rep's own figures are the sum of their own open deals' weighted amounts.
    own_deals = {
        who: [
            d.values
            for d in (await gw.list(world["actors"][who], "deal")).items
            if d.values["stage"] not in ("won", "lost")
            and d.values["expected_close"]
            and "2027-01-01" <= str(d.values["expected_close"]) <= "2027-03-31"
        ]
        for who in "abc"
    }
    chances = {"proposal": 30, "negotiation": 60, "qualification": 10}
    expected = {
        who: sum(weighted(v["amount"], v["probability"] or chances[v["stage"]]) for v in deals)
        for who, deals in own_deals.items()
    }
    assert expected == {"a": 1601, "b": 750, "c": 6300}
    for who in "abc":
        report = await service.forecast(world["actors"][who], WINTER)
        assert report.weighted_total("GBP") == expected[who]
    # The manager's view: a row per person and per team, each team the sum of its people.
    everything = await service.forecast(world["actors"]["admin"], WINTER)
    people = {p.owner_id: p.weighted["GBP"] for p in everything.people}
    users = world["users"]
    assert people == {users[w].user_id: expected[w] for w in "abc"}
    assert {t.team: t.weighted["GBP"] for t in everything.teams} == {
        "north": expected["a"] + expected["b"],
        "south": expected["c"],
    }
    commit = {t.team: t.by_category.get("commit", {}).get("GBP", 0) for t in everything.teams}
    assert commit == {"north": 1201 + 750, "south": 6300}
    admin = await web_login(staff, users["admin"])
    page = (await admin.get("/forecast?period=custom&start=2027-01-01&end=2027-03-31")).text
    assert "Team north" in page
    assert "Team south" in page
    assert "7.50" in page  # B's own row
