"""The staff web admin (admin_ui): sign-in, CSRF, headers, record pages, accounts.

These drive the server-rendered pages with an HTTP client, as a browser without
JavaScript would: GET a page, read the CSRF token from its form, POST the form.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import pyotp
import pytest
from httpx import AsyncClient, Response

from admin_ui import plugin
from audit.tables import AuditRecord
from server.app import create_app
from server.auth.service import StaffIdentity
from server.auth.tables import StaffSession, StaffUser
from server.services import Services, build_services
from server.settings import Settings
from server.web import SESSION_COOKIE
from tests.conftest import PASSWORD, Staff, contact_values, http_client

CSRF_INPUT = re.compile(r'name="_csrf_token" value="([^"]+)"')
NEW_PASSWORD = "quiet orchard lantern ninety"


def csrf_of(page: Response) -> str:
    match = CSRF_INPUT.search(page.text)
    assert match, f"no CSRF token on {page.url}"
    return html.unescape(match.group(1))


async def submit(
    client: AsyncClient, form_page: str, action: str, data: dict[str, Any] | None = None
) -> Response:
    """Open ``form_page`` and post ``data`` to ``action`` with the page's CSRF token."""
    page = await client.get(form_page)
    assert page.status_code == 200, (form_page, page.status_code, page.text[:500])
    return await client.post(action, data={**(data or {}), "_csrf_token": csrf_of(page)})


def first_match(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, pattern
    return match.group(1)


def location(response: Response) -> str:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return response.headers["location"]


def text_of(page: Response) -> str:
    """The visible text of a page, whitespace collapsed (for message assertions)."""
    body = re.sub(r"<[^>]+>", " ", page.text)
    return " ".join(html.unescape(body).split())


async def web_login(staff: Staff, identity: StaffIdentity, password: str = PASSWORD) -> AsyncClient:
    """Sign in through the pages (password, then the code for users with a second factor)."""
    client = http_client(staff.app)
    staff.clients.append(client)
    response = await submit(
        client, "/login", "/login", {"email": identity.email, "password": password, "next": "/"}
    )
    target = location(response)
    if identity.user_id in staff.totp_secrets:
        assert target.startswith("/login/code")
        response = await submit(
            client, target, "/login/code", {"code": await staff.code_for(identity), "next": "/"}
        )
        target = location(response)
    assert target == "/"
    return client


async def audit_actions(*actions: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await AuditRecord.select()
        .where(AuditRecord.action.is_in(list(actions)))
        .order_by(AuditRecord.seq)
    )
    return rows


async def contact_count(services: Services, staff: Staff) -> int:
    system = staff.actor(await staff.create("admin", email=None))
    return (await services.gateway.list(system, "contact", page=1, page_size=1)).total


def sales_contact(**overrides: Any) -> dict[str, Any]:
    """Contact values a sales user may write (sales may not set birth dates)."""
    values = contact_values(**overrides)
    values.pop("birth_date")
    return values


async def account_of(staff: Staff, user_id: int) -> StaffIdentity:
    found = await staff.services.accounts.get_user(user_id)
    assert found is not None
    return found[0]


def session_token(client: AsyncClient) -> str:
    return client.cookies.get(SESSION_COOKIE) or ""


# --- signing in -----------------------------------------------------------------------------------


async def test_login_with_password_then_code(staff: Staff) -> None:
    admin = await staff.create("admin")
    client = http_client(staff.app)
    staff.clients.append(client)

    page = await client.get("/login")
    assert page.status_code == 200
    assert '<label for="email">' in page.text
    assert '<label for="password">' in page.text

    response = await client.post(
        "/login",
        data={"email": admin.email, "password": PASSWORD, "_csrf_token": csrf_of(page)},
    )
    assert location(response) == "/login/code"
    half_signed_in = session_token(client)
    assert half_signed_in

    # Between the password and the code, nothing but the code page is reachable.
    for url in ("/", "/contacts", "/account", "/admin/users"):
        assert (await client.get(url)).headers["location"].startswith("/login/code")

    wrong = await submit(client, "/login/code", "/login/code", {"code": "000000", "next": "/"})
    assert wrong.status_code == 400
    assert "That code is not valid" in text_of(wrong)
    assert 'role="alert"' in wrong.text

    right = await submit(
        client, "/login/code", "/login/code", {"code": await staff.code_for(admin), "next": "/"}
    )
    assert location(right) == "/"
    assert session_token(client) not in ("", half_signed_in)  # a fresh session id
    dashboard = await client.get("/")
    assert dashboard.status_code == 200
    assert "Dashboard" in dashboard.text
    assert admin.email in dashboard.text
    # The code page is only for a half-finished sign-in.
    assert location(await client.get("/login/code")) == "/"


@pytest.mark.parametrize("password_each_time", [True, False], ids=["password-again", "code-page"])
async def test_wrong_codes_on_the_code_page_lock_like_wrong_passwords(
    staff: Staff, password_each_time: bool
) -> None:
    """Issue 14: the password step reset the count, so codes could be guessed without end.

    Either way a browser may go: the password again before every code, or code after code
    on one half-signed-in session.
    """
    admin = await staff.create("admin")
    client = http_client(staff.app)
    staff.clients.append(client)
    sign_in = {"email": admin.email, "password": PASSWORD, "next": "/"}
    answers = []
    for attempt in range(5):
        if password_each_time or attempt == 0:
            assert location(await submit(client, "/login", "/login", sign_in)) == "/login/code"
        code = {"code": staff.wrong_code_for(admin), "next": "/"}
        answers.append(await submit(client, "/login/code", "/login/code", code))
    assert [a.status_code for a in answers] == [400] * 4 + [429]
    assert int(answers[-1].headers["retry-after"]) > 0
    assert "Too many failed sign-in attempts" in text_of(answers[-1])
    assert 'role="alert"' in answers[-1].text

    # the locked account gets no further: not the right code, not the password again
    right = {"code": await staff.code_for(admin), "next": "/", "_csrf_token": csrf_of(answers[-1])}
    assert (await client.post("/login/code", data=right)).status_code == 429
    again = await submit(client, "/login", "/login", sign_in)
    assert again.status_code == 429
    assert "Too many failed sign-in attempts" in text_of(again)
    refused = await audit_actions("login.second_factor")
    assert [r["reason"] for r in refused] == ["bad_code"] * 5 + ["throttled"]
    assert all(admin.email not in repr(r) for r in refused)


async def test_wrong_password_and_unknown_user_get_the_same_answer(staff: Staff) -> None:
    user = await staff.create("sales")
    client = http_client(staff.app)
    staff.clients.append(client)
    wrong = await submit(client, "/login", "/login", {"email": user.email, "password": "nope!"})
    unknown = await submit(
        client, "/login", "/login", {"email": "nobody@staff.example.com", "password": "nope!"}
    )
    assert wrong.status_code == unknown.status_code == 400
    assert "Invalid e-mail or password." in text_of(wrong)
    assert text_of(wrong).replace(user.email, "X") == text_of(unknown).replace(
        "nobody@staff.example.com", "X"
    )
    assert SESSION_COOKIE not in client.cookies


async def test_lockout_after_five_wrong_passwords(staff: Staff) -> None:
    user = await staff.create("sales")
    client = http_client(staff.app)
    staff.clients.append(client)
    answers = [
        await submit(client, "/login", "/login", {"email": user.email, "password": f"wrong {i}"})
        for i in range(5)
    ]
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 429]
    assert "Too many failed sign-in attempts. Try again in 1 minute." in text_of(answers[-1])
    assert answers[-1].headers["retry-after"]

    # Locked: even the right password is refused, with the same message.
    locked = await submit(client, "/login", "/login", {"email": user.email, "password": PASSWORD})
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in text_of(locked)
    assert SESSION_COOKIE not in client.cookies
    denials = [r for r in await audit_actions("login") if r["outcome"] == "denied"]
    assert any('"locked_seconds": 60' in r["detail"] for r in denials)
    assert any(r["reason"] == "throttled" for r in denials)


