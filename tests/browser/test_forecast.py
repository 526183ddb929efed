"""The sales forecast in a real browser: a sales rep records an open deal closing this
month, opens Forecast from the menu and sees the weighted value, the chart drawn by
Chart.js under the strict Content-Security-Policy, and the same numbers in the tables."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from tests.browser.flows import expect, path_is, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page


def test_rep_sees_their_weighted_forecast_with_a_chart(page: Page, consentry: LiveServer) -> None:
    rep = consentry.create_staff("sales")
    blocked: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or message.type == "error":
            blocked.append(message.text)

    page.on("console", watch)
    sign_in_fully(page, rep)
    person = page.request.post(
        "/api/v1/contacts", data={"first_name": "Ottoline", "last_name": "Brisk"}
    )
    assert person.status == 201, person.text()
    today = dt.datetime.now(dt.UTC).date()
    deal = page.request.post(
        "/api/v1/deals",
        data={
            "title": "Telescope for Ottoline",
            "amount": 1_000_000,
            "currency": "EUR",
            "stage": "proposal",
            "probability": 50,
            "expected_close": today.isoformat(),
            "contact_id": person.json()["id"],
        },
    )
    assert deal.status == 201, deal.text()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Forecast").click()
    expect(page).to_have_url(path_is("/forecast"))
    expect(page.get_by_role("heading", name="Sales forecast", level=1)).to_be_visible()
    expect(page.locator("[data-report=forecast-total]")).to_contain_text("5,000.00 EUR")
    chart = page.locator("canvas[data-chart=forecast-EUR]")
    expect(chart).to_be_visible()
    assert page.evaluate(
        "c => !!(window.Chart && window.Chart.getChart(c))", chart.element_handle()
    )
    # The numbers stay on the page, folded under the chart; this month is in the period.
    page.locator("select[name=period]").select_option("month")
    page.get_by_role("button", name="Show").click()
    page.get_by_text("The numbers, month by month").click()
    row = page.locator("table[data-report=forecast] tbody tr")
    expect(row).to_contain_text(today.strftime("%Y-%m"))
    expect(row).to_contain_text("Best case")
    expect(row).to_contain_text("10,000.00 EUR")
    performance = page.locator("table[data-report=performance] tbody")
    expect(performance).to_contain_text("Team")
    assert not blocked, blocked


def test_rep_calls_a_deal_commit_and_the_dashboard_shows_their_forecast(
    page: Page, consentry: LiveServer
) -> None:
    """The forecast category is the rep's call: set on the deal's form, it moves the deal
    to Commit at the same weighted value; the start page's forecast panel shows it with
    the win rate, at a phone's width too."""
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    person = page.request.post(
        "/api/v1/contacts", data={"first_name": "Perdita", "last_name": "Quarry"}
    )
    assert person.status == 201, person.text()
    today = dt.datetime.now(dt.UTC).date()
    deal = page.request.post(
        "/api/v1/deals",
        data={
            "title": "Orrery for Perdita",
            "amount": 400_000,
            "currency": "EUR",
            "stage": "proposal",
            "probability": 25,
            "expected_close": today.isoformat(),
            "contact_id": person.json()["id"],
        },
    )
    assert deal.status == 201, deal.text()
    won = page.request.post(
        "/api/v1/deals",
        data={
            "title": "Sextant",
            "amount": 10_000,
            "currency": "EUR",
            "stage": "won",
            "contact_id": person.json()["id"],
        },
    )
    assert won.status == 201, won.text()

    page.goto(f"/deals/{deal.json()['id']}/edit")
    page.get_by_label("Forecast category").select_option(label="Commit")
    page.get_by_role("button", name="Save deal").click()
    expect(page.get_by_text("Deal updated.")).to_be_visible()

    page.goto("/forecast?period=month")
    page.get_by_text("The numbers, month by month").click()
    row = page.locator("table[data-report=forecast] tbody tr")
    expect(row).to_contain_text("Commit")  # 25%: pipeline by its probability, commit by call
    expect(page.locator("[data-report=forecast-total]")).to_contain_text("1,000.00 EUR")

    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 1600})
        page.goto("/")
        panel = page.locator("[data-panel=forecast]")
        expect(panel.get_by_role("heading", name="Your forecast this quarter")).to_be_visible()
        mine = panel.locator("tr[data-row=me]")
        expect(mine).to_contain_text("1,000.00 EUR")  # weighted, all of it commit
        expect(mine.locator("[data-win-rate]")).to_have_text("100%")
