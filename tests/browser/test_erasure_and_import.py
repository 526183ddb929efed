"""In a real browser: a compliance officer sees what an erasure destroys and must type the
request reference; an admin imports a file with a "Surname" column by matching it on
screen, after a dry run."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from tests.browser.flows import expect, first_admin_sign_in
from tests.browser.live_server import LiveServer
from tests.browser.test_portal import create_customer

if TYPE_CHECKING:
    from playwright.sync_api import Page

PEOPLE = (
    "Forename,Surname,Mail,Favourite colour\n"
    "Ada,Lovelace,ada.{tag}@example.org,green\n"
    "Charles,Babbage,charles.{tag}@example.org,grey\n"
)


def test_erasure_shows_what_it_destroys_and_needs_the_reference(
    page: Page, consentry: LiveServer
) -> None:
    address = f"ottoline.{uuid.uuid4().hex[:8]}@example.org"
    create_customer(consentry, address)
    officer = consentry.create_staff("compliance")
    first_admin_sign_in(page, officer)

    page.goto("/compliance/requests")
    page.get_by_label("The person's e-mail address", exact=True).fill(address)
    page.get_by_label("Request", exact=True).select_option("erasure")
    page.get_by_label("Received by", exact=True).select_option("phone")
    page.get_by_label("Identity verified by", exact=True).select_option("phone_callback")
    page.get_by_role("button", name=re.compile("^Log")).click()
    page.get_by_role("button", name="Start review").click()
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("button", name="Mark fulfilled")).to_have_count(0)
    page.get_by_role("button", name="Review and erase…").click()

    expect(page.get_by_role("heading", name="Confirm erasure", level=1)).to_be_visible()
    expect(page.get_by_role("row", name="Contacts 1 Destroyed")).to_be_visible()
    expect(page.get_by_role("heading", name="What is kept, and why")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text(address)
    reference = page.locator("code.reference").inner_text()
    box = page.get_by_label(re.compile("To confirm, type the request reference"))

    box.fill("not-it")
    page.get_by_role("button", name="Erase permanently").click()
    expect(page.get_by_text("Type the request reference shown above")).to_be_visible()
    page.get_by_label(re.compile("To confirm, type the request reference")).fill(reference)
    page.get_by_role("button", name="Erase permanently").click()
    # It runs in the background: the progress page refreshes until it is done.
    expect(page.get_by_role("heading", name="Erasure progress", level=1)).to_be_visible()
    expect(page.locator("#erase-status")).to_contain_text("Erased.", timeout=15_000)
    expect(page.get_by_text("The person's encryption key shredded")).to_be_visible()
    page.get_by_role("link", name="Back to the request").click()
    expect(page.get_by_text("Complete")).to_be_visible()


def test_an_admin_maps_a_surname_column_and_imports_after_a_dry_run(
    page: Page, consentry: LiveServer
) -> None:
    admin = consentry.create_staff("admin")
    first_admin_sign_in(page, admin)
    tag = uuid.uuid4().hex[:8]
    page.goto("/import")
    page.get_by_label("The file holds").select_option("contact")
    page.get_by_label("CSV file").set_input_files(
        {"name": "people.csv", "mimeType": "text/csv", "buffer": PEOPLE.format(tag=tag).encode()}
    )
    page.get_by_role("button", name="Upload and match columns").click()

    expect(page.get_by_role("heading", name="Match the columns")).to_be_visible()
    surname = page.get_by_label("Surname", exact=True)
    expect(surname).to_have_value("last_name")
    expect(page.get_by_label("Forename", exact=True)).to_have_value("first_name")
    expect(page.get_by_label("Mail", exact=True)).to_have_value("email")
    expect(page.get_by_label("Favourite colour", exact=True)).to_have_value("")
    expect(page.get_by_role("heading", name="The first 2 rows")).to_be_visible()
    expect(page.locator(".import-preview")).to_contain_text("Lovelace")

    # Forget the surname: the screen says so in words, nothing is checked or written.
    surname.select_option("")
    page.get_by_role("button", name="Check the file (dry run)").click()
    expect(
        page.get_by_text("Last name is required: choose the column that holds it.")
    ).to_be_visible()
    page.get_by_label("Surname", exact=True).select_option("last_name")
    page.get_by_role("button", name="Check the file (dry run)").click()

    expect(page.locator("#import-summary")).to_have_text(
        "Nothing was written. 2 rows: 2 would be created, 0 skipped, 0 bad."
    )
    page.get_by_role("button", name="Import 2 contacts").click()
    expect(page.get_by_role("heading", name="Import report")).to_be_visible(timeout=60_000)
    expect(page.locator("#import-summary")).to_have_text("2 rows: 2 created, 0 skipped, 0 bad.")