async def test_next_is_followed_only_to_local_paths(staff: Staff) -> None:
    user = await staff.create("sales")
    client = http_client(staff.app)
    staff.clients.append(client)
    assert location(await client.get("/contacts?page=2")) == "/login?next=/contacts%3Fpage%3D2"
    page = await client.get("/login?next=/contacts%3Fpage%3D2")
    assert 'name="next" value="/contacts?page=2"' in page.text
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        response = await submit(
            client, "/login", "/login", {"email": user.email, "password": PASSWORD, "next": evil}
        )
        assert location(response) == "/"
        await submit(client, "/account", "/logout")
    response = await submit(
        client,
        "/login",
        "/login",
        {"email": user.email, "password": PASSWORD, "next": "/contacts?page=2"},
    )
    assert location(response) == "/contacts?page=2"


async def test_logout_and_logout_everywhere(staff: Staff) -> None:
    user = await staff.create("sales")
    laptop = await web_login(staff, user)
    phone = await web_login(staff, user)

    account = await laptop.get("/account")
    assert account.status_code == 200
    assert text_of(account).count("This session") == 1
    assert len(re.findall(r'action="/account/sessions/\d+/end"', account.text)) == 1

    # End the phone's session from the laptop.
    ended = await submit(
        laptop,
        "/account",
        re.findall(r'action="(/account/sessions/\d+/end)"', account.text)[0],
    )
    assert location(ended) == "/account"
    assert "Session ended." in text_of(await laptop.get("/account"))
    assert location(await phone.get("/")) == "/login"

    phone = await web_login(staff, user)
    everywhere = await submit(laptop, "/account", "/logout/everywhere")
    assert location(everywhere) == "/login?notice=signed_out"
    assert SESSION_COOKIE not in laptop.cookies
    for client in (laptop, phone):
        assert (await client.get("/contacts")).status_code == 303
    assert "You have signed out." in text_of(await laptop.get("/login?notice=signed_out"))

    again = await web_login(staff, user)
    bye = await submit(again, "/", "/logout")
    assert location(bye) == "/login?notice=signed_out"
    assert (await again.get("/")).status_code == 303
    assert [r["reason"] for r in await audit_actions("logout")] == [
        "ended_by_user",
        "everywhere",
        "allowed",
    ]


# --- second factor --------------------------------------------------------------------------------


