"""Staff sign-in hardening: throttling, second factor, password rules, reset links,
account administration and re-authentication (service level and over the API)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from httpx import AsyncClient

from server.auth import passwords
from server.auth.passwords import WeakPassword, check_password_rules, personal_words
from server.auth.service import (
    AccountError,
    LoginResult,
    LoginStatus,
    SessionState,
    StaffIdentity,
)
from server.auth.tables import LoginThrottle, StaffSession, StaffUser
from server.services import Services
from tests.conftest import PASSWORD, Staff
from tests.dbutil import audit_rows, last_seq

IP = "203.0.113.7"


async def _login(
    services: Services, email: str, password: str = PASSWORD, ip: str = IP
) -> LoginResult:
    return await services.accounts.login(email, password, "t", client_address=ip)


# --- password rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["short-one", "password1234", "qwertyuiop123", "aaaaaaaaaaaaaaaa", "123456789012"],
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_password_rules(password)


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "ŧĥïš ïš ä ŀöñğ pässphräşë",
        "the quick brown fox jumps over the lazy dog while it rains on mars",
    ],
)
def test_long_and_unicode_passphrases_are_accepted_without_composition_rules(
    password: str,
) -> None:
    check_password_rules(password)  # 64+ characters, spaces and any script are fine


def test_password_may_not_be_built_from_the_users_own_e_mail() -> None:
    with pytest.raises(WeakPassword):
        check_password_rules("jane.doe1985!", personal_words("jane.doe1985@example.org", "Jane"))


# --- throttling -------------------------------------------------------------------------------


async def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(
    services: Services, staff: Staff, database_url: str
) -> None:
    user = await staff.create("sales")
    before = await last_seq(database_url)
    results = [await _login(services, user.email, "wrong password!!") for _ in range(5)]
    assert [r.status for r in results[:4]] == [LoginStatus.INVALID] * 4
    assert results[4].status is LoginStatus.THROTTLED

    right = await _login(services, user.email)
    assert right.status is LoginStatus.THROTTLED
    assert right.session is None
    assert "Too many failed sign-in attempts" in right.message
    assert right.retry_after > 0

    logins = [r for r in await audit_rows(database_url, before) if r["action"] == "login"]
    assert [r["reason"] for r in logins] == ["bad_credentials"] * 5 + ["throttled"]
    assert all(r["outcome"] == "denied" for r in logins)
    assert json.loads(logins[4]["detail"])["locked_seconds"] == 60
    assert all(user.email not in json.dumps(r, default=str) for r in logins)

    # when the lock runs out, the right password works and the counter is cleared
    await LoginThrottle.update({LoginThrottle.locked_until: dt.datetime.now(dt.UTC)}).where(
        LoginThrottle.failures >= 0
    )
    assert (await _login(services, user.email)).status is LoginStatus.OK


async def test_unknown_accounts_lock_the_same_way(services: Services) -> None:
    """Locking only real accounts would tell an attacker which e-mails exist."""
    results = [await _login(services, "nobody@example.org", "guess guess guess") for _ in range(5)]
    assert [r.status for r in results] == [LoginStatus.INVALID] * 4 + [LoginStatus.THROTTLED]


async def test_simultaneous_first_failures_are_both_counted(services: Services) -> None:
    """Two workers counting the first failure of one key at once: no duplicate-key error
    (a 500 on PostgreSQL before), and neither failure is lost."""
    throttle = services.accounts.throttle
    key = throttle.account_key("racing@example.org")
    await asyncio.gather(*(throttle.record_failure(key, 5) for _ in range(4)))
    (row,) = await LoginThrottle.select().where(LoginThrottle.key == key)
    assert row["failures"] == 4


async def test_one_address_guessing_many_accounts_is_throttled(
    services: Services, staff: Staff
) -> None:
    user = await staff.create("sales")
    for i in range(20):
        await _login(services, f"someone{i}@example.org", "nope nope nope", ip="198.51.100.9")
    from_there = await _login(services, user.email, ip="198.51.100.9")
    assert from_there.status is LoginStatus.THROTTLED
    assert (await _login(services, user.email, ip="192.0.2.1")).status is LoginStatus.OK


async def test_api_answers_429_with_retry_after(client: AsyncClient, staff: Staff) -> None:
    user = await staff.create("sales")
    for _ in range(4):
        response = await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": "not my password"}
        )
        assert response.status_code == 401
    response = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": "not my password"}
    )
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    assert "Too many failed sign-in attempts" in response.json()["detail"]


# --- second factor ------------------------------------------------------------------------------


async def test_admin_without_second_factor_may_only_enrol(
    services: Services,
    staff: Staff,
    client: AsyncClient,
) -> None:
    admin = await staff.create("admin", totp=False)
    result = await _login(services, admin.email)
    assert result.status is LoginStatus.ENROLMENT_REQUIRED
    assert result.session is not None
    info = await services.accounts.session_info(result.session.token)
    assert info is not None
    assert info.state is SessionState.ENROLMENT_REQUIRED
    assert await services.accounts.resolve(result.session.token) is None  # no API access

    response = await client.post(
        "/api/v1/auth/login", json={"email": admin.email, "password": PASSWORD}
    )
    assert response.status_code == 403
    assert "second factor" in response.json()["detail"]
    assert "consentry_session" not in response.headers.get("set-cookie", "")


async def test_totp_enrolment_then_codes_cannot_be_replayed(
    services: Services, staff: Staff, database_url: str
) -> None:
    admin = await staff.create("admin", totp=False)
    pending = await _login(services, admin.email)
    assert pending.session is not None
    info = await services.accounts.session_info(pending.session.token)
    assert info is not None
    secret = services.accounts.new_totp_secret()
    assert (
        await services.accounts.enrol_totp(info, pending.session.token, secret, "000000") in (None,)
        or pyotp.TOTP(secret).now() == "000000"
    )
    enrolled = await services.accounts.enrol_totp(
        info, pending.session.token, secret, pyotp.TOTP(secret).now()
    )
    assert enrolled is not None
    session, codes = enrolled
    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert session.token != pending.session.token  # fresh session id
    assert await services.accounts.session_info(pending.session.token) is None
    stored = await StaffUser.select(StaffUser.totp_secret).where(StaffUser.id == admin.user_id)
    assert secret not in str(stored)  # sealed, never in clear

    # next sign-in: password, then the code; the same code a second time is refused
    first = await _login(services, admin.email)
    assert first.status is LoginStatus.MFA_REQUIRED
    assert first.session is not None
    assert await services.accounts.resolve(first.session.token) is None
    totp = pyotp.TOTP(secret)
    code = totp.at(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30))  # next step: unused
    full = (await services.accounts.complete_second_factor(first.session.token, code, "t")).session
    assert full is not None
    assert await services.accounts.resolve(full.token) == StaffIdentity(
        admin.user_id, admin.email, admin.display_name, "admin", admin.team, True
    )
    again = await _login(services, admin.email)
    assert again.session is not None
    replayed = await services.accounts.complete_second_factor(again.session.token, code, "t")
    assert replayed.status is LoginStatus.INVALID
    assert replayed.session is None

    # a recovery code works exactly once
    third = await _login(services, admin.email)
    assert third.session is not None
    recovered = await services.accounts.complete_second_factor(third.session.token, codes[0], "t")
    assert recovered.status is LoginStatus.OK
    fourth = await _login(services, admin.email)
    assert fourth.session is not None
    reused = await services.accounts.complete_second_factor(fourth.session.token, codes[0], "t")
    assert reused.status is LoginStatus.INVALID
    assert await services.accounts.remaining_recovery_codes(admin.user_id) == 9


async def test_api_login_with_totp_code(client: AsyncClient, staff: Staff) -> None:
    admin = await staff.create("admin")
    body = {"email": admin.email, "password": PASSWORD}
    without = await client.post("/api/v1/auth/login", json=body)
    assert without.status_code == 401
    assert "totp_code" in without.json()["detail"]
    wrong = await client.post("/api/v1/auth/login", json={**body, "totp_code": "123456"})
    assert wrong.status_code == 401
    right = await client.post(
        "/api/v1/auth/login", json={**body, "totp_code": await staff.code_for(admin)}
    )
    assert right.status_code == 200
    assert (await client.get("/api/v1/auth/me")).json()["role"] == "admin"


# --- wrong codes count like wrong passwords ------------------------------------------------------


async def _code(services: Services, token: str, code: str, ip: str = IP) -> LoginResult:
    return await services.accounts.complete_second_factor(token, code, "t", client_address=ip)


async def test_twenty_five_wrong_codes_after_the_right_password_end_in_a_lock(
    client: AsyncClient, staff: Staff, database_url: str
) -> None:
    """Issue 14: the right password used to reset the count before the code was checked."""
    admin = await staff.create("admin")
    body = {"email": admin.email, "password": PASSWORD}
    before = await last_seq(database_url)
    answers = []
    for _ in range(25):
        wrong = {**body, "totp_code": staff.wrong_code_for(admin)}
        answers.append(await client.post("/api/v1/auth/login", json=wrong))
    assert [a.status_code for a in answers] == [401] * 4 + [429] * 21
    assert all(int(a.headers["retry-after"]) > 0 for a in answers[4:])
    assert "Too many failed sign-in attempts" in answers[-1].json()["detail"]
    assert all("consentry_session" not in a.headers.get("set-cookie", "") for a in answers)

    # locked means locked: the right password and a right code do not get in either
    right = await client.post(
        "/api/v1/auth/login", json={**body, "totp_code": await staff.code_for(admin)}
    )
    assert right.status_code == 429
    assert (await client.get("/api/v1/auth/me")).status_code == 401

    rows = await audit_rows(database_url, before)
    codes = [r for r in rows if r["action"] == "login.second_factor"]
    assert [(r["outcome"], r["reason"]) for r in codes] == [("denied", "bad_code")] * 5
    assert json.loads(codes[4]["detail"])["locked_seconds"] == 60
    throttled = [r for r in rows if r["action"] == "login" and r["reason"] == "throttled"]
    assert len(throttled) == 21
    dump = json.dumps(rows, default=str)
    assert admin.email not in dump
    assert PASSWORD not in dump


async def test_only_a_complete_sign_in_clears_the_count_of_wrong_codes(
    services: Services, staff: Staff, database_url: str
) -> None:
    admin = await staff.create("admin")

    async def attempt(code: str) -> LoginResult:
        pending = await _login(services, admin.email)  # the right password every time
        assert pending.status is LoginStatus.MFA_REQUIRED
        assert pending.session is not None
        return await _code(services, pending.session.token, code)

    # wrong recovery codes count as well as wrong TOTP codes
    wrong = staff.wrong_code_for(admin)
    for code in ("abcde-fghjk", wrong, "mnpqr-stuvw", wrong):
        assert (await attempt(code)).status is LoginStatus.INVALID
    signed_in = await attempt(await staff.code_for(admin))
    assert signed_in.status is LoginStatus.OK
    assert signed_in.session is not None
    assert await services.accounts.resolve(signed_in.session.token) is not None

    # the whole sign-in succeeded, so the count starts again: four are free, the fifth locks
    results = [await attempt(staff.wrong_code_for(admin)) for _ in range(5)]
    assert [r.status for r in results] == [LoginStatus.INVALID] * 4 + [LoginStatus.THROTTLED]
    assert results[4].retry_after == 60
    assert results[4].session is None
    typed = json.dumps(await audit_rows(database_url), default=str)
    assert "abcde" not in typed
    assert "mnpqr" not in typed


async def test_wrong_codes_count_against_the_client_address(
    services: Services, staff: Staff
) -> None:
    """Twenty wrong codes from one address lock it, spread over accounts as they may be."""
    ip = "198.51.100.23"
    for _ in range(4):
        admin = await staff.create("admin")
        pending = await _login(services, admin.email, ip=ip)
        assert pending.session is not None
        # one half-signed-in session trying code after code, as the code page allows
        results = [
            await _code(services, pending.session.token, staff.wrong_code_for(admin), ip)
            for _ in range(5)
        ]
        assert results[-1].status is LoginStatus.THROTTLED
    seller = await staff.create("sales")
    from_there = await _login(services, seller.email, ip=ip)
    assert from_there.status is LoginStatus.THROTTLED
    assert from_there.retry_after > 0
    assert (await _login(services, seller.email, ip="192.0.2.44")).status is LoginStatus.OK


# --- the same work for every failed sign-in ---------------------------------------------------


class CountingHasher:
    """The test process's hasher, noting for each verification whether argon2 did the full
    work of a real hash (a string it cannot parse is refused at once, which is fast)."""

    def __init__(self, inner: PasswordHasher) -> None:
        self.inner = inner
        self.full_work: list[bool] = []

    def verify(self, encoded: str, password: str) -> bool:
        try:
            self.full_work.append(not self.inner.check_needs_rehash(encoded))
        except InvalidHashError:
            self.full_work.append(False)
        return self.inner.verify(encoded, password)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_every_failed_sign_in_does_one_full_password_verification(
    services: Services, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a forced reset answered in a tenth of the time (no argon2 work at all).

    Wall-clock timing is too noisy to test; instead every failure path must run exactly
    one argon2 verification at the product's parameters, and answer as the others do.
    """
    admin = await staff.create("admin")
    wrong_pw = await staff.create("sales")
    disabled = await staff.create("sales")
    await services.accounts.set_active(disabled.user_id, False, by=admin)
    reset = await staff.create("support")
    await services.accounts.issue_reset_link(reset.user_id, by=admin)
    locked = await staff.create("sales")
    throttle = services.accounts.throttle
    await throttle.record_failure(throttle.account_key(locked.email), 1)
    behind_locked_address = await staff.create("sales")
    await throttle.record_failure(throttle.address_key("198.51.100.99"), 1)
    cases = {
        "unknown e-mail": ("nobody.at.all@example.org", PASSWORD, "192.0.2.1"),
        "not an e-mail": ("not an e-mail address", PASSWORD, "192.0.2.2"),
        "wrong password": (wrong_pw.email, "not the password at all", "192.0.2.3"),
        "disabled, right password": (disabled.email, PASSWORD, "192.0.2.4"),
        "disabled, wrong password": (disabled.email, "not the password at all", "192.0.2.5"),
        "reset pending": (reset.email, PASSWORD, "192.0.2.6"),
        "locked account, right password": (locked.email, PASSWORD, "192.0.2.7"),
        "locked address, right password": (behind_locked_address.email, PASSWORD, "198.51.100.99"),
    }
    hasher = CountingHasher(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", hasher)
    answers = {}
    for case, (email, password, ip) in cases.items():
        hasher.full_work.clear()
        result = await _login(services, email, password, ip)
        assert hasher.full_work == [True], case
        assert result.session is None, case
        answers[case] = (result.status, result.message)
    invalid = (LoginStatus.INVALID, "Invalid e-mail or password.")
    assert {c: a for c, a in answers.items() if "locked" not in c} == {
        c: invalid for c in cases if "locked" not in c
    }
    assert {a[0] for c, a in answers.items() if "locked" in c} == {LoginStatus.THROTTLED}


# --- account administration ---------------------------------------------------------------------


async def test_disabling_a_user_ends_their_sessions_at_once(
    services: Services, staff: Staff, database_url: str
) -> None:
    admin = await staff.create("admin")
    seller = await staff.create("sales")
    their = await staff.login(seller)
    assert (await their.get("/api/v1/auth/me")).status_code == 200
    before = await last_seq(database_url)

    await services.accounts.set_active(seller.user_id, False, by=admin)
    assert (await their.get("/api/v1/auth/me")).status_code == 401
    assert await StaffSession.count().where(StaffSession.user_id == seller.user_id) == 0
    assert (await _login(services, seller.email)).status is LoginStatus.INVALID
    with pytest.raises(AccountError):
        await services.accounts.set_active(admin.user_id, False, by=admin)

    await services.accounts.set_active(seller.user_id, True, by=admin)
    assert (await _login(services, seller.email)).status is LoginStatus.OK
    actions = [r["action"] for r in await audit_rows(database_url, before)]
    assert "user.disable" in actions
    assert "user.enable" in actions


async def test_role_change_takes_effect_on_the_next_request(
    services: Services, staff: Staff
) -> None:
    admin = await staff.create("admin")
    user = await staff.create("marketing")
    client = await staff.login(user)
    assert (
        await client.post("/api/v1/contacts", json={"first_name": "A", "last_name": "B"})
    ).status_code == 403
    await services.accounts.change_role(user.user_id, "sales", by=admin)
    created = await client.post("/api/v1/contacts", json={"first_name": "A", "last_name": "B"})
    assert created.status_code == 201
    with pytest.raises(AccountError):
        await services.accounts.change_role(user.user_id, "overlord", by=admin)


async def test_forced_reset_link_works_once_and_expires(
    services: Services, staff: Staff, database_url: str
) -> None:
    admin = await staff.create("admin")
    user = await staff.create("support")
    client = await staff.login(user)
    token = await services.accounts.issue_reset_link(user.user_id, by=admin)
    assert (await client.get("/api/v1/auth/me")).status_code == 401  # sessions ended
    assert (await _login(services, user.email)).status is LoginStatus.INVALID  # old password

    with pytest.raises(WeakPassword):
        await services.accounts.redeem_reset_link(token, "password")
    await services.accounts.redeem_reset_link(token, "a brand new passphrase")
    assert (await _login(services, user.email, "a brand new passphrase")).status is LoginStatus.OK
    with pytest.raises(AccountError):
        await services.accounts.redeem_reset_link(token, "another new passphrase")

    late = await services.accounts.issue_reset_link(user.user_id, by=admin)
    from server.auth.tables import PasswordResetToken

    await PasswordResetToken.update(
        {PasswordResetToken.expires_at: dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)}
    ).where(PasswordResetToken.user_id == user.user_id)
    assert not await services.accounts.reset_link_is_valid(late)
    with pytest.raises(AccountError):
        await services.accounts.redeem_reset_link(late, "yet another passphrase")
    stored = await audit_rows(database_url)
    assert token not in json.dumps(stored, default=str)


