"""The deal board in a real browser: a deal moves by keyboard (the card's "Move"
disclosure), by drag and drop, and the move persists; at 1280 px every stage of the
default pipeline fits on screen, Won and Lost included, and the page itself never
scrolls sideways (the board scrolls in its own box when there are more stages)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.flows import expect, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

DEAL_TITLE = "Kettle drums for Philippa"
DRAGGED_TITLE = "Timpani mallets"


def create_deal(page: Page, title: str, stage: str = "proposal") -> str:
    person = page.request.post(
        "/api/v1/contacts", data={"first_name": "Philippa", "last_name": "Drum"}
    )
    assert person.status == 201, person.text()
    deal = page.request.post(
        "/api/v1/deals",
        data={
            "title": title,
            "amount": 990_000,
            "currency": "GBP",
            "stage": stage,
            "contact_id": person.json()["id"],
        },
    )
    assert deal.status == 201, deal.text()
    return str(deal.json()["id"])


def test_a_deal_moves_to_won_with_the_keyboard(page: Page, consentry: LiveServer) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    create_deal(page, DEAL_TITLE)

    page.goto("/pipeline")
    proposal = page.locator("section[data-stage=proposal]")
    card = proposal.locator("li.card", has_text=DEAL_TITLE)
    expect(card).to_contain_text("9,900.00 GBP")
    expect(card).to_contain_text("Philippa Drum")
    card.locator("summary").focus()
    page.keyboard.press("Enter")  # opens the card's "Move" disclosure
    page.keyboard.press("Tab")
    select = page.get_by_label(f"Stage of {DEAL_TITLE}")
    expect(select).to_be_focused()
    # Proposal -> Negotiation -> Won: two steps down the list, by arrow key.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(select).to_have_value("won")
    page.keyboard.press("Tab")
    expect(card.get_by_role("button", name="Move", exact=True)).to_be_focused()
    page.keyboard.press("Enter")

    won = page.locator("section[data-stage=won]")
    expect(won).to_contain_text(DEAL_TITLE)
    expect(page.locator("section[data-stage=proposal]")).not_to_contain_text(DEAL_TITLE)
    expect(page.get_by_role("status")).to_contain_text("moved to Won")


def test_a_deal_is_dragged_to_won_and_stays_there(page: Page, consentry: LiveServer) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    deal_id = create_deal(page, DRAGGED_TITLE, stage="qualification")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/pipeline")
    card = page.locator(f"#deal-{deal_id}")
    expect(card).to_have_attribute("draggable", "true")
    card.drag_to(page.locator("section[data-stage=won]"))
    expect(page.get_by_role("status")).to_contain_text("moved to Won")
    page.reload()
    expect(page.locator("section[data-stage=won]")).to_contain_text(DRAGGED_TITLE)
    expect(page.locator("section[data-stage=qualification]")).not_to_contain_text(DRAGGED_TITLE)
    stored = page.request.get(f"/api/v1/deals/{deal_id}")
    assert stored.json()["stage"] == "won"


def test_every_stage_fits_at_1280_and_the_page_never_scrolls_sideways(
    page: Page, consentry: LiveServer
) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    create_deal(page, "A rather long deal title that must not widen its column at all")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto("/pipeline")
    columns = page.locator("section.board-column")
    expect(columns).to_have_count(5)
    for stage in ("won", "lost"):
        box = page.locator(f"section[data-stage={stage}]").bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= 1280, (stage, box)
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.querySelector('#board').scrollWidth,"
        " document.querySelector('#board').clientWidth]"
    )
    assert widths[0] <= widths[1], widths  # no sideways page scroll
    assert widths[2] <= widths[3] + 1, widths  # the five columns fit the board