async def test_totp_enrolment_is_required_for_admins_and_shows_recovery_codes(
    staff: Staff, services: Services
) -> None:
    admin = await staff.create("admin", totp=False)
    client = http_client(staff.app)
    staff.clients.append(client)
    response = await submit(
        client, "/login", "/login", {"email": admin.email, "password": PASSWORD}
    )
    assert location(response) == "/account/security"
    for url in ("/", "/contacts", "/admin/users", "/account"):
        assert location(await client.get(url)) == "/account/security"

    page = await client.get("/account/security")
    assert page.status_code == 200
    assert '<img class="qr" src="data:image/svg+xml' in page.text
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text)
    assert secret
    key = secret.group(1).replace(" ", "")
    sealed = html.unescape(first_match(r'name="pending" value="([^"]+)"', page.text))
    assert key not in sealed

    # A forged or foreign pending secret is refused.
    forged = await client.post(
        "/account/security",
        data={"pending": "cs1.0.AAAA", "code": "123456", "_csrf_token": csrf_of(page)},
    )
    assert forged.status_code == 400
    assert "This set-up has expired" in text_of(forged)
    wrong = await client.post(
        "/account/security",
        data={"pending": sealed, "code": "000000", "_csrf_token": csrf_of(page)},
    )
    assert wrong.status_code == 400
    assert "That code did not match" in text_of(wrong)

    before = session_token(client)
    done = await client.post(
        "/account/security",
        data={"pending": sealed, "code": pyotp.TOTP(key).now(), "_csrf_token": csrf_of(page)},
    )
    assert done.status_code == 200, done.text
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", done.text)
    assert len(codes) == 10
    assert session_token(client) not in ("", before)
    assert (await client.get("/contacts")).status_code == 200
    assert await services.accounts.remaining_recovery_codes(admin.user_id) == 10
    assert [r["outcome"] for r in await audit_actions("user.totp_enrol")] == [
        "denied",
        "allowed",
    ]

    # Next sign-in needs the second factor; a recovery code works exactly once.
    await submit(client, "/", "/logout")
    for attempt in range(2):
        response = await submit(
            client, "/login", "/login", {"email": admin.email, "password": PASSWORD}
        )
        assert location(response) == "/login/code"
        answer = await submit(client, "/login/code", "/login/code", {"code": codes[0]})
        if attempt == 0:
            assert location(answer) == "/"
            await submit(client, "/", "/logout")
        else:
            assert answer.status_code == 400


async def test_replacing_the_authenticator_needs_a_recent_password(staff: Staff) -> None:
    admin = await staff.create("admin")
    client = await web_login(staff, admin)
    status = await client.get("/account/security")
    assert "Two-factor authentication is <strong>on</strong>" in status.text
    assert (await client.get("/account/security?replace=1")).status_code == 200
    await StaffSession.update(
        {StaffSession.authenticated_at: dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)}
    ).where(StaffSession.user_id == admin.user_id)
    assert location(await client.get("/account/security?replace=1")) == (
        "/reauth?next=/account/security%3Freplace%3D1"
    )


# --- CSRF, headers, no state change on GET --------------------------------------------------------


async def test_forms_without_a_valid_csrf_token_are_refused(
    staff: Staff, services: Services
) -> None:
    user = await staff.create("sales")
    client = await web_login(staff, user)
    other = await web_login(staff, await staff.create("sales"))
    page = await client.get("/contacts/new")
    cookie = [c for c in page.headers.get_list("set-cookie") if c.startswith("consentry_csrf=")]
    assert cookie
    attributes = [a.strip().lower() for a in cookie[0].split(";")[1:]]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes

    values = {"first_name": "Ada", "last_name": "Lovelace"}
    stolen = csrf_of(await other.get("/contacts/new"))
    for token in (None, "", "0" * 128, stolen):
        data = values if token is None else {**values, "_csrf_token": token}
        refused = await client.post("/contacts/new", data=data)
        assert refused.status_code == 403
        assert "Form expired" in text_of(refused)
        assert refused.headers["x-frame-options"] == "DENY"
    assert await contact_count(services, staff) == 0

    # Signing out is a state change too.
    assert (await client.post("/logout")).status_code == 403
    assert (await client.get("/")).status_code == 200
    # The token may come as the header htmx sends.
    accepted = await client.post(
        "/contacts/new", data=values, headers={"x-csrftoken": csrf_of(page)}
    )
    assert location(accepted).startswith("/contacts/")
    assert await contact_count(services, staff) == 1
    # The JSON API is not covered by the form CSRF check (JSON bodies, SameSite cookies).
    api = await staff.login(user)
    assert (await api.post("/api/v1/contacts", json=values)).status_code == 201


HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}
ADMIN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)


