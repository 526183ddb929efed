"""Signing in and out in a real browser: second factor, lockout, logout, keyboard only.

The HTTP-level tests (tests/admin_ui/test_admin_ui.py) prove the server's answers; these prove that
a person with a browser gets through: cookies, redirects, autofocus and forms together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.flows import (
    enrol_authenticator,
    expect,
    path_is,
    sign_in,
    sign_in_fully,
)
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page

THROTTLED = "Too many failed sign-in attempts. Try again in 1 minute."


def test_admin_enrols_totp_at_first_sign_in_then_signs_in_with_a_code(
    page: Page, consentry: LiveServer
) -> None:
    """Admins may do nothing before they have a second factor; afterwards every sign-in
    asks for a code. The key is read from the page, as someone who cannot scan would."""
    admin = consentry.create_staff("admin")

    sign_in(page, admin)
    expect(page).to_have_url(path_is("/account/security"))
    expect(page.get_by_text("Your role requires two-factor authentication")).to_be_visible()
    page.goto("/contacts")  # nothing else is reachable before enrolment
    expect(page).to_have_url(path_is("/account/security"))

    authenticator = enrol_authenticator(page)
    assert len(authenticator.recovery_codes) == 10
    expect(page.get_by_text(admin.email)).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()

    sign_in(page, admin)
    expect(page).to_have_url(path_is("/login/code"))
    page.goto("/contacts")  # a password alone is not a sign-in
    expect(page).to_have_url(path_is("/login/code"))
    page.get_by_label("Code from your authenticator app").fill("000000")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("That code is not valid")
    page.get_by_label("Code from your authenticator app").fill(authenticator.code())
    page.get_by_role("button", name="Continue").click()
    # Signed in, on the page asked for before the code.
    expect(page).to_have_url(path_is("/contacts"))
    expect(page.get_by_role("heading", name="Contacts", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Users")).to_be_visible()


def test_five_wrong_passwords_lock_the_account_and_are_audited(
    page: Page, consentry: LiveServer
) -> None:
    """After the fifth failure even the right password is refused with a clear message,
    and the database's audit table holds every attempt."""
    user = consentry.create_staff("sales")

    for attempt in range(1, 6):
        sign_in(page, user, password=f"not the password {attempt}")
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text(THROTTLED if attempt == 5 else "Invalid e-mail or password.")
        expect(page.get_by_label("E-mail address")).to_have_value(user.email)

    sign_in(page, user)  # the right password, too late
    expect(page.get_by_role("alert")).to_contain_text(THROTTLED)
    expect(page).to_have_url(path_is("/login"))
    page.goto("/")
    expect(page).to_have_url(path_is("/login"))
    expect(page.get_by_role("heading", name="Dashboard")).to_have_count(0)

    logins = consentry.audit_events(user.actor_id, "login")
    assert [(e.outcome, e.reason) for e in logins] == [("denied", "bad_credentials")] * 5 + [
        ("denied", "throttled")
    ]
    assert logins[4].detail == {"locked_seconds": 60}  # the fifth failure set the lock


def test_sign_out_ends_the_session_on_the_server(
    page: Page, consentry: LiveServer, other_browser: Callable[..., Page]
) -> None:
    """Signing out deletes the session, not just the cookie: a copy of the old cookie
    (say, from another tab or a stolen laptop) no longer opens any page."""
    user = consentry.create_staff("sales")
    sign_in_fully(page, user)
    page.goto("/contacts")
    expect(page.get_by_role("heading", name="Contacts", level=1)).to_be_visible()
    old_cookies = page.context.cookies()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(path_is("/login"))
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    page.go_back()  # the history may still show the contact list ...
    page.reload()  # ... but asking the server again finds no session
    expect(page).to_have_url(f"{consentry.base_url}/login?next=/contacts")
    page.goto("/contacts")
    expect(page).to_have_url(f"{consentry.base_url}/login?next=/contacts")

    replay = other_browser()
    replay.context.add_cookies(old_cookies)  # type: ignore[arg-type]  # Cookie is a SetCookieParam
    replay.goto("/contacts")
    expect(replay).to_have_url(path_is("/login"))


def test_the_sign_in_form_works_with_the_keyboard_alone(page: Page, consentry: LiveServer) -> None:
    """Tab and Enter are enough: the e-mail field has focus (or is reached with Tab), Tab
    moves to the password, Enter submits."""
    user = consentry.create_staff("support")
    page.goto("/login")
    for _ in range(10):  # skip link, brand link ... as a keyboard user would
        if page.evaluate("document.activeElement && document.activeElement.id") == "email":
            break
        page.keyboard.press("Tab")
    expect(page.get_by_label("E-mail address")).to_be_focused()
    page.keyboard.type(user.email)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(user.password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.get_by_text("role support")).to_be_visible()
