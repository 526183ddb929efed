"""Issue 4's acceptance, in a real browser and only through the admin's pages.

"A new user can, in the admin, capture a lead, convert it, move the deal through the
pipeline to won, log a call and an e-mail, open and close a case, and see all of it on
the customer 360 page."

A new admin (first sign-in: authenticator enrolment) does exactly that, clicking links and
buttons a person would find, never typing a URL other than a menu's. Then, behind the UI:
none of the personal values typed appear in plaintext in a copy of the database (the
SQLite file and its write-ahead log, or a ``pg_dump``) nor in the server's log.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import REQUIRE_PG
from tests.browser.flows import expect, first_admin_sign_in, path_is
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

FIRST_NAME = "Euphemia"
LAST_NAME = "Tarrantwhistle"
EMAIL = "euphemia.tarrantwhistle@example.net"
PHONE = "+44 20 7946 0958"
PHONE_STORED = ("+442079460958", "2079460958")  # the canonical form the gateway keeps
COMPANY = "Brassbound Telescopes Ltd"  # an organization's name is business data: plaintext
MESSAGE = "Wants a quote for twelve brass refractors by Lammas"
DEAL_TITLE = "Twelve refractors for Tarrantwhistle"
CALL_SUMMARY = "Agreed the eyepiece options for the refractors"
CALL_PARTICIPANTS = "Ottoline Fairweather-Quist (her assistant) and our optician"
EMAIL_SUMMARY = "Sent the signed order confirmation for the refractors"
CASE_TITLE = "Scratched objective lens on refractor nine"
CASE_DESCRIPTION = "Tarrantwhistle found a hairline scratch across the lens"
PERSONAL = (
    FIRST_NAME,
    LAST_NAME,
    EMAIL,
    PHONE,
    *PHONE_STORED,
    MESSAGE,
    DEAL_TITLE,
    CALL_SUMMARY,
    CALL_PARTICIPANTS,
    "Fairweather-Quist",
    EMAIL_SUMMARY,
    CASE_TITLE,
    CASE_DESCRIPTION,
)
PG_DUMP_CANDIDATES = ("/usr/bin/pg_dump", "/usr/lib/postgresql/15/bin/pg_dump")


def click_button(page: Page, name: str) -> None:
    """A button, or a link styled as one (``role="button"``): found the same way."""
    page.get_by_role("button", name=name, exact=True).click()


def record_row(page: Page, label: str) -> Locator:
    """One field of a record's page, by its label."""
    return page.locator(".record-row").filter(
        has=page.locator("dt", has_text=re.compile(rf"^{re.escape(label)}$"))
    )


def timeline_entry(page: Page, title: str) -> Locator:
    return page.locator("[data-timeline] > li", has_text=title)