def assert_secure_page(response: Response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (response.url, name)
    assert response.headers["content-security-policy"] == ADMIN_CSP, response.url
    if response.headers.get("content-type", "").startswith("text/html"):
        assert response.headers["cache-control"] == "no-store"
        assert not INLINE_SCRIPT.search(response.text), response.url
        assert " style=" not in response.text, response.url
        assert "<style" not in response.text, response.url
        assert "http://" not in response.text.replace("http://testserver", "")
        assert " on" + "click=" not in response.text


async def test_every_page_sends_the_security_headers(staff: Staff, services: Services) -> None:
    admin = await staff.create("admin")
    record = await services.gateway.create(staff.actor(admin), "contact", contact_values())
    org = await services.gateway.create(staff.actor(admin), "organization", {"name": "Acme"})
    anonymous = http_client(staff.app)
    staff.clients.append(anonymous)
    for url in ("/login", "/reset/nope", "/no/such/page", "/static/admin.css", "/contacts"):
        response = await anonymous.get(url)
        assert_secure_page(response)
    assert (await anonymous.get("/no/such/page")).status_code == 404
    client = await web_login(staff, admin)
    pages = [
        "/",
        "/contacts",
        "/contacts?lifecycle_stage=customer&page_size=10",
        "/contacts/new",
        f"/contacts/{record.id}",
        f"/contacts/{record.id}/edit",
        f"/contacts/{record.id}/delete",
        "/contacts/00000000-0000-0000-0000-000000000000",
        "/organizations",
        "/organizations/new",
        f"/organizations/{org.id}",
        "/account",
        "/account/security",
        "/account/security?replace=1",
        "/reauth?next=/",
        "/admin/users",
        "/admin/users/new",
        f"/admin/users/{admin.user_id}",
    ]
    for url in pages:
        response = await client.get(url)
        assert response.status_code in (200, 404), (url, response.status_code)
        assert_secure_page(response)
    refused = await client.post("/contacts/new", data={})
    assert refused.status_code == 403
    assert_secure_page(refused)
    api = await client.get("/api/v1/auth/me")
    assert api.status_code == 200
    assert api.headers["x-frame-options"] == "DENY"
    docs = await client.get("/schema/swagger")
    assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]


async def test_get_requests_change_nothing(staff: Staff, services: Services) -> None:
    admin = await staff.create("admin")
    sales = await staff.create("sales")
    record = await services.gateway.create(staff.actor(admin), "contact", contact_values())
    org = await services.gateway.create(staff.actor(admin), "organization", {"name": "Acme"})
    client = await web_login(staff, admin)

    async def snapshot() -> tuple[Any, ...]:
        users = await StaffUser.select().order_by(StaffUser.id)
        sessions = await StaffSession.select(
            StaffSession.id, StaffSession.user_id, StaffSession.token_hash
        ).order_by(StaffSession.id)
        contact = await services.gateway.read(staff.actor(admin), "contact", record.id)
        organization = await services.gateway.read(staff.actor(admin), "organization", org.id)
        writes = [
            r["action"]
            for r in await AuditRecord.select(AuditRecord.action)
            if r["action"] in ("create", "update", "delete") or r["action"].startswith("user.")
        ]
        return users, sessions, contact.values, organization.values, writes

    before = await snapshot()
    for url in (
        "/",
        "/contacts",
        "/contacts/new",
        f"/contacts/{record.id}",
        f"/contacts/{record.id}/edit",
        f"/contacts/{record.id}/delete",
        f"/organizations/{org.id}/delete",
        "/account",
        "/account/security?replace=1",
        "/admin/users",
        f"/admin/users/{sales.user_id}",
        "/admin/users/new",
        "/logout",
        "/logout/everywhere",
        f"/admin/users/{sales.user_id}/active",
        f"/admin/users/{sales.user_id}/reset",
        f"/contacts/{record.id}/delete?confirm=1",
    ):
        response = await client.get(url)
        assert response.status_code in (200, 404, 405), (url, response.status_code)
    assert await snapshot() == before


# --- what a role may see --------------------------------------------------------------------------


async def test_support_sees_birth_date_as_restricted_and_never_its_value(
    staff: Staff, services: Services
) -> None:
    admin = await staff.create("admin", team="north")
    support = await staff.create("support", team="north")
    record = await services.gateway.create(
        staff.actor(admin), "contact", contact_values(birth_date="1906-12-09")
    )
    client = await web_login(staff, support)

    detail = await client.get(f"/contacts/{record.id}")
    assert detail.status_code == 200
    assert re.search(r"<dt>Date of birth</dt>\s*<dd>\s*<span class=\"restricted\"", detail.text)
    assert "Restricted" in text_of(detail)
    assert "Grace" in detail.text  # the fields support may read are shown

    edit = await client.get(f"/contacts/{record.id}/edit")
    assert edit.status_code == 200
    assert 'name="birth_date"' not in edit.text
    assert 'name="notes"' not in edit.text  # readable, but support may not change notes
    assert "Your role cannot change: Notes." in text_of(edit)

    listing = await client.get("/contacts")
    search = await submit(client, "/contacts", "/contacts/search", {"q": record.values["email"]})
    assert search.status_code == 200
    assert record.id in search.text
    for page in (detail, edit, listing, search):
        assert "1906-12-09" not in page.text
        assert "1906" not in page.text
    assert "Delete" not in text_of(detail)  # support may not delete contacts
    assert (await client.get(f"/contacts/{record.id}/delete")).status_code == 404


