"""The deal board in a real browser, by keyboard only: a sales rep tabs to a card's stage
select, picks "Won" with the arrow keys, presses the card's "Move" button with Enter, and
finds the card in the Won column (with htmx boosting the form, as users get it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.flows import expect, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

DEAL_TITLE = "Kettle drums for Philippa"


def test_a_deal_moves_to_won_with_the_keyboard(page: Page, consentry: LiveServer) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    person = page.request.post(
        "/api/v1/contacts", data={"first_name": "Philippa", "last_name": "Drum"}
    )
    assert person.status == 201, person.text()
    deal = page.request.post(
        "/api/v1/deals",
        data={
            "title": DEAL_TITLE,
            "amount": 990_000,
            "currency": "GBP",
            "stage": "proposal",
            "contact_id": person.json()["id"],
        },
    )
    assert deal.status == 201, deal.text()

    page.goto("/pipeline")
    proposal = page.locator("section[data-stage=proposal]")
    expect(proposal).to_contain_text(DEAL_TITLE)
    expect(proposal).to_contain_text("9,900.00 GBP")
    select = page.get_by_label(f"Stage of {DEAL_TITLE}")
    select.focus()
    expect(select).to_be_focused()
    # Proposal -> Negotiation -> Won: two steps down the list, by arrow key.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(select).to_have_value("won")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Move").first).to_be_focused()
    page.keyboard.press("Enter")

    won = page.locator("section[data-stage=won]")
    expect(won).to_contain_text(DEAL_TITLE)
    expect(page.locator("section[data-stage=proposal]")).not_to_contain_text(DEAL_TITLE)
    expect(page.get_by_role("status")).to_contain_text("moved to Won")