def capture_lead(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Leads").click()
    page.get_by_role("button", name="New lead").click()
    page.get_by_label("First name").fill(FIRST_NAME)
    page.get_by_label("Last name").fill(LAST_NAME)
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Phone number").fill(PHONE)
    page.get_by_label("Company").fill(COMPANY)
    page.get_by_label("Message").fill(MESSAGE)
    page.get_by_label("Source").select_option(label="Phone")
    click_button(page, "Save lead")
    expect(page.get_by_role("status")).to_contain_text("Lead created.")
    expect(page.get_by_role("heading", name=f"{FIRST_NAME} {LAST_NAME}", level=1)).to_be_visible()


def convert_lead(page: Page) -> None:
    """Convert with a new organization (from the company name) and a deal; ends on the
    contact's page."""
    page.get_by_role("button", name="Convert", exact=True).click()
    page.get_by_label(f"Create the organization “{COMPANY}”").check()
    page.get_by_label("Title").fill(DEAL_TITLE)
    page.get_by_label("Amount").fill("14,500")  # major units, as a person types money
    page.get_by_label("Currency").select_option("GBP")
    click_button(page, "Convert lead")
    expect(page.get_by_role("status")).to_contain_text("Lead converted.")
    expect(page).to_have_url(re.compile(r"/contacts/[0-9a-f-]{36}$"))
    expect(page.get_by_role("link", name=COMPANY)).to_be_visible()
    expect(page.get_by_role("link", name=DEAL_TITLE)).to_be_visible()


def win_the_deal(page: Page) -> None:
    """On the board: the card's "Move" disclosure, its stage select and button, by keyboard."""
    menu = page.get_by_role("navigation", name="Main")
    menu.get_by_role("link", name="Pipeline", exact=True).click()
    card = page.locator("li.card", has_text=DEAL_TITLE)
    expect(page.locator("section[data-stage=qualification]")).to_contain_text(DEAL_TITLE)
    card.locator("summary").focus()
    page.keyboard.press("Enter")  # opens the disclosure
    stage = card.get_by_label(f"Stage of {DEAL_TITLE}")
    stage.select_option("won")
    stage.focus()
    page.keyboard.press("Tab")
    expect(card.get_by_role("button", name="Move", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("moved to Won")
    expect(page.locator("section[data-stage=won]")).to_contain_text(DEAL_TITLE)


def log_interaction(
    page: Page, contact_url: str, channel: str, when: str, summary: str, participants: str = ""
) -> None:
    """From the contact's page: "New interaction", the person already chosen."""
    page.goto(contact_url)
    page.get_by_role("button", name="New interaction").click()
    expect(page.get_by_label("Contact")).to_have_value(contact_url.rsplit("/", 1)[1])
    page.get_by_label("Channel").select_option(label=channel)
    page.get_by_label("Direction").select_option(label="Outbound")
    page.get_by_label("When").fill(when)
    page.get_by_label("Summary").fill(summary)
    if participants:
        page.get_by_label("Participants").fill(participants)
    page.get_by_label("Deal").select_option(label=DEAL_TITLE)
    click_button(page, "Save interaction")
    expect(page.get_by_role("status")).to_contain_text("Interaction created.")


def open_and_close_a_case(page: Page, contact_url: str) -> None:
    page.goto(contact_url)
    page.get_by_role("button", name="New case").click()
    page.get_by_label("Title").fill(CASE_TITLE)
    page.get_by_label("Description").fill(CASE_DESCRIPTION)
    page.get_by_label("Kind").select_option(label="Complaint")
    page.get_by_label("Priority").select_option(label="High")
    click_button(page, "Save case")
    expect(page.get_by_role("status")).to_contain_text("Case created.")
    expect(record_row(page, "Status")).to_contain_text("Open")
    page.get_by_role("button", name="Edit", exact=True).click()
    page.get_by_label("Status").select_option(label="Closed")
    click_button(page, "Save case")
    expect(page.get_by_role("status")).to_contain_text("Case updated.")
    expect(record_row(page, "Status")).to_contain_text("Closed")


def see_it_all_on_the_360_page(page: Page, contact_path: str) -> None:
    """The organization, the deal as won, both interactions (the call with who took
    part) and the closed case, on one timeline."""
    page.goto(contact_path)
    page.get_by_role("button", name="Customer 360").click()
    expect(page).to_have_url(path_is(f"{contact_path}/360"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"{FIRST_NAME} {LAST_NAME}")
    organization = page.locator("section", has=page.get_by_role("heading", name="Organization"))
    expect(organization.get_by_role("link", name=COMPANY)).to_be_visible()

    expect(page.locator("[data-timeline] > li")).to_have_count(4)
    deal = timeline_entry(page, f"Deal created: {DEAL_TITLE}")
    expect(deal).to_contain_text("Stage: Won")
    expect(deal.locator("mark.flag")).to_have_text("Won")
    expect(deal).to_contain_text("14,500.00 GBP")
    call = timeline_entry(page, CALL_SUMMARY)
    expect(call.get_by_role("link", name="Phone call")).to_be_visible()
    expect(call).to_contain_text(f"Participants: {CALL_PARTICIPANTS}")
    mail = timeline_entry(page, EMAIL_SUMMARY)
    expect(mail.get_by_role("link", name="Email")).to_be_visible()
    expect(mail).to_contain_text("Direction: Outbound")
    case = timeline_entry(page, f"Case opened: {CASE_TITLE}")
    expect(case).to_contain_text("Status: Closed")
    expect(case.locator("mark.flag")).to_have_count(0)  # a closed case breaches no SLA
    # Newest first: the e-mail (yesterday) before the call (two days ago).
    texts = page.locator("[data-timeline] > li").all_inner_texts()
    talks = [t for t in texts if EMAIL_SUMMARY in t or CALL_SUMMARY in t]
    assert len(talks) == 2, texts
    assert EMAIL_SUMMARY in talks[0], texts
    assert CALL_SUMMARY in talks[1], texts


# --- behind the UI ---------------------------------------------------------------------------


def _pg_dump(database_url: str) -> bytes:
    binary = shutil.which("pg_dump") or next(
        (c for c in PG_DUMP_CANDIDATES if Path(c).exists()), None
    )
    if binary is None:
        if REQUIRE_PG:
            pytest.fail("pg_dump is required (install postgresql-client) but was not found")
        pytest.skip("pg_dump not found")
    done = subprocess.run(  # noqa: S603 - a fixed binary and our own test database
        [binary, "--format=plain", "--no-owner", f"--dbname={database_url}"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def database_copy(server: LiveServer) -> bytes:
    """What a stolen copy would hold: the SQLite file and its write-ahead log (freed pages
    included), or a plain ``pg_dump`` of the database."""
    if server.database_url.startswith("sqlite:///"):
        path = Path(server.database_url.removeprefix("sqlite:///"))
        blob = path.read_bytes()
        for suffix in ("-wal", "-journal"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                blob += extra.read_bytes()
        return blob
    return _pg_dump(server.database_url)


def assert_nothing_personal(blob: bytes, where: str) -> None:
    folded = blob.lower()
    for value in PERSONAL:
        assert value.lower().encode() not in folded, f"{value!r} readable in {where}"


# --- the test ----------------------------------------------------------------------------------


def test_a_new_user_runs_a_customer_from_lead_to_360(page: Page, consentry: LiveServer) -> None:
    admin = consentry.create_staff("admin")
    first_admin_sign_in(page, admin)

    capture_lead(page)
    convert_lead(page)
    contact_path = "/" + page.url.split("/", 3)[3]
    win_the_deal(page)
    log_interaction(page, contact_path, "Phone call", _days_ago(2), CALL_SUMMARY, CALL_PARTICIPANTS)
    log_interaction(page, contact_path, "Email", _days_ago(1), EMAIL_SUMMARY)
    open_and_close_a_case(page, contact_path)
    see_it_all_on_the_360_page(page, contact_path)

    consentry.assert_alive()
    copy = database_copy(consentry)
    assert COMPANY.encode() in copy  # plaintext business data: we are looking at the data
    assert b"cs1." in copy  # and at the ciphertext envelopes
    assert_nothing_personal(copy, f"the database ({consentry.database_url.split(':')[0]})")
    log = consentry.log_path.read_bytes()
    assert b"POST" in log or b"request" in log.lower()  # the log is not empty
    assert_nothing_personal(log, "the server's log")


def _days_ago(days: int) -> str:
    """A date and time for the "When" picker (the browser and the user are in UTC)."""
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M")  # a datetime-local input's value


def test_the_deal_form_offers_the_chosen_pipelines_stages(
    page: Page, consentry: LiveServer
) -> None:
    """With JavaScript, the stage select shows only the chosen pipeline's stages (the
    default pipeline's while none is chosen), and a stage of another pipeline is cleared
    rather than sent when the pipeline changes."""
    admin = consentry.create_staff("admin")
    first_admin_sign_in(page, admin)
    person = page.request.post(
        "/api/v1/contacts", data={"first_name": "Leopold", "last_name": "Quarrington"}
    )
    assert person.status == 201, person.text()
    page.goto("/admin/pipelines")
    creating = page.get_by_role("region", name="New pipeline")
    creating.get_by_label("Name", exact=True).fill("Wholesale")
    click_button(page, "Create pipeline")
    wholesale = page.get_by_role("region", name="Wholesale", exact=True)
    wholesale.get_by_label("Name", exact=True).fill("Samples sent")
    wholesale.get_by_role("button", name="Add stage").click()
    expect(page.get_by_role("status")).to_contain_text("Stage added.")

    page.goto(f"/deals/new?contact_id={person.json()['id']}")
    stage = page.get_by_label("Stage")
    expect(page.locator('optgroup[label="Wholesale"]')).to_have_attribute("hidden", "")
    expect(page.locator('optgroup[label="Sales"]')).not_to_have_attribute("hidden", "")
    stage.select_option("proposal")
    page.get_by_label("Pipeline").select_option(label="Wholesale")
    expect(stage).to_have_value("")  # Proposal is not a Wholesale stage: cleared
    expect(page.locator('optgroup[label="Sales"]')).to_have_attribute("hidden", "")
    stage.select_option(label="Samples sent")
    page.get_by_label("Title").fill("Sample crate of telescopes")
    click_button(page, "Save deal")
    expect(page.get_by_role("status")).to_contain_text("Deal created.")
    expect(record_row(page, "Pipeline")).to_contain_text("Wholesale")
    expect(record_row(page, "Stage")).to_contain_text("Samples sent")
