"""The customer 360 page and the reports in a real browser: a sales rep records a deal
and a call, opens the customer's 360 page from the contact page and sees both on the
timeline, then opens Reports from the menu and sees every chart drawn by Chart.js under
the strict Content-Security-Policy, with the tables of numbers still on the page."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from tests.browser.flows import expect, path_is, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page

DEAL_TITLE = "Copper still for Hermione"


def test_rep_sees_the_customer_360_and_the_report_charts(page: Page, consentry: LiveServer) -> None:
    rep = consentry.create_staff("sales")
    blocked: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or message.type == "error":
            blocked.append(message.text)

    page.on("console", watch)
    sign_in_fully(page, rep)
    person = page.request.post(
        "/api/v1/contacts", data={"first_name": "Hermione", "last_name": "Quill"}
    )
    assert person.status == 201, person.text()
    contact_id = person.json()["id"]
    deal = page.request.post(
        "/api/v1/deals",
        data={
            "title": DEAL_TITLE,
            "amount": 4_200_000,
            "currency": "EUR",
            "stage": "proposal",
            "contact_id": contact_id,
        },
    )
    assert deal.status == 201, deal.text()
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    call = page.request.post(
        "/api/v1/interactions",
        data={"channel": "phone_call", "occurred_at": yesterday, "contact_id": contact_id},
    )
    assert call.status == 201, call.text()

    page.goto(f"/contacts/{contact_id}")
    page.get_by_role("button", name="Customer 360").click()
    expect(page).to_have_url(path_is(f"/contacts/{contact_id}/360"))
    timeline = page.locator("ol[data-timeline] > li")
    expect(timeline).to_have_count(2)
    expect(timeline.nth(0)).to_contain_text(f"Deal created: {DEAL_TITLE}")
    expect(timeline.nth(0)).to_contain_text("42,000.00 EUR")
    expect(timeline.nth(1)).to_contain_text("Phone call")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    expect(page.get_by_role("heading", name="Reports", level=1)).to_be_visible()
    canvases = page.locator("canvas[data-chart]")
    expect(canvases).to_have_count(4)
    for i in range(4):
        expect(canvases.nth(i)).to_be_visible()
    drawn = page.evaluate(
        "() => Array.from(document.querySelectorAll('canvas[data-chart]'))"
        ".map(c => !!(window.Chart && window.Chart.getChart(c)))"
    )
    assert drawn == [True, True, True, True], drawn
    # The numbers stay on the page, folded under each chart.
    page.get_by_text("The numbers, stage by stage").click()
    table = page.locator("table[data-report=pipeline]")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_contain_text("42,000.00 EUR")
    assert not blocked, blocked
