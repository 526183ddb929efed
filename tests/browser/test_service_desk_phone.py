"""The service desk and the portal's cases on a phone (390 px), in a real browser.

An agent works the queue from a phone: the queue is a stack of cards (title, reference,
status, SLA, assignee), never a table scrolled sideways, and the page itself never scrolls
sideways; "New case" and "Send reply" are on screen; an empty view says what to do next.
The customer follows the same case in the portal on a phone: the header's links fit, the
case list is cards, and the reply box and its button are there.

This module's server sends mail to a local aiosmtpd server (the portal's sign-in link)
and puts its own address in the links, as a deployment would.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import mail_settings, served
from tests.browser.flows import expect, path_is, sign_in_fully
from tests.browser.live_server import LiveServer
from tests.browser.test_layout import PHONE, page_overflow
from tests.browser.test_portal import ENTER_LINK, MAIL_TIMEOUT_SECONDS
from tests.server.test_mail import LocalSmtp, local_smtp

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from playwright.sync_api import Locator, Page

LONG_TITLE = "The replacement kettle sent last week does not switch itself off after boiling"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture(scope="module")
def consentry(tmp_path_factory: pytest.TempPathFactory, mailbox: LocalSmtp) -> Iterator[LiveServer]:
    """Like the package's server, with outgoing mail and public links configured."""
    with served(tmp_path_factory, "consentry-desk-phone", mail_settings(mailbox)) as server:
        yield server


def within_screen(page: Page, element: Locator) -> None:
    """The element is shown and lies inside the screen's width (not cut off at the right)."""
    expect(element).to_be_visible()
    box = element.bounding_box()
    assert box is not None
    width = int(page.evaluate("document.documentElement.clientWidth"))
    assert box["x"] >= 0, (box, width)
    assert box["x"] + box["width"] <= width, (box, width)


def sign_in_link(mailbox: LocalSmtp, address: str) -> str:
    """The portal link mailed to ``address`` (the case's reply e-mail came first)."""
    deadline = time.monotonic() + MAIL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for mail in mailbox.received:
            found = ENTER_LINK.search(mail.text) if mail.recipients == [address] else None
            if found:
                return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no sign-in link for {address}: {mailbox.received}")


def fact(card: Locator, label: str) -> Locator:
    """One "label: value" line of a card (a cell of the row, labelled for the phone)."""
    return card.locator(f'td[data-label="{label}"]')


def test_an_agent_and_the_customer_follow_a_case_on_a_phone(
    page: Page,
    consentry: LiveServer,
    mailbox: LocalSmtp,
    other_browser: Callable[..., Page],
) -> None:
    agent = consentry.create_staff("support")
    sign_in_fully(page, agent)
    address = f"kit.{uuid.uuid4().hex[:8]}@example.org"
    person = page.request.post(
        "/api/v1/contacts", data={"first_name": "Kit", "last_name": "Marlowe", "email": address}
    )
    assert person.status == 201, person.text()
    case = page.request.post(
        "/api/v1/cases",
        data={
            "title": LONG_TITLE,
            "description": "It keeps boiling until the plug is pulled.",
            "kind": "complaint",
            "priority": "high",
            "status": "open",
            "contact_id": person.json()["id"],
        },
    )
    assert case.status == 201, case.text()

    page.set_viewport_size(PHONE)
    page.goto("/desk")
    expect(page.get_by_role("heading", name="Service desk", level=1)).to_be_visible()
    assert page_overflow(page) == 0
    within_screen(page, page.get_by_role("button", name="New case"))
    card = page.get_by_role("row").filter(has_text=LONG_TITLE)
    # Every fact of the case is on screen, not in a column scrolled out of sight.
    within_screen(page, card.get_by_role("link", name=LONG_TITLE))
    facts = {
        "Status": "open",
        "Priority": "high",
        "SLA": "no SLA",
        "Assignee": agent.email.split("@")[0],  # the display name the CLI gives
    }
    for label, value in facts.items():
        within_screen(page, fact(card, label))
        expect(fact(card, label)).to_have_text(value)

    page.goto("/desk?view=mine&state=done")
    expect(page.get_by_text("No resolved or closed cases assigned to you.")).to_be_visible()
    page.get_by_role("link", name="Show the open cases").click()
    card = page.get_by_role("row").filter(has_text=LONG_TITLE)
    card.get_by_role("link", name=LONG_TITLE).click()
    expect(page.get_by_role("heading", name=LONG_TITLE, level=1)).to_be_visible()
    assert page_overflow(page) == 0
    page.get_by_role("textbox", name="Reply").fill("We are sending a new kettle today.")
    send = page.get_by_role("button", name="Send reply")
    send.scroll_into_view_if_needed()
    within_screen(page, send)
    send.click()
    expect(page.get_by_text("We are sending a new kettle today.")).to_be_visible()

    # The customer, on their phone, in the portal.
    customer = other_browser(viewport=PHONE)
    customer.goto("/portal")
    customer.get_by_label("Your e-mail address").fill(address)
    customer.get_by_role("button", name="Send me a sign-in link").click()
    customer.goto(sign_in_link(mailbox, address))
    customer.get_by_role("button", name="Continue").click()
    expect(customer).to_have_url(path_is("/portal/home"))
    header = customer.get_by_role("navigation", name="Portal")
    for label in ("Your page", "Help", "My cases"):
        within_screen(customer, header.get_by_role("link", name=label, exact=True))
    within_screen(customer, header.get_by_role("button", name="Sign out"))

    header.get_by_role("link", name="My cases").click()
    assert page_overflow(customer) == 0
    card = customer.get_by_role("row").filter(has_text=LONG_TITLE)
    within_screen(customer, fact(card, "Where it stands"))
    expect(fact(card, "Where it stands")).to_have_text("Waiting for your answer")
    card.get_by_role("link", name=LONG_TITLE).click()
    expect(customer.get_by_text("We are sending a new kettle today.")).to_be_visible()
    assert page_overflow(customer) == 0
    customer.get_by_label("Write to us").fill("Thank you, it arrived.")
    send = customer.get_by_role("button", name="Send")
    send.scroll_into_view_if_needed()
    within_screen(customer, send)
    send.click()
    expect(customer.get_by_text("Thank you, it arrived.")).to_be_visible()
    consentry.assert_alive()