async def test_marketing_sees_only_campaign_fields_and_cannot_edit(
    staff: Staff, services: Services
) -> None:
    admin = await staff.create("admin")
    record = await services.gateway.create(staff.actor(admin), "contact", contact_values())
    client = await web_login(staff, await staff.create("marketing"))
    detail = await client.get(f"/contacts/{record.id}")
    assert detail.status_code == 200
    assert "+442079460001" not in detail.text
    assert "Rear admiral" not in detail.text
    assert text_of(detail).count("Restricted") == 7  # phone, job, birth, street, city, post, notes
    assert "Edit" not in text_of(detail)
    assert (await client.get(f"/contacts/{record.id}/edit")).status_code == 404
    assert (await client.get("/contacts/new")).status_code == 403
    listing = await client.get("/contacts")
    assert "New contact" not in listing.text
    assert "Restricted" in text_of(listing)  # the phone column

    # Crafted posts are refused by the gateway, which audits the refusal.
    edit = await submit(
        client, f"/contacts/{record.id}", f"/contacts/{record.id}/edit", {"first_name": "X"}
    )
    assert edit.status_code == 404
    create = await submit(client, "/contacts", "/contacts/new", {"first_name": "X"})
    assert create.status_code == 403
    refusals = [r for r in await audit_actions("update", "create") if r["outcome"] == "denied"]
    assert [r["action"] for r in refusals] == ["update", "create"]
    stored = await services.gateway.read(staff.actor(admin), "contact", record.id)
    assert stored.values["first_name"] == "Grace"


# --- contact pages --------------------------------------------------------------------------------


async def test_create_edit_and_delete_a_contact_through_the_forms(
    staff: Staff, services: Services
) -> None:
    sales = await staff.create("sales")
    org = await services.gateway.create(staff.actor(sales), "organization", {"name": "Acme"})
    client = await web_login(staff, sales)

    form = await client.get("/contacts/new")
    assert form.status_code == 200
    for name in ("first_name", "last_name", "email", "phone", "notes", "organization_id"):
        assert f'<label for="field-{name}">' in form.text
        assert f'id="field-{name}"' in form.text
    assert 'type="email"' in form.text
    assert 'type="tel"' in form.text
    assert '<textarea id="field-notes"' in form.text
    assert '<select id="field-lifecycle_stage"' in form.text
    assert f'<option value="{org.id}">Acme</option>' in form.text
    assert 'maxlength="100"' in form.text
    assert "required" in form.text
    assert 'name="birth_date"' not in form.text  # sales may not write birth dates

    invalid = await client.post(
        "/contacts/new",
        data={
            "first_name": "Ada",
            "last_name": "",
            "email": "not-an-address",
            "country": "England",
            "_csrf_token": csrf_of(form),
        },
    )
    assert invalid.status_code == 400
    messages = text_of(invalid)
    assert "Last name is required." in messages
    assert "E-mail address: not a valid e-mail address." in messages
    assert "Country: longer than 2 characters." in messages
    assert 'role="alert"' in invalid.text
    assert 'value="Ada"' in invalid.text  # what was typed is kept
    assert 'aria-invalid="true"' in invalid.text
    assert await contact_count(services, staff) == 0

    created = await client.post(
        "/contacts/new",
        data={
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "Ada@Example.org",
            "phone": "+44 20 7946 0002",
            "job_title": "",
            "organization_id": org.id,
            "lifecycle_stage": "lead",
            "_csrf_token": csrf_of(form),
        },
    )
    detail_url = location(created)
    contact_id = detail_url.rsplit("/", 1)[1]
    detail = await client.get(detail_url)
    assert "Contact created." in text_of(detail)
    assert "ada@example.org" in detail.text
    assert f'href="/organizations/{org.id}">Acme</a>' in detail.text
    stored = await services.gateway.read(staff.actor(sales), "contact", contact_id)
    assert stored.values["job_title"] is None  # empty input: not set
    assert stored.values["organization_id"] == org.id

    edit = await client.get(f"{detail_url}/edit")
    assert 'value="ada@example.org"' in edit.text
    rejected = await client.post(
        f"{detail_url}/edit",
        data={"first_name": "Ada", "last_name": "", "_csrf_token": csrf_of(edit)},
    )
    assert rejected.status_code == 400
    assert "Last name is required." in text_of(rejected)

    fields = {
        name: html.unescape(value)
        for name, value in re.findall(
            r'<input id="field-\w+" name="(\w+)" type="\w+" value="([^"]*)"', edit.text
        )
    }
    fields.update({"phone": "", "job_title": "Analyst", "lifecycle_stage": "customer"})
    fields["organization_id"] = org.id
    saved = await client.post(f"{detail_url}/edit", data={**fields, "_csrf_token": csrf_of(edit)})
    assert location(saved) == detail_url
    assert "Contact updated." in text_of(await client.get(detail_url))
    stored = await services.gateway.read(staff.actor(sales), "contact", contact_id)
    assert stored.values["phone"] is None  # emptied: cleared
    assert stored.values["job_title"] == "Analyst"
    assert stored.values["email"] == "ada@example.org"
    updates = await audit_actions("update")
    assert updates[-1]["fields"] == '["job_title", "lifecycle_stage", "phone"]'

    confirm = await client.get(f"{detail_url}/delete")
    assert confirm.status_code == 200
    assert "cannot be undone" in text_of(confirm)
    deleted = await client.post(f"{detail_url}/delete", data={"_csrf_token": csrf_of(confirm)})
    assert location(deleted) == "/contacts"
    assert "Contact deleted." in text_of(await client.get("/contacts"))
    gone = await client.get(detail_url)
    assert gone.status_code == 404
    assert "This record does not exist" in text_of(gone)


