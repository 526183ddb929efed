"""Segments and campaigns in a real browser: an admin builds a segment by ticking a stage,
makes an e-mail campaign for it, sees how many people it will reach (and how many are
left out for lack of consent), confirms and sends; the messages arrive at a real SMTP
server, only to the people who consented.

Consent is recorded as an operator would: a privacy notice published on the consent
pages, then evidence imported with ``consentry consent import``.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import mail_settings, served
from tests.browser.flows import confirm_identity_if_asked, expect, first_admin_sign_in
from tests.browser.live_server import LiveServer
from tests.server.test_mail import LocalSmtp, local_smtp

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Page

MAIL_TIMEOUT_SECONDS = 10.0


@pytest.fixture(scope="module")
def mailbox() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture(scope="module")
def consentry(tmp_path_factory: pytest.TempPathFactory, mailbox: LocalSmtp) -> Iterator[LiveServer]:
    """Like the package's server, with outgoing mail going to the local SMTP server."""
    with served(tmp_path_factory, "consentry-campaigns", mail_settings(mailbox)) as server:
        yield server


def test_a_segment_and_a_campaign_are_built_previewed_and_sent(
    page: Page, consentry: LiveServer, mailbox: LocalSmtp
) -> None:
    admin = consentry.create_staff("admin")
    authenticator = first_admin_sign_in(page, admin)

    # A privacy notice, so consent can be recorded against it.
    page.goto("/compliance/consent/notices")
    page.get_by_label("Title").fill("Privacy notice")
    page.get_by_label("Notice text").fill("We send offers only to people who ask for them.")
    page.get_by_role("button", name="Publish version 1").click()
    if confirm_identity_if_asked(page, admin, authenticator):
        page.get_by_role("button", name="Publish version 1").click()

    tag = uuid.uuid4().hex[:6]
    addresses = [f"{name}.{tag}@example.net" for name in ("ada", "bo", "cy")]
    for address, first in zip(addresses, ("Ada", "Bo", "Cy"), strict=True):
        created = page.request.post(
            "/api/v1/contacts",
            data={
                "first_name": first,
                "last_name": "Tester",
                "email": address,
                "lifecycle_stage": "prospect",
            },
        )
        assert created.status == 201, created.text()
    # Ada and Bo signed up for the newsletter; Cy never did.
    evidence = consentry.home / "consent.csv"
    evidence.write_text(
        "email,purpose,channel,consented_at,source,notice_version\n"
        + "".join(f"{a},marketing_email,email,2026-01-05,web_form,1\n" for a in addresses[:2])
    )
    consentry.cli("consent", "import", str(evidence))

    page.goto("/")
    page.get_by_role("link", name="Campaigns", exact=True).click()
    page.get_by_role("button", name="New segment").click()
    page.get_by_role("textbox", name="Name").fill("Newsletter prospects")
    page.get_by_role("group", name="Lifecycle stage").get_by_label("Prospect").check()
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("status")).to_contain_text("Segment saved.")
    expect(page.get_by_role("heading", name="Members now: 3")).to_be_visible()

    page.get_by_role("button", name="New campaign for this segment").click()
    page.get_by_role("textbox", name="Name").fill("Spring newsletter")
    expect(page.get_by_label("E-mail (marketing_email)", exact=False)).to_be_checked()
    page.get_by_label("E-mail subject line").fill("Spring is here")
    page.get_by_label("E-mail text").fill("Hello {first_name},\n\nOur spring offer.")
    page.get_by_role("button", name="Save draft").click()

    expect(page.locator("[data-segment-size]")).to_have_text("3")
    expect(page.locator("[data-excluded]")).to_have_text("1")
    expect(page.locator("[data-audience-size]")).to_have_text("2")
    page.get_by_label("Send this e-mail to 2 people now").check()
    page.get_by_role("button", name="Send to 2 people").click()

    expect(page.get_by_role("status")).to_contain_text("Sent to 2 people.")
    expect(page.locator("[data-status]")).to_have_text("Sent")
    deadline = time.monotonic() + MAIL_TIMEOUT_SECONDS
    while time.monotonic() < deadline and len(mailbox.received) < 2:
        time.sleep(0.1)
    got = sorted(r for m in mailbox.received for r in m.recipients if tag in r)
    assert got == sorted(addresses[:2])
    consentry.assert_alive()
