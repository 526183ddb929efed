"""Money and time in a real browser: a sales rep in Berlin types 12,500 EUR and a call at
10:00 their time, and reads 12,500.00 EUR and 10:00 back wherever they look; the time zone
came from the browser at sign-in, without a question."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.flows import expect, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

DEAL_TITLE = "Copper stills for Philippa"


@pytest.fixture(scope="module")
def browser_context_args(consentry: LiveServer) -> dict[str, Any]:
    """A browser set up in Berlin (its clock's zone is what sign-in picks up)."""
    return {"base_url": consentry.base_url, "locale": "de-DE", "timezone_id": "Europe/Berlin"}


def test_12500_eur_and_a_berlin_time_round_trip(page: Page, consentry: LiveServer) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    page.goto("/account")
    expect(page.get_by_label("Show times in")).to_have_value("Europe/Berlin")  # from the browser

    person = page.request.post(
        "/api/v1/contacts", data={"first_name": "Philippa", "last_name": "Brewer"}
    )
    assert person.status == 201, person.text()
    contact_id = person.json()["id"]

    page.goto(f"/deals/new?contact_id={contact_id}")
    page.get_by_label("Title").fill(DEAL_TITLE)
    page.get_by_label("Amount").fill("12,500")
    page.get_by_label("Currency").select_option("EUR")
    page.get_by_role("button", name="Save deal").click()
    expect(page.get_by_role("status")).to_contain_text("Deal created.")
    expect(page.locator(".record-row", has_text="Amount")).to_contain_text("12,500.00 EUR")

    stored = page.request.get(page.url.replace("/deals/", "/api/v1/deals/"))
    assert stored.json()["amount"] == 1_250_000  # the API and the database: minor units

    page.goto("/deals?sort=-amount")
    row = page.locator("tbody tr", has_text=DEAL_TITLE)
    expect(row).to_contain_text("12,500.00 EUR")
    expect(row).to_contain_text("Philippa Brewer")
    page.goto(f"/contacts/{contact_id}")
    expect(page.locator("main")).to_contain_text("12,500.00 EUR")
    page.goto(f"/contacts/{contact_id}/360")
    expect(page.locator("main")).to_contain_text("12,500.00 EUR")

    page.goto(f"/interactions/new?contact_id={contact_id}")
    when = page.get_by_label("When")
    expect(when).to_have_attribute("type", "datetime-local")
    page.get_by_label("Channel").select_option(label="Phone call")
    page.get_by_label("Direction").select_option(label="Outbound")
    when.fill("2026-12-03T10:00")
    page.get_by_label("Summary").fill("Talked about the stills")
    page.get_by_role("button", name="Save interaction").click()
    expect(page.get_by_role("status")).to_contain_text("Interaction created.")
    expect(page.locator("main")).to_contain_text("2026-12-03 10:00 CET")
    saved: Any = page.request.get(page.url.replace("/interactions/", "/api/v1/interactions/"))
    assert saved.json()["occurred_at"].startswith("2026-12-03T09:00:00")  # stored in UTC
    page.get_by_role("button", name="Edit").click()
    expect(page.get_by_label("When")).to_have_value("2026-12-03T10:00")
    assert re.search(r"/interactions/[0-9a-f-]{36}/edit$", page.url)
