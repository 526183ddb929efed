"""Mailbox capture in a real browser against a real Dovecot: connect a mailbox on the
*My mailboxes* page, sync it, see the customer's e-mail on their 360 page, share the
thread. With ``CONSENTRY_SCREENSHOTS=<dir>`` each step is photographed at 1280 and 390
pixels wide (for people to look at; never committed)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.flows import expect, sign_in_fully
from tests.browser.live_server import LiveServer
from tests.browser.test_search import shoot
from tests.imap_server import ImapServer, run_dovecot

if TYPE_CHECKING:
    from playwright.sync_api import Page

JANE = "jane.quartermain@customer.example"


@pytest.fixture
def imap() -> Iterator[ImapServer]:
    root = Path(tempfile.mkdtemp(prefix="consentry-dovecot-"))
    try:
        yield from run_dovecot(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def delivered(imap: ImapServer, subject: str) -> None:
    mail = EmailMessage()
    mail["From"] = f"Jane Quartermain <{JANE}>"
    mail["To"] = imap.user
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="customer.example")
    mail.set_content("Please send forty pallets of the blue glaze by Friday.\n\nJane")
    mail.add_attachment(
        b"%PDF-1.4 spec", maintype="application", subtype="pdf", filename="spec.pdf"
    )
    imap.deliver(mail.as_bytes())


def test_connect_sync_and_share(page: Page, consentry: LiveServer, imap: ImapServer) -> None:
    rep = consentry.create_staff("support")
    sign_in_fully(page, rep)
    made = page.request.post(
        "/api/v1/contacts",
        data={"first_name": "Jane", "last_name": "Quartermain", "email": JANE},
    )
    assert made.status == 201, made.text()
    contact_id = made.json()["id"]
    delivered(imap, "Quarterly pallet order")

    page.goto("/mailboxes")
    expect(page.get_by_role("heading", name="My mailboxes", level=1)).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Work inbox")
    page.get_by_label("The mailbox's own e-mail address").fill(imap.user)
    page.get_by_label("IMAP server").fill("127.0.0.1")
    page.get_by_label("Port", exact=True).fill(str(imap.port))
    page.get_by_label("Security", exact=True).select_option("none")
    page.get_by_label("User name").fill(imap.user)
    page.get_by_label("App password").fill(imap.password)
    shoot(page, "mailbox-connect")
    page.get_by_role("button", name="Connect mailbox").click()
    expect(page.get_by_text("Mailbox connected.")).to_be_visible()
    page.get_by_role("button", name="Test connection").click()
    expect(page.get_by_text("Connection works")).to_be_visible()
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("[data-progress]")).to_contain_text("1 captured", timeout=20_000)
    shoot(page, "mailbox-progress")
    assert imap.password not in page.content()

    page.goto(f"/contacts/{contact_id}/360")
    entry = page.get_by_text("E-mail received: Quarterly pallet order")
    expect(entry).to_be_visible()
    shoot(page, "mail-on-360")
    page.get_by_role("link", name="E-mail received: Quarterly pallet order").click()
    expect(page.get_by_text("This thread is private to you")).to_be_visible()
    page.get_by_role("button", name="Share the thread with my team").click()
    expect(page.get_by_text("Thread shared with your team")).to_be_visible()
    expect(page.get_by_text("This thread is shared")).to_be_visible()
    shoot(page, "mail-shared")
