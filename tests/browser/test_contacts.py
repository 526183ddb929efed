"""Working with contacts in a real browser: the accepted end-to-end story, field-level
restriction as a support user sees it, and the contact list on a phone."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from tests.browser.flows import (
    NEW_PASSWORD,
    Authenticator,
    confirm_identity_if_asked,
    expect,
    first_admin_sign_in,
    path_is,
    sign_in_fully,
)
from tests.browser.live_server import LiveServer, StaffLogin

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page

BIRTH_DATE = "1931-07-14"
# The same date as a page might print it: none of these may reach a support user's browser.
BIRTH_DATE_SPELLINGS = (
    BIRTH_DATE,
    "14/07/1931",
    "07/14/1931",
    "14.07.1931",
    "14 July 1931",
    "July 14, 1931",
)
PHONE_VIEWPORT = {"width": 390, "height": 844}


def create_staff_account(
    page: Page, admin: StaffLogin, authenticator: Authenticator, email: str, role: str
) -> int:
    """Fill in ``/admin/users/new`` (confirming the password again if the admin is asked
    to) and return the new account's id from the page that shows the one-time link."""

    def fill_and_send() -> None:
        page.goto("/admin/users/new")
        page.get_by_label("E-mail address").fill(email)
        page.get_by_label("Name", exact=True).fill("New Rep")
        page.get_by_label("Role").select_option(role)
        page.get_by_label("Team").fill(admin.team)
        page.get_by_role("button", name="Create account").click()

    fill_and_send()
    if confirm_identity_if_asked(page, admin, authenticator):
        fill_and_send()  # re-authentication returns to the empty form
    expect(page.get_by_role("heading", name="Account created")).to_be_visible()
    back = page.get_by_role("link", name="Back to the account").get_attribute("href") or ""
    found = re.fullmatch(r"/admin/users/(\d+)", back)
    assert found, back
    return int(found.group(1))


def search_contacts(page: Page, term: str) -> None:
    page.goto("/contacts")
    page.get_by_label("Find by name").fill(term)
    page.get_by_role("button", name="Search", exact=True).click()


def test_admin_creates_a_sales_user_who_signs_in_and_works_with_contacts(
    page: Page, consentry: LiveServer, other_browser: Callable[..., Page]
) -> None:
    """The issue's acceptance story: an admin signs in, enrols TOTP, creates a sales user;
    that user sets a password through the one-time link, signs in, and creates, edits,
    finds and deletes a contact, meeting a validation error on the way."""
    admin = consentry.create_staff("admin")
    authenticator = first_admin_sign_in(page, admin)
    rep_email = f"rep.{uuid.uuid4().hex[:8]}@staff.example.com"
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Staff accounts")).to_be_visible()
    rep_id = create_staff_account(page, admin, authenticator, rep_email, "sales")
    reset_link = page.get_by_label("One-time link").input_value()
    assert reset_link.startswith(f"{consentry.base_url}/reset/")

    # The new sales rep, at their own computer.
    rep = other_browser()
    rep.goto(reset_link)
    rep.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    rep.get_by_label("New password again").fill(NEW_PASSWORD)
    rep.get_by_role("button", name="Set password").click()
    expect(rep.get_by_text("Your new password is set.")).to_be_visible()
    sign_in_fully(rep, StaffLogin(rep_email, NEW_PASSWORD, rep_id, "sales", admin.team))
    expect(rep.get_by_text("role sales")).to_be_visible()

    # Create, with a mistake first: the form says what is wrong and keeps what was typed.
    contact_email = f"ada.{uuid.uuid4().hex[:8]}@example.org"
    rep.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    rep.get_by_role("button", name="New contact").click()
    expect(rep.get_by_label("Date of birth")).to_have_count(0)  # sales may not write it
    rep.get_by_label("First name").fill("Ada")
    rep.get_by_label("Last name").fill("Lovelace")
    rep.get_by_label("E-mail address").fill("ada at example dot org")
    rep.get_by_role("button", name="Save contact").click()
    expect(rep.get_by_role("alert")).to_contain_text("E-mail address: not a valid e-mail address")
    expect(rep.get_by_label("E-mail address")).to_have_attribute("aria-invalid", "true")
    expect(rep.get_by_label("First name")).to_have_value("Ada")
    rep.get_by_label("E-mail address").fill(contact_email)
    rep.get_by_label("Job title").fill("Analyst")
    rep.get_by_role("button", name="Save contact").click()
    expect(rep.get_by_role("status")).to_contain_text("Contact created.")
    expect(rep.get_by_role("heading", name="Ada Lovelace", level=1)).to_be_visible()
    expect(rep.get_by_text(contact_email)).to_be_visible()

    # Edit.
    rep.get_by_role("button", name="Edit").click()
    rep.get_by_label("Job title").fill("Countess and mathematician")
    rep.get_by_label("City").fill("London")
    rep.get_by_role("button", name="Save contact").click()
    expect(rep.get_by_role("status")).to_contain_text("Contact updated.")
    expect(rep.get_by_text("Countess and mathematician")).to_be_visible()
    expect(rep.get_by_text("London")).to_be_visible()

    # Search by the exact e-mail address.
    search_contacts(rep, contact_email)
    results = rep.locator("#results")
    expect(results.get_by_role("heading", level=2)).to_have_text("1 exact match")
    results.get_by_role("link", name="Ada Lovelace").click()

    # Delete.
    expect(rep).to_have_url(re.compile(r"/contacts/[^/]+$"))
    rep.get_by_role("button", name="Delete").click()
    expect(rep.get_by_role("heading", name="Delete Ada Lovelace?")).to_be_visible()
    rep.get_by_role("button", name="Delete contact").click()
    expect(rep).to_have_url(path_is("/contacts"))
    expect(rep.get_by_role("status")).to_contain_text("Contact deleted.")
    search_contacts(rep, contact_email)
    expect(rep.locator("#results").get_by_role("heading", level=2)).to_have_text("0 exact matches")