async def test_contact_list_filters_pagination_and_search(staff: Staff, services: Services) -> None:
    sales = await staff.create("sales")
    actor = staff.actor(sales)
    for stage in ("lead", "customer", "customer"):
        await services.gateway.create(
            actor, "contact", sales_contact(lifecycle_stage=stage, last_name=f"Stage-{stage}")
        )
    target = await services.gateway.create(actor, "contact", sales_contact(last_name="Target"))
    client = await web_login(staff, sales)

    everyone = await client.get("/contacts")
    assert "4 contacts" in text_of(everyone)
    customers = await client.get("/contacts?lifecycle_stage=customer")
    assert "3 contacts matching the filters" in text_of(customers)
    assert "Stage-lead" not in customers.text
    first = await client.get("/contacts?lifecycle_stage=customer&page_size=2")
    assert "Page 1 of 2" in text_of(first)
    assert 'href="/contacts?lifecycle_stage=customer&amp;page_size=2&amp;page=2"' in first.text
    second = await client.get("/contacts?lifecycle_stage=customer&page_size=2&page=2")
    assert "Page 2 of 2" in text_of(second)
    bad = await client.get("/contacts?organization_id=not-an-id")
    assert bad.status_code == 400
    assert "not a valid id" in text_of(bad)

    found = await submit(
        client, "/contacts", "/contacts/search", {"q": target.values["email"].upper()}
    )
    assert found.status_code == 200
    assert "1 exact match" in text_of(found)
    assert f"/contacts/{target.id}" in found.text
    nothing = await submit(client, "/contacts", "/contacts/search", {"q": "nobody@example.org"})
    assert "0 exact matches" in text_of(nothing)
    # Anything else is a name: whole words or their start (issue 16), not a phone number.
    by_name = await submit(client, "/contacts", "/contacts/search", {"q": "targ"})
    assert by_name.status_code == 200
    assert "1 match" in text_of(by_name)
    assert f"/contacts/{target.id}" in by_name.text
    no_name = await submit(client, "/contacts", "/contacts/search", {"q": "not a phone"})
    assert no_name.status_code == 200
    assert "0 matches" in text_of(no_name)
    junk = await submit(client, "/contacts", "/contacts/search", {"q": "+44 1234"})
    assert junk.status_code == 400
    assert "Enter a complete phone number" in text_of(junk)
    searches = await audit_actions("search")
    assert [r["outcome"] for r in searches] == ["allowed"] * 4 + ["error"]


async def test_unknown_and_out_of_scope_records_get_the_404_page(
    staff: Staff, services: Services
) -> None:
    owner = await staff.create("sales")
    record = await services.gateway.create(staff.actor(owner), "contact", sales_contact())
    client = await web_login(staff, await staff.create("sales"))
    for url in (f"/contacts/{record.id}", "/contacts/not-a-uuid", f"/contacts/{record.id}/edit"):
        response = await client.get(url)
        assert response.status_code == 404
        assert "This record does not exist, or it is not one you have access to." in text_of(
            response
        )
    refused = await submit(client, "/contacts", f"/contacts/{record.id}/delete")
    assert refused.status_code == 404
    api_404 = await client.get("/api/v1/nothing")
    assert api_404.json() == {"status_code": 404, "detail": "Not Found"}


async def test_organization_with_contacts_cannot_be_deleted(
    staff: Staff, services: Services
) -> None:
    admin = await staff.create("admin")
    org = await services.gateway.create(staff.actor(admin), "organization", {"name": "Acme"})
    await services.gateway.create(
        staff.actor(admin), "contact", contact_values(organization_id=org.id)
    )
    client = await web_login(staff, admin)
    refused = await submit(
        client, f"/organizations/{org.id}/delete", f"/organizations/{org.id}/delete"
    )
    assert location(refused) == f"/organizations/{org.id}"
    page = await client.get(f"/organizations/{org.id}")
    assert "This organization still has 1 contact(s)" in text_of(page)
    assert 'role="alert"' in page.text


# --- staff accounts -------------------------------------------------------------------------------


