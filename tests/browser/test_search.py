"""Name search in a real browser (issue 16): the header box's typeahead driven by the
keyboard alone, the results page with JavaScript turned off, and the picker on the new
deal form. With ``CONSENTRY_SCREENSHOTS=<dir>`` each step is also photographed at 1280 and
390 pixels wide (for people to look at; never committed)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tests.browser.flows import expect, path_is, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page

WIDTHS = (1280, 390)
PEOPLE = (
    ("Sharon", "Todd"),
    ("Todd", "Winterbottom"),
    ("Toddrick", "Barnes"),
    ("José", "Álvarez"),
    ("Ottoline", "Morrell"),
)


def shoot(page: Page, name: str) -> None:
    folder = os.environ.get("CONSENTRY_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": 1280, "height": 900}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900 if width > 500 else 844})
        page.screenshot(path=str(Path(folder) / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size(size)


def seed(page: Page) -> dict[str, str]:
    ids = {}
    for first, last in PEOPLE:
        made = page.request.post("/api/v1/contacts", data={"first_name": first, "last_name": last})
        assert made.status == 201, made.text()
        ids[f"{first} {last}"] = made.json()["id"]
    deal = page.request.post(
        "/api/v1/deals", data={"title": "Todd cask renewal", "contact_id": ids["Sharon Todd"]}
    )
    assert deal.status == 201, deal.text()
    return ids


def test_typeahead_by_keyboard_alone(page: Page, consentry: LiveServer) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    ids = seed(page)
    page.goto("/contacts")
    box = page.get_by_role("combobox", name="Search all records by name")
    box.focus()
    page.keyboard.type("todd sh", delay=30)
    listbox = page.get_by_role("listbox", name="Suggestions")
    expect(listbox).to_be_visible()
    options = listbox.get_by_role("option")
    expect(options.first).to_contain_text("Sharon Todd")
    expect(listbox).to_contain_text("Contacts")
    shoot(page, "header-typeahead")
    page.keyboard.press("ArrowDown")
    expect(options.first).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", re.compile("suggest-"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(path_is(f"/contacts/{ids['Sharon Todd']}"))

    # Escape closes the list; Enter with nothing chosen opens the full results page.
    box = page.get_by_role("combobox", name="Search all records by name")
    box.focus()
    page.keyboard.type("jose", delay=30)
    expect(page.get_by_role("listbox", name="Suggestions")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("listbox", name="Suggestions")).to_be_hidden()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Search", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="José Álvarez")).to_be_visible()
    assert "jose" not in page.url.lower()  # the term stays out of the URL


def test_results_page_without_javascript(
    page: Page, consentry: LiveServer, other_browser: Callable[..., Page]
) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    ids = seed(page)
    plain = other_browser(java_script_enabled=False)
    sign_in_fully(plain, rep)
    plain.get_by_label("Search all records by name").fill("tod")
    plain.get_by_role("button", name="Search all records").click()
    expect(plain.get_by_role("heading", name="Search", level=1)).to_be_visible()
    contacts = plain.locator("section.search-group", has_text="Contacts")
    expect(contacts.get_by_role("link")).to_have_count(3)
    expect(contacts.get_by_role("link").first).to_have_text(re.compile("Todd"))
    deals = plain.locator("section.search-group", has_text="Deals")
    expect(deals.get_by_role("link", name="Todd cask renewal")).to_be_visible()
    shoot(plain, "results-page")
    assert "tod" not in plain.url
    deals.get_by_role("link", name="Todd cask renewal").click()
    expect(plain.get_by_role("heading", name="Todd cask renewal")).to_be_visible()
    assert ids


def test_picker_on_the_new_deal_form(
    page: Page, consentry: LiveServer, other_browser: Callable[..., Page]
) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    ids = seed(page)
    page.goto("/deals/new")
    page.get_by_label("Title").fill("Telescope service plan")
    page.get_by_label("Find by name").first.fill("ottol")
    contact = page.get_by_label("Contact")
    expect(contact.locator("option:checked")).to_have_text("Ottoline Morrell")
    shoot(page, "picker")
    page.get_by_role("button", name="Save deal").click()
    expect(page.get_by_role("heading", name="Telescope service plan")).to_be_visible()
    expect(page.get_by_role("link", name="Ottoline Morrell")).to_be_visible()

    # Without JavaScript: "Find" posts the form back with the matches to choose from.
    plain = other_browser(java_script_enabled=False)
    sign_in_fully(plain, rep)
    plain.goto("/deals/new")
    plain.get_by_label("Title").fill("Second plan")
    plain.get_by_label("Find by name").first.fill("alvarez")
    plain.get_by_role("button", name="Find").first.click()
    expect(plain.get_by_label("Contact").locator("option:checked")).to_have_text("José Álvarez")
    expect(plain.get_by_label("Title")).to_have_value("Second plan")
    plain.get_by_role("button", name="Save deal").click()
    expect(plain.get_by_role("heading", name="Second plan")).to_be_visible()
    expect(plain.get_by_role("link", name="José Álvarez")).to_be_visible()
    assert ids["José Álvarez"]