async def test_list_users_searches_and_pages(services: Services, staff: Staff) -> None:
    for i in range(7):
        await staff.create("support", email=f"helpdesk{i}@staff.example.com")
    await staff.create("sales", email="closer@staff.example.com")
    page = await services.accounts.list_users(query="HELPDESK", page=2, page_size=5)
    assert page.total == 7
    assert len(page.items) == 2
    assert {u.role for u in (await services.accounts.list_users(role="sales")).items} == {"sales"}


# --- re-authentication and sessions --------------------------------------------------------------


async def test_reauthentication_rotates_the_session(services: Services, staff: Staff) -> None:
    admin = await staff.create("admin")
    first = await _login(services, admin.email)
    assert first.session is not None
    completed = await services.accounts.complete_second_factor(
        first.session.token, await staff.code_for(admin), "t"
    )
    full = completed.session
    assert full is not None
    info = await services.accounts.session_info(full.token)
    assert info is not None
    assert info.recently_authenticated
    assert await services.accounts.reauthenticate(full.token, "wrong password", "") is None
    fresh = await services.accounts.reauthenticate(
        full.token, PASSWORD, await staff.code_for(admin)
    )
    assert fresh is not None
    assert fresh.token != full.token
    assert await services.accounts.session_info(full.token) is None