async def test_admin_creates_disables_and_changes_the_role_of_a_user(staff: Staff) -> None:
    admin = await staff.create("admin")
    admin_client = await web_login(staff, admin)

    listing = await admin_client.get("/admin/users")
    assert listing.status_code == 200
    assert admin.email in listing.text
    form = await admin_client.get("/admin/users/new")
    duplicate = await admin_client.post(
        "/admin/users/new",
        data={"email": admin.email, "role": "sales", "team": "north", "_csrf_token": csrf_of(form)},
    )
    assert duplicate.status_code == 400
    assert "A staff account with this e-mail already exists." in text_of(duplicate)

    created = await admin_client.post(
        "/admin/users/new",
        data={
            "email": "new.colleague@staff.example.com",
            "display_name": "New Colleague",
            "role": "sales",
            "team": "north",
            "_csrf_token": csrf_of(form),
        },
    )
    assert created.status_code == 200
    link = re.search(r'value="http://testserver(/reset/[\w-]+)"', created.text)
    assert link
    reset_path = link.group(1)

    # The user chooses a password through the link, which then stops working.
    newcomer_client = http_client(staff.app)
    staff.clients.append(newcomer_client)
    weak = await submit(
        newcomer_client, reset_path, reset_path, {"password": "short", "confirm": "short"}
    )
    assert weak.status_code == 400
    assert "at least 12 characters" in text_of(weak)
    done = await submit(
        newcomer_client,
        reset_path,
        reset_path,
        {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert location(done) == "/login?notice=password_set"
    used = await newcomer_client.get(reset_path)
    assert used.status_code == 404
    assert "This reset link is invalid, has expired or has already been used." in text_of(used)

    found = await admin_client.get("/admin/users?q=colleague&role=sales")
    user_id = int(first_match(r'href="/admin/users/(\d+)"', found.text))
    assert "1 account" in text_of(found)
    newcomer = await account_of(staff, user_id)
    user_client = await web_login(staff, newcomer, NEW_PASSWORD)
    assert "role <strong>sales</strong>" in (await user_client.get("/")).text

    # Disabling ends the user's sessions at once.
    disabled = await submit(
        admin_client, f"/admin/users/{user_id}", f"/admin/users/{user_id}/active", {"active": "0"}
    )
    assert location(disabled) == f"/admin/users/{user_id}"
    assert "Account disabled" in text_of(await admin_client.get(f"/admin/users/{user_id}"))
    assert location(await user_client.get("/")) == "/login"
    refused = await submit(
        user_client, "/login", "/login", {"email": newcomer.email, "password": NEW_PASSWORD}
    )
    assert refused.status_code == 400

    await submit(
        admin_client, f"/admin/users/{user_id}", f"/admin/users/{user_id}/active", {"active": "1"}
    )
    user_client = await web_login(staff, newcomer, NEW_PASSWORD)

    # A role change applies from the user's next request, without signing in again.
    changed = await submit(
        admin_client,
        f"/admin/users/{user_id}",
        f"/admin/users/{user_id}/role",
        {"role": "support", "team": "south"},
    )
    assert location(changed) == f"/admin/users/{user_id}"
    dashboard = await user_client.get("/")
    assert "role <strong>support</strong>" in dashboard.text
    assert "team <strong>south</strong>" in dashboard.text

    # An admin cannot lock themselves out.
    self_disable = await submit(
        admin_client,
        f"/admin/users/{admin.user_id}",
        f"/admin/users/{admin.user_id}/active",
        {"active": "0"},
    )
    assert location(self_disable) == f"/admin/users/{admin.user_id}"
    assert "You cannot disable your own account." in text_of(
        await admin_client.get(f"/admin/users/{admin.user_id}")
    )
    actions = [
        r["action"]
        for r in await audit_actions(
            "user.create", "user.disable", "user.enable", "user.role_change", "user.force_reset"
        )
        if r["resource_id"] == str(user_id) and r["actor_id"] == admin.actor_id
    ]
    assert actions == [
        "user.create",
        "user.force_reset",
        "user.disable",
        "user.enable",
        "user.role_change",
    ]


async def test_force_reset_gives_a_one_time_link_and_ends_sessions(staff: Staff) -> None:
    admin = await staff.create("admin")
    user = await staff.create("sales")
    admin_client = await web_login(staff, admin)
    user_client = await web_login(staff, user)

    reset = await submit(
        admin_client, f"/admin/users/{user.user_id}", f"/admin/users/{user.user_id}/reset"
    )
    assert reset.status_code == 200
    assert "works <strong>once</strong>" in reset.text
    reset_path = first_match(r'value="http://testserver(/reset/[\w-]+)"', reset.text)
    assert location(await user_client.get("/contacts")) == "/login?next=/contacts"
    old = await submit(user_client, "/login", "/login", {"email": user.email, "password": PASSWORD})
    assert old.status_code == 400

    mismatch = await submit(
        user_client, reset_path, reset_path, {"password": NEW_PASSWORD, "confirm": "other"}
    )
    assert "The two passwords are not the same." in text_of(mismatch)
    form = await user_client.get(reset_path)
    first = await user_client.post(
        reset_path,
        data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "_csrf_token": csrf_of(form)},
    )
    assert location(first) == "/login?notice=password_set"
    second = await user_client.post(
        reset_path,
        data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "_csrf_token": csrf_of(form)},
    )
    assert second.status_code == 404
    assert "already been used" in text_of(second)
    await web_login(staff, user, NEW_PASSWORD)


async def test_sensitive_account_actions_need_a_recent_password(staff: Staff) -> None:
    admin = await staff.create("admin")
    user = await staff.create("sales")
    client = await web_login(staff, admin)
    await StaffSession.update(
        {StaffSession.authenticated_at: dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)}
    ).where(StaffSession.user_id == admin.user_id)

    detail = f"/admin/users/{user.user_id}"
    page = await client.get(detail)
    assert "asks for your password" in text_of(page)
    for action, data in (
        ("role", {"role": "admin", "team": "north"}),
        ("active", {"active": "0"}),
        ("reset", {}),
    ):
        response = await client.post(
            f"{detail}/{action}", data={**data, "_csrf_token": csrf_of(page)}
        )
        assert location(response) == f"/reauth?next={detail}"
    assert (await staff.services.accounts.get_user(user.user_id)) == (user, True)

    wrong = await submit(
        client,
        f"/reauth?next={detail}",
        "/reauth",
        {"password": "wrong", "code": await staff.code_for(admin), "next": detail},
    )
    assert wrong.status_code == 400
    assert "The password or the code is not correct." in text_of(wrong)
    before = session_token(client)
    confirmed = await submit(
        client,
        f"/reauth?next={detail}",
        "/reauth",
        {"password": PASSWORD, "code": await staff.code_for(admin), "next": detail},
    )
    assert location(confirmed) == detail
    assert session_token(client) not in ("", before)  # re-authentication renews the session id
    changed = await submit(client, detail, f"{detail}/role", {"role": "support", "team": "north"})
    assert location(changed) == detail
    assert (await account_of(staff, user.user_id)).role == "support"


