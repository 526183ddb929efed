"""Staff login, logout and "who am I": cookies, server-side sessions, expiry, audit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from httpx import AsyncClient, Response
from litestar import Litestar

from audit.tables import AuditRecord
from server.app import create_app
from server.auth.tables import StaffSession, StaffUser
from server.services import build_services
from server.settings import Settings
from server.web import SESSION_COOKIE
from tests.conftest import PASSWORD, Staff, http_client

LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"


def session_cookie(response: Response) -> str:
    """The raw ``set-cookie`` header for the session (there must be exactly one)."""
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)]
    assert len(headers) == 1, response.headers
    return headers[0]


def token_of(response: Response) -> str:
    return session_cookie(response).split(";", 1)[0].split("=", 1)[1]


def with_cookie(token: str) -> dict[str, str]:
    return {"cookie": f"{SESSION_COOKIE}={token}"}


async def login(client: AsyncClient, email: str, password: str = PASSWORD) -> Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


async def audit_rows(action: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await AuditRecord.select().where(AuditRecord.action == action).order_by(AuditRecord.seq)
    )
    return rows


async def test_login_me_and_cookie_flags(staff: Staff, client: AsyncClient) -> None:
    user = await staff.create("support", "north")
    response = await login(client, user.email.upper())  # e-mail matching ignores case

    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": user.user_id,
        "email": user.email,
        "display_name": user.email.split("@")[0],
        "role": "support",
        "team": "north",
    }
    raw = session_cookie(response)
    attributes = [part.strip().lower() for part in raw.split(";")[1:]]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert "max-age=43200" in attributes  # the 12-hour absolute session lifetime
    assert "secure" not in attributes  # these tests run on plain http (cookie_secure=False)
    assert len(token_of(response)) >= 32

    me = await client.get(ME)
    assert me.status_code == 200
    assert me.json() == response.json()
    assert "password" not in me.text
    assert "hash" not in me.text


async def test_cookie_is_secure_by_default(settings: Settings) -> None:
    production = settings.with_overrides(cookie_secure=True)
    app: Litestar = create_app(production, build_services(production))
    services = app.state.services
    user, _ = await services.accounts.create_user(
        "secure@staff.example.com", "sales", password=PASSWORD
    )
    async with http_client(app) as client:
        response = await login(client, user.email)
    assert response.status_code == 200
    attributes = [part.strip().lower() for part in session_cookie(response).split(";")[1:]]
    assert "secure" in attributes
    assert "httponly" in attributes


async def test_wrong_password_and_unknown_email_look_the_same(
    staff: Staff, client: AsyncClient
) -> None:
    user = await staff.create("sales")
    wrong_password = await login(client, user.email, "not the right password")
    unknown_email = await login(client, "nobody.here@staff.example.com")
    not_an_email = await login(client, "not an e-mail address")
    overlong = await login(client, user.email, "x" * 2000)

    answer = wrong_password.json()
    assert answer["status_code"] == 401
    assert "e-mail or password" in answer["detail"].lower()
    for response in (wrong_password, unknown_email, not_an_email, overlong):
        assert response.status_code == 401, response.text
        assert response.json() == answer  # nothing tells which part was wrong
        assert "set-cookie" not in response.headers
    assert (await client.get(ME)).status_code == 401

    for body in ({"email": user.email}, {"email": 7, "password": PASSWORD}, [user.email]):
        malformed = await client.post(LOGIN, json=body)
        assert malformed.status_code == 400, (body, malformed.text)
        assert PASSWORD not in malformed.text
    extra = await client.post(LOGIN, json={"email": user.email, "password": PASSWORD, "x": 1})
    assert extra.status_code == 400
    assert "set-cookie" not in extra.headers


async def test_each_login_gets_a_new_token_and_the_database_keeps_only_a_hash(
    staff: Staff, client: AsyncClient, app: Litestar
) -> None:
    user = await staff.create("sales")
    first = await login(client, user.email)
    async with http_client(app) as other_client:
        second = await login(other_client, user.email)
        tokens = [token_of(first), token_of(second)]
        assert tokens[0] != tokens[1]

        rows = await StaffSession.raw("SELECT * FROM staff_session")
        assert len(rows) == 2
        dump = repr(rows)
        for token in tokens:
            assert token not in dump
        assert {r["user_id"] for r in rows} == {user.user_id}
        assert all(len(r["token_hash"]) == 64 for r in rows)
        assert len({r["token_hash"] for r in rows}) == 2

        # Both sessions work independently; ending one leaves the other alive.
        assert (await client.get(ME)).status_code == 200
        assert (await other_client.get(ME)).status_code == 200
        assert (await client.post(LOGOUT)).status_code == 204
        assert (await other_client.get(ME)).status_code == 200
        assert len(await StaffSession.raw("SELECT id FROM staff_session")) == 1


async def test_logout_ends_the_session(staff: Staff, client: AsyncClient) -> None:
    user = await staff.create("marketing")
    token = token_of(await login(client, user.email))
    assert (await client.get(ME, headers=with_cookie(token))).status_code == 200

    response = await client.post(LOGOUT)
    assert response.status_code == 204
    cleared = session_cookie(response).lower()
    assert "max-age=0" in cleared or "expires=thu, 01 jan 1970" in cleared

    replayed = await client.get(ME, headers=with_cookie(token))
    assert replayed.status_code == 401
    assert "login" in replayed.json()["detail"]
    assert (await client.get("/api/v1/contacts", headers=with_cookie(token))).status_code == 401
    assert (await client.post(LOGOUT, headers=with_cookie(token))).status_code == 401
    assert await StaffSession.count() == 0
    [logout] = await audit_rows("logout")
    assert (logout["actor_id"], logout["outcome"]) == (f"user:{user.user_id}", "allowed")


async def test_disabled_user_is_locked_out_at_once(staff: Staff, client: AsyncClient) -> None:
    user = await staff.create("sales")
    assert (await login(client, user.email)).status_code == 200
    assert (await client.get(ME)).status_code == 200

    await StaffUser.update({StaffUser.is_active: False}).where(StaffUser.id == user.user_id)

    assert (await client.get(ME)).status_code == 401
    assert (await client.get("/api/v1/contacts")).status_code == 401
    again = await login(client, user.email)
    assert again.status_code == 401
    unknown = await login(client, "nobody.here@staff.example.com")
    assert again.json() == unknown.json()  # no hint that the account exists
    denied = [r for r in await audit_rows("login") if r["outcome"] == "denied"]
    assert [(r["actor_id"], r["reason"]) for r in denied] == [
        (f"user:{user.user_id}", "disabled"),
        ("anonymous", "bad_credentials"),
    ]


async def test_expired_sessions_are_refused_and_removed(
    staff: Staff, client: AsyncClient, app: Litestar
) -> None:
    user = await staff.create("support")
    accounts = app.state.services.accounts
    now = dt.datetime.now(dt.UTC)
    cases = {
        "absolute lifetime over": {StaffSession.expires_at: now - dt.timedelta(seconds=1)},
        "idle too long": {StaffSession.last_seen_at: now - accounts.idle - dt.timedelta(seconds=1)},
    }
    for case, change in cases.items():
        async with http_client(app) as session_client:
            token = token_of(await login(session_client, user.email))
            assert (await session_client.get(ME)).status_code == 200, case
            await StaffSession.update(change).where(StaffSession.user_id == user.user_id)

            response = await session_client.get(ME)
            assert response.status_code == 401, case
            assert "expired" in response.json()["detail"]
            assert await StaffSession.count() == 0, case
            assert (await client.get(ME, headers=with_cookie(token))).status_code == 401

    # Activity inside the idle window keeps a session alive.
    async with http_client(app) as session_client:
        assert (await login(session_client, user.email)).status_code == 200
        recent = now - accounts.idle + dt.timedelta(minutes=5)
        await StaffSession.update({StaffSession.last_seen_at: recent}).where(
            StaffSession.user_id == user.user_id
        )
        assert (await session_client.get(ME)).status_code == 200
        [row] = await StaffSession.select(StaffSession.last_seen_at)
        assert row["last_seen_at"] > recent + dt.timedelta(minutes=1)


async def test_logins_are_audited_without_the_email_typed(
    staff: Staff, client: AsyncClient
) -> None:
    user = await staff.create("support")
    ok = await login(client, user.email)
    bad_password = await login(client, user.email, "guessing-the-password")
    typed = "Customer.Lookalike+crm@Example.ORG"
    unknown = await login(client, typed, "guessing-the-password")
    assert [r.status_code for r in (ok, bad_password, unknown)] == [200, 401, 401]

    rows = await audit_rows("login")
    assert [(r["actor_id"], r["outcome"]) for r in rows] == [
        (f"user:{user.user_id}", "allowed"),
        (f"user:{user.user_id}", "denied"),
        ("anonymous", "denied"),
    ]
    assert [r["reason"] for r in rows[1:]] == ["bad_credentials", "bad_credentials"]
    for row, response in zip(rows, (ok, bad_password, unknown), strict=True):
        assert row["request_id"] == response.headers["x-request-id"]
        assert row["resource_type"] == "session"
    for row in rows:
        dump = repr(row).lower()
        for secret in (typed.lower(), "customer.lookalike", user.email, "guessing-the-password"):
            assert secret not in dump
        assert PASSWORD not in repr(row)
