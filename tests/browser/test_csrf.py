"""Forged form posts, as a browser really sends them, change nothing.

A second local web server plays the attacker's site. Reached as ``127.0.0.1:<other
port>`` it is a different origin but the same site, so the browser sends Consentry's
SameSite=Lax cookies with the forged post and only the CSRF token stands in the way.
Reached as ``localhost:<other port>`` it is another site, and the cookies stay home.
"""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from server.web import SESSION_COOKIE
from tests.browser.flows import expect, path_is, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Page, Response

FORGED_NAME = "Forged"


def forged_form(action: str, fields: dict[str, str]) -> bytes:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    return (
        "<!doctype html><title>You have won</title>"
        f'<form method="post" action="{html.escape(action)}">{inputs}'
        "<button>Claim your prize</button></form>"
    ).encode()


class AttackerSite:
    """A tiny web server whose pages hold forms that post to Consentry."""

    def __init__(self, target: str) -> None:
        pages = {
            "/create-contact": forged_form(
                f"{target}/contacts/new", {"first_name": FORGED_NAME, "last_name": "Contact"}
            ),
            "/sign-out": forged_form(f"{target}/logout", {}),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"not found")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.paths = list(pages)


@pytest.fixture(scope="module")
def attacker(consentry: LiveServer) -> Iterator[AttackerSite]:
    site = AttackerSite(consentry.base_url)
    site.thread.start()
    try:
        yield site
    finally:
        site.httpd.shutdown()
        site.httpd.server_close()


def submit_forged(page: Page, url: str) -> Response:
    """Open the attacker's page and press its button; the answer to the forged post."""
    page.goto(url)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Claim your prize").click()
    return answer.value


def carried_session(response: Response) -> bool:
    return f"{SESSION_COOKIE}=" in (response.request.all_headers().get("cookie") or "")


def assert_no_contacts(page: Page) -> None:
    page.goto("/contacts")
    expect(page.get_by_role("heading", name="Contacts", level=1)).to_be_visible()
    expect(page.locator("#results").get_by_role("heading", level=2)).to_have_text("0 contacts")
    expect(page.get_by_text(FORGED_NAME)).to_have_count(0)


def test_forms_posted_from_another_origin_are_refused(
    page: Page, consentry: LiveServer, attacker: AttackerSite
) -> None:
    """While signed in, visiting a hostile page that posts a new contact, or signs the
    user out, achieves nothing: no contact appears and the session survives."""
    user = consentry.create_staff("sales")
    sign_in_fully(page, user)

    for path in attacker.paths:
        # Same site, other origin: the cookies go along, only the token is missing.
        answer = submit_forged(page, f"http://127.0.0.1:{attacker.port}{path}")
        assert carried_session(answer), "the browser did not send the session cookie"
        assert answer.status == 403, f"{path}: {answer.status}"
        expect(page.get_by_role("heading", name="Form expired")).to_be_visible()

        # Another site: SameSite=Lax keeps the cookies home, so there is no session.
        answer = submit_forged(page, f"http://localhost:{attacker.port}{path}")
        assert not carried_session(answer), "SameSite=Lax cookie sent cross-site"
        to_sign_in = answer.status == 303 and answer.headers["location"].startswith("/login")
        assert answer.status == 403 or to_sign_in, f"{path}: {answer.status}"

    assert_no_contacts(page)  # still signed in (the forged sign-out failed), nothing created
    expect(page).to_have_url(path_is("/contacts"))


def test_a_tampered_csrf_token_is_refused(page: Page, consentry: LiveServer) -> None:
    """The real form, from the real page, with its hidden token altered: 403, and the
    contact is not created. The same form with the genuine token is accepted, so it
    was the token that was refused."""
    user = consentry.create_staff("sales")
    sign_in_fully(page, user)

    def fill_new_contact() -> None:
        page.goto("/contacts/new")
        page.get_by_label("First name").fill(FORGED_NAME)
        page.get_by_label("Last name").fill("Contact")

    fill_new_contact()
    token = page.locator('form[action="/contacts/new"] input[name="_csrf_token"]')
    genuine = token.input_value()
    tampered = genuine[:-4] + ("BBBB" if genuine.endswith("AAAA") else "AAAA")
    token.evaluate("(input, value) => { input.value = value }", tampered)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Save contact").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="Form expired")).to_be_visible()
    assert_no_contacts(page)

    fill_new_contact()
    page.get_by_role("button", name="Save contact").click()
    expect(page.get_by_role("status")).to_contain_text("Contact created.")