@pytest.mark.parametrize("role", ["sales", "support", "marketing", "compliance"])
async def test_user_pages_do_not_exist_for_other_roles(staff: Staff, role: str) -> None:
    user = await staff.create(role)
    client = await web_login(staff, user)
    for url in ("/admin/users", "/admin/users/new", f"/admin/users/{user.user_id}"):
        response = await client.get(url)
        assert response.status_code == 404, url
        assert "Page not found" in text_of(response)
    refused = await submit(
        client, "/account", f"/admin/users/{user.user_id}/role", {"role": "admin"}
    )
    assert refused.status_code == 404
    assert (await account_of(staff, user.user_id)).role == role
    assert 'href="/admin/users"' not in (await client.get("/")).text


async def test_change_password_on_my_account(staff: Staff) -> None:
    user = await staff.create("sales")
    client = await web_login(staff, user)
    other = await web_login(staff, user)
    wrong = await submit(
        client,
        "/account",
        "/account/password",
        {
            "current_password": "not it",
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 400
    assert "The current password is not correct." in text_of(wrong)
    done = await submit(
        client,
        "/account",
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert location(done) == "/account"
    assert "Password changed." in text_of(await client.get("/account"))
    assert (await other.get("/")).status_code == 303  # other sessions were signed out
    await web_login(staff, user, NEW_PASSWORD)


async def test_flash_messages_carry_no_personal_data(staff: Staff, services: Services) -> None:
    user = await staff.create("sales")
    client = await web_login(staff, user)
    await submit(
        client,
        "/contacts/new",
        "/contacts/new",
        {"first_name": "Zebedee", "last_name": "Quux", "email": "zq@example.org"},
    )
    row = (
        await StaffSession.select(StaffSession.flash)
        .where(StaffSession.user_id == user.user_id)
        .first()
    )
    assert row is not None
    assert "Contact created." in row["flash"]
    assert "Zebedee" not in row["flash"]
    assert "zq@example.org" not in row["flash"]


# --- assets -------------------------------------------------------------------------------------


async def test_assets_come_from_the_pinned_npm_packages(staff: Staff) -> None:
    """Pico and htmx are served from admin_ui/node_modules (``npm ci`` there), our CSS from
    admin_ui/static. Without node_modules the pages still work, just unstyled."""
    client = http_client(staff.app)
    staff.clients.append(client)
    ours = await client.get("/static/admin.css")
    assert ours.status_code == 200
    assert ours.headers["content-type"].startswith("text/css")
    page = await client.get("/login")
    assert 'href="/static/vendor/pico/pico.min.css"' in page.text
    assert 'src="/static/vendor/htmx/htmx.min.js"' in page.text
    if not (plugin.NODE_MODULES / "htmx.org").is_dir():
        pytest.skip("npm packages not installed (run `npm ci` in admin_ui/)")
    for path in ("/static/vendor/pico/pico.min.css", "/static/vendor/htmx/htmx.min.js"):
        assert (await client.get(path)).status_code == 200, path
    for escape in ("/static/%2e%2e/plugin.py", "/static/vendor/htmx/..%2Fpackage.json"):
        assert (await client.get(escape)).status_code == 404, escape


async def test_pages_work_without_the_npm_packages(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, services: Services
) -> None:
    missing = {name: Path("/nonexistent") / name for name in plugin.VENDOR}
    monkeypatch.setattr(plugin, "VENDOR", missing)
    app = create_app(settings, services)
    user, _ = await services.accounts.create_user(
        "plain@staff.example.com", "sales", team="north", password=PASSWORD
    )
    async with http_client(app) as client:
        assert (await client.get("/static/vendor/pico/pico.min.css")).status_code == 404
        page = await client.get("/login")
        assert page.status_code == 200
        signed_in = await client.post(
            "/login",
            data={"email": user.email, "password": PASSWORD, "_csrf_token": csrf_of(page)},
        )
        assert location(signed_in) == "/"
        assert (await client.get("/contacts")).status_code == 200


async def test_search_box_only_for_roles_that_may_search(staff: Staff) -> None:
    marketing = await web_login(staff, await staff.create("marketing"))
    assert 'action="/contacts/search"' not in (await marketing.get("/contacts")).text
    support = await web_login(staff, await staff.create("support"))
    assert 'action="/contacts/search"' in (await support.get("/contacts")).text


async def test_cookies_are_secure_outside_local_http(settings: Settings) -> None:
    production = settings.with_overrides(cookie_secure=True)
    app = create_app(production, build_services(production))
    async with http_client(app) as client:
        page = await client.get("/login")
    cookie = next(c for c in page.headers.get_list("set-cookie") if c.startswith("consentry_csrf="))
    attributes = [a.strip().lower() for a in cookie.split(";")[1:]]
    assert "secure" in attributes
    assert "httponly" in attributes
    assert page.headers["strict-transport-security"] == "max-age=31536000"
