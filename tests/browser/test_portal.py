"""The customer portal in a real browser: ask for a link, follow it from the e-mail that
arrived at a real SMTP server, continue, and ask for erasure.

This module's server sends mail to a local aiosmtpd server and puts its own address in
the links (``CONSENTRY_PUBLIC_URL``), as a deployment would.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
import urllib.request
import uuid
import zipfile
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import mail_settings, served
from tests.browser.flows import expect, path_is
from tests.browser.live_server import LiveServer
from tests.server.test_mail import LocalSmtp, Received, local_smtp

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Page

MAIL_TIMEOUT_SECONDS = 10.0
ENTER_LINK = re.compile(r"(http://127\.0\.0\.1:\d+/portal/enter/\S+)")


@pytest.fixture(scope="module")
def mailbox() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture(scope="module")
def consentry(tmp_path_factory: pytest.TempPathFactory, mailbox: LocalSmtp) -> Iterator[LiveServer]:
    """Like the package's server, with outgoing mail and public links configured."""
    mail = mail_settings(mailbox)

    def settings(server: LiveServer) -> dict[str, str]:
        # The lead form's minimum fill time, shortened for a browser that types fast.
        return {**mail(server), "CONSENTRY_WEB_FORM_MIN_SECONDS": "1"}

    with served(tmp_path_factory, "consentry-portal", settings) as server:
        yield server


def received_by(mailbox: LocalSmtp, address: str) -> list[Received]:
    """The messages to ``address``, once one has arrived: the link is sent after the page
    was answered, so it may take a moment."""
    deadline = time.monotonic() + MAIL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        mails = [m for m in mailbox.received if m.recipients == [address]]
        if mails:
            return mails
        time.sleep(0.1)
    return []


def create_customer(server: LiveServer, email: str) -> None:
    """A sales rep records the customer through the API, as staff would."""
    rep = server.create_staff("sales")
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )

    def post(path: str, body: dict[str, str]) -> None:
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            f"{server.base_url}{path}",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with opener.open(request, timeout=10) as answer:
            assert answer.status in (200, 201), answer.status

    post("/api/v1/auth/login", {"email": rep.email, "password": rep.password})
    post("/api/v1/contacts", {"first_name": "Ada", "last_name": "Byron", "email": email})


def test_a_customer_signs_in_by_email_link_and_asks_for_erasure(
    page: Page, consentry: LiveServer, mailbox: LocalSmtp
) -> None:
    address = f"ada.{uuid.uuid4().hex[:8]}@example.org"
    create_customer(consentry, address)

    page.goto("/portal")
    page.get_by_label("Your e-mail address").fill(address)
    page.get_by_role("button", name="Send me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    expect(page.get_by_text("If we hold data under that address")).to_be_visible()

    mails = received_by(mailbox, address)
    assert len(mails) == 1
    link = ENTER_LINK.search(mails[0].text)
    assert link, mails[0].text
    page.goto(link.group(1))
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(path_is("/portal/home"))
    expect(page.get_by_text("You have not made any requests yet.")).to_be_visible()

    page.get_by_role("button", name="Erase my data").click()
    # A confirmation step first: nothing is filed until the person says yes.
    expect(page.get_by_role("heading", name="Erase your data?")).to_be_visible()
    page.get_by_role("button", name="Yes, erase my data").click()
    expect(page.get_by_role("heading", name="Request received")).to_be_visible()
    reference = page.locator("code").first.inner_text()
    page.get_by_role("link", name="Back to your page").click()
    row = page.get_by_role("row").filter(has_text=reference)
    expect(row).to_contain_text("Erasure of your data")
    expect(row).to_contain_text("Identity verified")

    # Reusing the link, even in the same browser, gets the neutral page.
    page.goto(link.group(1))
    expect(page.get_by_text("This link is not valid any more. Ask for a new one.")).to_be_visible()
    consentry.assert_alive()


def submit_the_web_form(server: LiveServer, email: str) -> None:
    """Someone fills in the website's contact form: a lead, no staff involved."""

    def call(path: str, body: dict[str, str] | None = None) -> dict[str, object]:
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            f"{server.base_url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"content-type": "application/json"},
            method="POST" if body is not None else "GET",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            loaded: dict[str, object] = json.loads(answer.read() or b"{}")
            return loaded

    token = call("/api/v1/public/leads/form-token")
    time.sleep(1.1)  # a person takes at least the form's minimum fill time
    call(
        "/api/v1/public/leads",
        {
            "first_name": "Ottoline",
            "last_name": "Winterbottom",
            "email": email,
            "message": "Please call about brass bellows",
            "website": "",
            "form_token": str(token["form_token"]),
        },
    )


def test_a_lead_from_the_web_form_signs_in_downloads_and_asks_for_erasure(
    page: Page, consentry: LiveServer, mailbox: LocalSmtp
) -> None:
    address = f"ottoline.{uuid.uuid4().hex[:8]}@example.org"
    submit_the_web_form(consentry, address)

    page.goto("/portal")
    page.get_by_label("Your e-mail address").fill(address)
    page.get_by_role("button", name="Send me a sign-in link").click()
    mails = received_by(mailbox, address)
    assert len(mails) == 1
    link = ENTER_LINK.search(mails[0].text)
    assert link, mails[0].text
    page.goto(link.group(1))
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(path_is("/portal/home"))

    with page.expect_download() as download:
        page.get_by_role("button", name="Download my data").click()
    path = download.value.path()
    with zipfile.ZipFile(path) as bundle:
        data = json.loads(bundle.read("data.json"))
    (lead,) = data["records"]["lead"]
    assert (lead["email"], lead["message"]) == (address, "Please call about brass bellows")

    page.goto("/portal/home")
    page.get_by_role("button", name="Erase my data").click()
    page.get_by_role("button", name="Yes, erase my data").click()
    expect(page.get_by_role("heading", name="Request received")).to_be_visible()
    consentry.assert_alive()
