"""Steps a staff member takes in the browser, shared by the tests.

Everything is found the way a person finds it: by label, role and visible text, so the
tests also check that the forms are labelled. The Playwright import is guarded: without
the package these modules still import, and the tests are skipped (or, under CI, fail)
by ``conftest.py`` with the reason.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyotp

from tests.browser.live_server import StaffLogin

try:
    from playwright.sync_api import expect
except ImportError:  # conftest.py skips or fails every browser test with the reason
    expect = None  # type: ignore[assignment]  # never called: no browser test runs then

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = [
    "NEW_PASSWORD",
    "Authenticator",
    "confirm_identity_if_asked",
    "enrol_authenticator",
    "expect",
    "first_admin_sign_in",
    "path_is",
    "sign_in",
    "sign_in_fully",
]

STEP_SECONDS = 30
NEW_PASSWORD = "quiet orchard lantern ninety"  # what a new user chooses on the reset page


def path_is(path: str) -> re.Pattern[str]:
    """Matches a page URL by its path (and nothing after it but a query)."""
    return re.compile(rf"^https?://[^/]+{re.escape(path)}(\?.*)?$")


@dataclass
class Authenticator:
    """The staff member's authenticator app: the secret typed in from the enrolment page.

    The server refuses a code whose 30-second step is not later than the last accepted
    one (no replays), and accepts one step of drift. So each code is for the current
    step, or the step after the last one used - waiting only if that is still too early.
    """

    secret: str
    last_step: int = -1
    recovery_codes: list[str] = field(default_factory=list)

    def code(self) -> str:
        step = max(int(time.time() // STEP_SECONDS), self.last_step + 1)
        early = step * STEP_SECONDS - STEP_SECONDS - time.time()  # accepted from step-1
        if early > 0:
            time.sleep(early + 0.5)
        self.last_step = step
        return pyotp.TOTP(self.secret).at(step * STEP_SECONDS)


def sign_in(page: Page, login: StaffLogin, *, password: str | None = None) -> None:
    """Fill in and send the password form (the caller checks where it leads)."""
    page.goto("/login")
    page.get_by_label("E-mail address").fill(login.email)
    page.get_by_label("Password").fill(password or login.password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def sign_in_fully(
    page: Page, login: StaffLogin, authenticator: Authenticator | None = None
) -> None:
    """Password, then the authenticator code if asked for one; ends on the dashboard."""
    sign_in(page, login)
    if authenticator is not None:
        expect(page).to_have_url(path_is("/login/code"))
        page.get_by_label("Code from your authenticator app").fill(authenticator.code())
        page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


def enrol_authenticator(page: Page) -> Authenticator:
    """On the enrolment page: read the key shown for people who cannot scan the QR code,
    confirm a first code, keep the recovery codes, continue to the dashboard."""
    expect(page).to_have_url(path_is("/account/security"))
    qr = page.get_by_role("img", name=re.compile("QR code"))
    expect(qr).to_be_visible()
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    authenticator = Authenticator(secret)
    page.get_by_label("Enter the 6-digit code the app shows").fill(authenticator.code())
    page.get_by_role("button", name="Turn on two-factor authentication").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    authenticator.recovery_codes = page.locator(".recovery-codes code").all_inner_texts()
    page.get_by_role("button", name="I have saved them: continue").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    return authenticator


def first_admin_sign_in(page: Page, admin: StaffLogin) -> Authenticator:
    """An admin's first sign-in: the password leads straight to the forced enrolment."""
    sign_in(page, admin)
    return enrol_authenticator(page)


def confirm_identity_if_asked(
    page: Page, login: StaffLogin, authenticator: Authenticator | None
) -> bool:
    """Answer ``/reauth`` (password and code) if a sensitive action led there."""
    if "/reauth" not in page.url:
        return False
    page.get_by_label("Password").fill(login.password)
    if authenticator is not None:
        page.get_by_label("Authenticator code").fill(authenticator.code())
    page.get_by_role("button", name="Confirm").click()
    expect(page).not_to_have_url(path_is("/reauth"))
    return True
