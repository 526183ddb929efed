"""The person's side of the audit trail in a real browser: "who looked at my data" with a
download of proofs, a receipt download, and lifting an objection on the preference centre.

Each downloaded file is checked with ``audit/standalone_verify.py`` against the public key
the portal serves, as the portal's how-to page tells the person to do. The server is the
portal module's (outgoing mail to a local SMTP server, public links to itself).
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from audit import standalone_verify
from tests.browser import test_portal as portal_pages
from tests.browser.flows import expect, path_is
from tests.browser.test_portal import ENTER_LINK, received_by

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.browser.live_server import LiveServer
    from tests.server.test_mail import LocalSmtp


# The portal module's server (mail to a local SMTP server) and mailbox, one per module.
mailbox = portal_pages.mailbox
consentry = portal_pages.consentry


class Rep:
    """A sales rep working through the API with their own cookie jar."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.login = server.create_staff("sales")
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.call(
            "POST",
            "/api/v1/auth/login",
            {"email": self.login.email, "password": self.login.password},
        )

    def call(self, method: str, path: str, body: dict[str, str] | None = None) -> dict[str, object]:
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            f"{self.server.base_url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method=method,
        )
        with self.opener.open(request, timeout=10) as answer:
            assert answer.status in (200, 201), answer.status
            loaded: dict[str, object] = json.loads(answer.read() or b"{}")
            return loaded


def sign_in(page: Page, mailbox: LocalSmtp, address: str) -> None:
    page.goto("/portal")
    page.get_by_label("Your e-mail address").fill(address)
    page.get_by_role("button", name="Send me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    mails = received_by(mailbox, address)
    link = ENTER_LINK.search(mails[-1].text)
    assert link, mails[-1].text
    page.goto(link.group(1))
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(path_is("/portal/home"))


def verified(page: Page, tmp_path: Path, document: Path) -> int:
    """The standalone verifier's verdict on ``document``, with the portal's public key."""
    key = page.request.get("/portal/public-key")
    assert key.ok
    key_file = tmp_path / "consentry-audit.pub"
    key_file.write_bytes(key.body())
    return standalone_verify.main(["--proofs", str(document), "--public-key", str(key_file)])


def test_the_access_page_lists_a_reps_read_and_its_proofs_verify(
    page: Page, consentry: LiveServer, mailbox: LocalSmtp, tmp_path: Path
) -> None:
    address = f"ada.{uuid.uuid4().hex[:8]}@example.org"
    rep = Rep(consentry)
    created = rep.call(
        "POST", "/api/v1/contacts", {"first_name": "Ada", "last_name": "Byron", "email": address}
    )
    sign_in(page, mailbox, address)
    rep.call("GET", f"/api/v1/contacts/{created['id']}")  # the rep looks at her

    page.get_by_role("link", name="Who looked at my data").click()
    expect(page.get_by_role("heading", name="Who looked at your data")).to_be_visible()
    read = page.get_by_role("row").filter(has_text="Looked at your record")
    expect(read.first).to_contain_text("sales #")
    expect(page.get_by_text(rep.login.email)).to_have_count(0)
    # The newest line is this very visit, recorded under the person.
    expect(page.get_by_role("row").nth(1)).to_contain_text("Viewed this page")
    expect(page.get_by_role("row").nth(1)).to_contain_text("you")

    with page.expect_download() as started:
        page.get_by_role("button", name="Download with proofs").click()
    proofs = tmp_path / "my-access-proofs.json"
    started.value.save_as(proofs)
    assert started.value.suggested_filename == "my-access-proofs.json"
    assert verified(page, tmp_path, proofs) == 0

    with page.expect_download() as one:
        read.first.get_by_role("button").click()
    single = tmp_path / "one-proof.json"
    one.value.save_as(single)
    assert len(json.loads(single.read_text())["proofs"]) == 1
    assert verified(page, tmp_path, single) == 0

    page.get_by_role("link", name="check it yourself").click()
    expect(page.get_by_role("heading", name="How to check what we tell you")).to_be_visible()
    expect(page.get_by_text("--proofs my-access-proofs.json")).to_be_visible()
    consentry.assert_alive()


def test_the_person_lifts_an_objection_and_downloads_its_receipt(
    page: Page, consentry: LiveServer, mailbox: LocalSmtp, tmp_path: Path
) -> None:
    address = f"grace.{uuid.uuid4().hex[:8]}@example.org"
    Rep(consentry).call(
        "POST", "/api/v1/contacts", {"first_name": "Grace", "last_name": "Hopper", "email": address}
    )
    sign_in(page, mailbox, address)

    page.get_by_role("link", name="Manage my consents").click()
    expect(page.get_by_role("heading", name="Your privacy choices")).to_be_visible()
    page.get_by_role("button", name="Object to all direct marketing").click()
    expect(page.get_by_text("Objection recorded: direct marketing")).to_be_visible()
    page.get_by_role("button", name="Lift my objection to direct marketing").click()
    expect(page.get_by_text("Objection lifted: direct marketing")).to_be_visible()
    expect(page.get_by_role("button", name="Object to all direct marketing")).to_be_visible()

    page.goto("/portal/home")
    page.get_by_role("link", name="My receipts").click()
    expect(page.get_by_role("heading", name="Your receipts")).to_be_visible()
    rows = page.get_by_role("row").filter(has_text="direct marketing")
    expect(rows).to_have_count(2)
    lifted = rows.filter(has_text="Objection lifted")
    with page.expect_download() as started:
        lifted.get_by_role("button", name="Download the receipt").click()
    receipt_file = tmp_path / "receipt.json"
    started.value.save_as(receipt_file)
    receipt = json.loads(receipt_file.read_text())
    assert receipt["what"] == "Objection lifted: purpose direct_marketing"
    assert [e["action"] for e in receipt["audit_events"]] == ["consent.lift_objection"]
    assert verified(page, tmp_path, receipt_file) == 0
    consentry.assert_alive()