def test_support_sees_the_birth_date_as_restricted_and_never_its_value(
    page: Page, consentry: LiveServer, other_browser: Callable[..., Page]
) -> None:
    """Field-level policy in the browser: a support user in the record's team opens a
    contact whose birth date is set. The field is labelled Restricted, and no page the
    user can open carries the value, in any spelling, anywhere in its HTML."""
    admin = consentry.create_staff("admin", team="north")
    support = consentry.create_staff("support", team="north")

    first_admin_sign_in(page, admin)
    page.goto("/contacts/new")
    contact_email = f"grace.{uuid.uuid4().hex[:8]}@example.org"
    page.get_by_label("First name").fill("Grace")
    page.get_by_label("Last name").fill("Hopper")
    page.get_by_label("E-mail address").fill(contact_email)
    page.get_by_label("Date of birth").fill(BIRTH_DATE)
    page.get_by_role("button", name="Save contact").click()
    expect(page.get_by_role("status")).to_contain_text("Contact created.")
    expect(page.get_by_text(BIRTH_DATE)).to_be_visible()  # the admin may see it
    detail_path = page.url.removeprefix(consentry.base_url)

    viewer = other_browser()
    sign_in_fully(viewer, support)
    viewer.goto(detail_path)
    expect(viewer.get_by_role("heading", name="Grace Hopper", level=1)).to_be_visible()
    birth_row = viewer.locator(".record-row").filter(has_text="Date of birth")
    expect(birth_row.locator("dd")).to_have_text("Restricted")
    pages = {"detail": viewer.content()}

    viewer.goto(f"{detail_path}/edit")
    expect(viewer.get_by_label("First name")).to_have_value("Grace")
    expect(viewer.get_by_label("Date of birth")).to_have_count(0)
    pages["edit form"] = viewer.content()

    viewer.goto("/contacts")
    expect(viewer.get_by_role("link", name="Grace Hopper")).to_be_visible()
    pages["list"] = viewer.content()

    search_contacts(viewer, contact_email)
    expect(viewer.locator("#results").get_by_role("link", name="Grace Hopper")).to_be_visible()
    pages["search results"] = viewer.content()

    for name, html in pages.items():
        leaked = [s for s in BIRTH_DATE_SPELLINGS if s in html]
        assert not leaked, f"the {name} page shows a support user the birth date as {leaked}"


def test_the_contact_list_fits_a_phone_screen(
    consentry: LiveServer, other_browser: Callable[..., Page]
) -> None:
    """At 390 px wide (a common phone) the list, a contact and the form scroll only
    vertically: wide tables scroll inside their own box, long words wrap."""
    user = consentry.create_staff("sales")
    phone = other_browser(viewport=PHONE_VIEWPORT, is_mobile=True, has_touch=True)
    sign_in_fully(phone, user)
    for n in range(3):  # long values, through the JSON API with the browser's session
        created = phone.request.post(
            "/api/v1/contacts",
            data={
                "first_name": f"Maximilian-Alexander{n}",
                "last_name": "Worthington-Smythe-Fitzgerald",
                "email": f"maximilian.alexander.{n}@a-rather-long-company-domain.example.org",
                "phone": "+44 20 7946 0001",
                "job_title": "Chief Executive Officer of International Business Development",
                "lifecycle_stage": "customer",
            },
        )
        assert created.status == 201, created.text()
    record_id = created.json()["id"]

    for path in ("/contacts", f"/contacts/{record_id}", "/contacts/new", "/"):
        phone.goto(path)
        expect(phone.get_by_role("heading", level=1)).to_be_visible()
        scroll_width, inner_width = phone.evaluate(
            "[document.scrollingElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, f"{path} is {scroll_width} px wide on a phone"


def test_export_csv_is_a_button_not_a_link(
    consentry: LiveServer, other_browser: Callable[..., Page]
) -> None:
    """Export CSV on the list opens the reason form; only its button (a POST with the CSRF
    token) downloads the file. The same URL opened as a link, reason and all, shows the
    form and exports nothing."""
    user = consentry.create_staff("sales")
    browser = other_browser()
    sign_in_fully(browser, user)
    email = f"ada.{uuid.uuid4().hex[:8]}@example.org"
    created = browser.request.post(
        "/api/v1/contacts", data={"first_name": "Ada", "last_name": "Byron", "email": email}
    )
    assert created.status == 201, created.text()

    browser.goto("/export/contacts?reason=backup")
    expect(browser.get_by_role("heading", name="Export contacts as CSV")).to_be_visible()
    expect(browser.get_by_label("Reason")).to_have_value("")

    browser.goto("/contacts")
    browser.get_by_role("button", name="Export CSV").click()  # a link styled as a button
    browser.get_by_label("Reason").select_option("backup")
    with browser.expect_download() as started:
        browser.get_by_role("button", name="Download CSV").click()
    download = started.value
    assert download.suggested_filename == "contacts.csv"
    with open(download.path(), encoding="utf-8") as exported:
        assert email in exported.read()