async def test_logout_everywhere_and_session_list(services: Services, staff: Staff) -> None:
    user = await staff.create("sales")
    tokens = []
    for _ in range(3):
        result = await _login(services, user.email)
        assert result.session is not None
        tokens.append(result.session.token)
    sessions = await services.accounts.list_sessions(user.user_id, tokens[0])
    assert len(sessions) == 3
    assert sum(s.current for s in sessions) == 1
    other = next(s for s in sessions if not s.current)
    assert await services.accounts.end_session(user, other.session_id)
    assert len(await services.accounts.list_sessions(user.user_id, tokens[0])) == 2
    await services.accounts.logout(tokens[0], user, everywhere=True)
    assert all([await services.accounts.session_info(t) is None for t in tokens])


async def test_idle_and_absolute_timeouts(services: Services, staff: Staff) -> None:
    user = await staff.create("sales")
    idle = await _login(services, user.email)
    absolute = await _login(services, user.email)
    assert idle.session is not None
    assert absolute.session is not None
    now = dt.datetime.now(dt.UTC)
    await StaffSession.update({StaffSession.last_seen_at: now - dt.timedelta(hours=2)}).where(
        StaffSession.token_hash == services.accounts._token_hash(idle.session.token)
    )
    await StaffSession.update({StaffSession.expires_at: now - dt.timedelta(seconds=1)}).where(
        StaffSession.token_hash == services.accounts._token_hash(absolute.session.token)
    )
    assert await services.accounts.session_info(idle.session.token) is None
    assert await services.accounts.session_info(absolute.session.token) is None


async def test_flash_messages_are_one_shot(services: Services, staff: Staff) -> None:
    user = await staff.create("sales")
    result = await _login(services, user.email)
    assert result.session is not None
    await services.accounts.push_flash(result.session.token, "Contact created", "success")
    assert await services.accounts.pop_flash(result.session.token) == [
        {"kind": "success", "text": "Contact created"}
    ]
    assert await services.accounts.pop_flash(result.session.token) == []
