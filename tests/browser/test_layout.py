"""The signed-in layout on a phone (390 px) and a laptop (1280 px), in a real browser.

At 390 px the menu is folded behind a "Menu" button (a CSS-only disclosure, so it works
without JavaScript) and the page never scrolls sideways: the dashboard, the board and a
list page keep their width, and wide content scrolls inside its own box (tables, the
board). At 1280 px the menu is a sidebar, always open, with every group on one screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.flows import expect, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}


def page_overflow(page: Page) -> int:
    """How many pixels the page is wider than the screen (0: no sideways scrolling)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )


def test_the_menu_folds_away_at_phone_width_and_nothing_scrolls_sideways(
    page: Page, consentry: LiveServer
) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    person = page.request.post("/api/v1/contacts", data={"first_name": "Ida", "last_name": "Ng"})
    assert person.status == 201, person.text()
    for title in ("Cello strings", "A deal with a very long title that goes on and on and on"):
        deal = page.request.post(
            "/api/v1/deals",
            data={
                "title": title,
                "amount": 120_000,
                "currency": "EUR",
                "contact_id": person.json()["id"],
            },
        )
        assert deal.status == 201, deal.text()

    page.set_viewport_size(PHONE)
    page.goto("/")
    menu = page.get_by_role("navigation", name="Main")
    tasks = menu.get_by_role("link", name="Tasks")
    expect(tasks).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.locator("label", has_text="Menu").click()  # the button-like label of the toggle
    expect(tasks).to_be_visible()
    tasks.click()
    expect(page.get_by_role("heading", name="Tasks", level=1)).to_be_visible()
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Tasks")
    ).to_be_hidden()

    for path in ("/", "/pipeline", "/deals", "/contacts"):
        page.goto(path)
        assert page_overflow(page) == 0, path
    page.goto("/pipeline")
    expect(page.locator("section[data-stage=qualification]")).to_contain_text("Cello strings")

    page.set_viewport_size(LAPTOP)
    page.goto("/")
    expect(page.locator("label", has_text="Menu")).to_be_hidden()
    menu = page.get_by_role("navigation", name="Main")
    for label in ("Dashboard", "My day", "Tasks", "Contacts", "Deals", "Pipeline", "Cases"):
        expect(menu.get_by_role("link", name=label, exact=True)).to_be_visible()
    sales = menu.get_by_role("heading", name="Sales")
    expect(sales).to_be_visible()
    assert page_overflow(page) == 0
