# Over 800 lines: StaffAccounts is the one place that handles staff secrets (passwords,
# second factor, reset links, session tokens) under one set of rules; the session half
# (session_info to pop_flash) is the split to make next (issue 18).
"""Staff accounts, sign-in and server-side sessions stored in the database.

A session cookie carries a random token; the database stores only HMAC(session secret,
token), so a leaked database does not yield usable cookies. Every login and every
re-authentication creates a new session row, so the session id is always fresh (no
fixation). Sessions live in the database, so any number of workers share them.

Sign-in is two steps for accounts with a second factor: the password opens a session in
the ``mfa_required`` state, which can do nothing but present a TOTP or recovery code.
``admin`` and ``compliance`` accounts without a second factor get a session that can only
enrol one. Failed attempts are throttled per account and per client address, and wrong
codes count like wrong passwords: the count is cleared only when the whole sign-in succeeds.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import MFA_RIGHT, ROLES, SYSTEM_ROLE, PolicyEngine
from server import db
from server.auth import second_factor
from server.auth.passwords import (
    check_password_rules,
    generate_password,
    hash_password,
    needs_rehash,
    personal_words,
    verify_password,
)
from server.auth.tables import (
    PasswordResetToken,
    StaffRecoveryCode,
    StaffSession,
    StaffUser,
)
from server.auth.throttle import ACCOUNT_FREE_FAILURES, ADDRESS_FREE_FAILURES, LoginThrottler
from server.auth.zones import known_zone
from server.datamap import normalize_email
from server.gateway.sealing import Sealing
from server.identity import StaffIdentity as StaffIdentity  # re-exported (server/identity.py)

LAST_SEEN_RESOLUTION = dt.timedelta(minutes=1)
REAUTH_WINDOW = dt.timedelta(minutes=5)  # sensitive actions need a password this recent
RESET_LINK_LIFETIME = dt.timedelta(hours=1)
PENDING_MFA_LIFETIME = dt.timedelta(minutes=10)  # a half-signed-in session expires fast
TOTP_LABEL = "staff-totp"
USERS_PAGE_SIZE = 25


class AccountError(ValueError):
    """Bad account input; the message is safe to show."""


class SessionState(enum.StrEnum):
    ACTIVE = "active"  # fully signed in
    MFA_REQUIRED = "mfa_required"  # password ok; TOTP or recovery code still to come
    ENROLMENT_REQUIRED = "enrolment_required"  # role needs a second factor; none enrolled


class LoginStatus(enum.StrEnum):
    OK = "ok"
    MFA_REQUIRED = "mfa_required"
    ENROLMENT_REQUIRED = "enrolment_required"
    INVALID = "invalid"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class NewSession:
    token: str
    identity: StaffIdentity
    expires_at: dt.datetime


@dataclass(frozen=True)
class LoginResult:
    status: LoginStatus
    session: NewSession | None = None
    retry_after: int = 0  # seconds, when throttled

    @property
    def message(self) -> str:
        if self.status is LoginStatus.THROTTLED:
            minutes = max(1, (self.retry_after + 59) // 60)
            return (
                "Too many failed sign-in attempts. Try again in "
                f"{minutes} minute{'s' if minutes != 1 else ''}."
            )
        if self.status is LoginStatus.INVALID:
            return "Invalid e-mail or password."
        return ""


@dataclass(frozen=True)
class SessionInfo:
    session_id: int
    identity: StaffIdentity
    state: SessionState
    authenticated_at: dt.datetime | None
    created_at: dt.datetime

    @property
    def recently_authenticated(self) -> bool:
        if self.authenticated_at is None:
            return False
        return dt.datetime.now(dt.UTC) - self.authenticated_at < REAUTH_WINDOW


@dataclass(frozen=True)
class SessionSummary:
    session_id: int
    created_at: dt.datetime
    last_seen_at: dt.datetime
    client: str
    current: bool


@dataclass(frozen=True)
class UserPage:
    items: list[StaffIdentity]
    active: dict[int, bool]
    total: int
    page: int
    page_size: int


# A session and its user in one statement (every request of a signed-in browser asks):
# each table's columns under a prefix, since both have an ``id`` and a ``created_at``.
_SESSION_COLUMNS = (
    *("id", "user_id", "created_at", "last_seen_at", "expires_at"),
    *("authenticated_at", "mfa_passed"),
)
_USER_COLUMNS = ("id", "email", "display_name", "role", "team", "is_active", "totp_secret")
# Only names written here and the token hash as a bound parameter ({}): nothing a caller
# sends is spliced into the text.
SESSION_WITH_USER = (
    "SELECT "  # noqa: S608 - names from this module only; the one value is a parameter
    + ", ".join(
        [f's."{c}" AS "s_{c}"' for c in _SESSION_COLUMNS]
        + [f'u."{c}" AS "u_{c}"' for c in (*_USER_COLUMNS, "time_zone")]
    )
    + f' FROM "{StaffSession._meta.tablename}" AS s'
    + f' LEFT JOIN "{StaffUser._meta.tablename}" AS u ON u."id" = s."user_id"'
    + ' WHERE s."token_hash" = {}'
)


def _prefixed(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in row.items() if k.startswith(prefix)}


def _identity(row: dict[str, Any]) -> StaffIdentity:
    return StaffIdentity(
        int(row["id"]),
        row["email"],
        row["display_name"],
        row["role"],
        row["team"],
        bool(row.get("totp_secret")),
        str(row.get("time_zone") or ""),
    )


def client_label(user_agent: str) -> str:
    """A coarse browser/OS label for "my sessions"; the raw user agent is not kept."""
    ua = user_agent.lower()
    browser = next(
        (
            name
            for key, name in (
                ("edg/", "Edge"),
                ("firefox", "Firefox"),
                ("chrome", "Chrome"),
                ("safari", "Safari"),
                ("curl", "curl"),
                ("httpx", "API client"),
                ("python", "API client"),
            )
            if key in ua
        ),
        "Other client",
    )
    system = next(
        (
            name
            for key, name in (
                ("windows", "Windows"),
                ("mac os", "macOS"),
                ("android", "Android"),
                ("iphone", "iOS"),
                ("linux", "Linux"),
            )
            if key in ua
        ),
        "",
    )
    return f"{browser} on {system}" if system else browser


class StaffAccounts:
    def __init__(
        self,
        audit: AuditLog,
        session_secret: bytes,
        *,
        idle_minutes: int,
        absolute_hours: int,
        sealing: Sealing,
        policy: PolicyEngine,
    ) -> None:
        self._audit = audit
        self._policy = policy
        self._secret = session_secret
        self._sealing = sealing
        self.throttle = LoginThrottler(session_secret)
        self.idle = dt.timedelta(minutes=idle_minutes)
        self.absolute = dt.timedelta(hours=absolute_hours)

    def second_factor_required(self, role: str) -> bool:
        """Whether ``role`` must sign in with a second factor: the policy's ``mfa,
        required`` (policy/policy.csv), not a list of roles here."""
        return self._policy.allows(role, *MFA_RIGHT)

    def _token_hash(self, token: str) -> str:
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()

    async def _record(
        self,
        actor_id: str,
        actor_role: str,
        action: str,
        outcome: Outcome,
        *,
        resource_type: str = "staff_user",
        resource_id: str | None = None,
        reason: str = "allowed",
        fields: tuple[str, ...] = (),
        request_id: str = "",
        detail: dict[str, int | str] | None = None,
    ) -> None:
        """Append an account event (call inside a write transaction or on its own)."""
        async with db.write_transaction():
            await self._audit.append(
                audit_event(
                    actor_id=actor_id,
                    actor_role=actor_role,
                    action=action,
                    resource_type=resource_type,
                    resource_id=resource_id,
                    outcome=outcome,
                    reason=reason,
                    fields=fields,
                    request_id=request_id,
                    detail=detail or {},
                )
            )

    # --- accounts ------------------------------------------------------------------------

    async def create_user(
        self,
        email: str,
        role: str,
        *,
        team: str = "default",
        display_name: str = "",
        password: str | None = None,
        actor_id: str = "system:cli",
        actor_role: str = SYSTEM_ROLE,
        request_id: str = "",
    ) -> tuple[StaffIdentity, str]:
        """Create a staff account; returns the identity and the password (generated if None)."""
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        team = team.strip()
        if not team or len(team) > 64:
            raise AccountError("team must be 1 to 64 characters")
        if len(display_name) > 120:
            raise AccountError("display name must be at most 120 characters")
        try:
            address = normalize_email(email)
        except ValueError:
            raise AccountError("not a valid e-mail address") from None
        password = password if password is not None else generate_password()
        check_password_rules(password, personal_words(address, display_name))
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            if await StaffUser.exists().where(StaffUser.email == address):
                raise AccountError("a staff account with this e-mail already exists")
            row = StaffUser(
                email=address,
                display_name=display_name.strip() or address.split("@")[0],
                password_hash=hash_password(password),
                role=role,
                team=team,
                is_active=True,
                created_at=now,
                password_changed_at=now,
            )
            await row.save()
            await self._record(
                actor_id,
                actor_role,
                "user.create",
                Outcome.ALLOWED,
                resource_id=str(row.id),
                fields=("email", "role", "team"),
                detail={"role": role},
                request_id=request_id,
            )
        return StaffIdentity(int(row.id), address, row.display_name, role, team), password

    async def find_by_email(self, email: str) -> StaffIdentity | None:
        try:
            address = normalize_email(email)
        except ValueError:
            return None
        row = await StaffUser.select().where(StaffUser.email == address).first()
        return _identity(row) if row else None

    async def get_user(self, user_id: int) -> tuple[StaffIdentity, bool] | None:
        """The identity and whether the account is active."""
        row = await StaffUser.select().where(StaffUser.id == user_id).first()
        return (_identity(row), bool(row["is_active"])) if row else None

    async def list_users(
        self, *, query: str = "", role: str = "", page: int = 1, page_size: int = USERS_PAGE_SIZE
    ) -> UserPage:
        select = StaffUser.select()
        count = StaffUser.count()
        if query.strip():
            term = f"%{query.strip().lower()}%"
            # SQLite's LIKE is already case-insensitive for ASCII and has no ILIKE.
            name_match = (
                StaffUser.display_name.like(term)
                if db.is_sqlite()
                else StaffUser.display_name.ilike(term)
            )
            condition = StaffUser.email.like(term) | name_match
            select = select.where(condition)
            count = count.where(condition)
        if role:
            select = select.where(StaffUser.role == role)
            count = count.where(StaffUser.role == role)
        total = int(await count)
        rows = (
            await select.order_by(StaffUser.email)
            .limit(page_size)
            .offset((max(page, 1) - 1) * page_size)
        )
        return UserPage(
            [_identity(r) for r in rows],
            {int(r["id"]): bool(r["is_active"]) for r in rows},
            total,
            page,
            page_size,
        )

    async def set_active(
        self, user_id: int, active: bool, *, by: StaffIdentity, request_id: str = ""
    ) -> None:
        """Disable (ending every session at once) or re-enable an account."""
        if user_id == by.user_id and not active:
            raise AccountError("you cannot disable your own account")
        async with db.write_transaction():
            if not await StaffUser.exists().where(StaffUser.id == user_id):
                raise AccountError("no such staff user")
            await StaffUser.update({StaffUser.is_active: active}).where(StaffUser.id == user_id)
            if not active:
                await StaffSession.delete().where(StaffSession.user_id == user_id)
            await self._record(
                by.actor_id,
                by.role,
                "user.enable" if active else "user.disable",
                Outcome.ALLOWED,
                resource_id=str(user_id),
                fields=("is_active",),
                request_id=request_id,
            )

    async def change_role(
        self,
        user_id: int,
        role: str,
        *,
        by: StaffIdentity,
        team: str | None = None,
        request_id: str = "",
    ) -> None:
        """Takes effect on the user's next request: roles are read per request."""
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if user_id == by.user_id and role != by.role:
            raise AccountError("you cannot change your own role")
        changes: dict[Any, Any] = {StaffUser.role: role}
        if team is not None:
            if not team.strip() or len(team) > 64:
                raise AccountError("team must be 1 to 64 characters")
            changes[StaffUser.team] = team.strip()
        async with db.write_transaction():
            if not await StaffUser.exists().where(StaffUser.id == user_id):
                raise AccountError("no such staff user")
            await StaffUser.update(changes).where(StaffUser.id == user_id)
            await self._record(
                by.actor_id,
                by.role,
                "user.role_change",
                Outcome.ALLOWED,
                resource_id=str(user_id),
                fields=tuple(c._meta.name for c in changes),
                detail={"role": role},
                request_id=request_id,
            )

    async def reset_password(
        self,
        user_id: int,
        password: str | None = None,
        *,
        actor_id: str = "system:cli",
        actor_role: str = SYSTEM_ROLE,
    ) -> str:
        """Set a new password (generated if None) and end every session of that user."""
        password = password if password is not None else generate_password()
        check_password_rules(password)
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            await StaffUser.update(
                {
                    StaffUser.password_hash: hash_password(password),
                    StaffUser.password_changed_at: now,
                }
            ).where(StaffUser.id == user_id)
            await StaffSession.delete().where(StaffSession.user_id == user_id)
            await self._record(
                actor_id,
                actor_role,
                "user.password_reset",
                Outcome.ALLOWED,
                resource_id=str(user_id),
            )
        return password

    async def issue_reset_link(
        self, user_id: int, *, by: StaffIdentity, request_id: str = ""
    ) -> str:
        """Force a password reset: the old password and sessions stop working now, and a
        single-use token (valid for an hour) lets the user choose a new password."""
        token = secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            if not await StaffUser.exists().where(StaffUser.id == user_id):
                raise AccountError("no such staff user")
            await PasswordResetToken.delete().where(PasswordResetToken.user_id == user_id)
            await PasswordResetToken.insert(
                PasswordResetToken(
                    token_hash=self._token_hash(token),
                    user_id=user_id,
                    created_at=now,
                    expires_at=now + RESET_LINK_LIFETIME,
                )
            ).run()
            # An unusable hash: no password verifies until the link is redeemed.
            await StaffUser.update({StaffUser.password_hash: "!reset-required"}).where(
                StaffUser.id == user_id
            )
            await StaffSession.delete().where(StaffSession.user_id == user_id)
            await self._record(
                by.actor_id,
                by.role,
                "user.force_reset",
                Outcome.ALLOWED,
                resource_id=str(user_id),
                request_id=request_id,
            )
        return token

    async def reset_link_is_valid(self, token: str) -> bool:
        return await self._live_reset(token) is not None

    async def _live_reset(self, token: str) -> dict[str, Any] | None:
        if not token or len(token) > 128:
            return None
        row: dict[str, Any] | None = (
            await PasswordResetToken.select()
            .where(PasswordResetToken.token_hash == self._token_hash(token))
            .first()
        )
        if row is None or row["used_at"] is not None:
            return None
        if row["expires_at"] <= dt.datetime.now(dt.UTC):
            return None
        return row

    async def redeem_reset_link(self, token: str, new_password: str, request_id: str = "") -> None:
        """Set the new password from a reset link; the link works exactly once."""
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            row = await self._live_reset(token)
            if row is None:
                raise AccountError("this reset link is invalid, expired or already used")
            user = await StaffUser.select().where(StaffUser.id == row["user_id"]).first()
            check_password_rules(
                new_password, personal_words(user["email"], user["display_name"]) if user else ()
            )
            await PasswordResetToken.update({PasswordResetToken.used_at: now}).where(
                PasswordResetToken.id == row["id"]
            )
            await StaffUser.update(
                {
                    StaffUser.password_hash: hash_password(new_password),
                    StaffUser.password_changed_at: now,
                }
            ).where(StaffUser.id == row["user_id"])
            await self._record(
                f"user:{row['user_id']}",
                "",
                "user.password_set",
                Outcome.ALLOWED,
                resource_id=str(row["user_id"]),
                request_id=request_id,
            )

    async def change_password(
        self, info: SessionInfo, token: str, current: str, new: str, request_id: str = ""
    ) -> None:
        """Change one's own password; every other session of the user ends."""
        row = await StaffUser.select().where(StaffUser.id == info.identity.user_id).first()
        if row is None or not verify_password(row["password_hash"], current):
            await self._record(
                info.identity.actor_id,
                info.identity.role,
                "user.password_change",
                Outcome.DENIED,
                resource_id=str(info.identity.user_id),
                reason="bad_credentials",
                request_id=request_id,
            )
            raise AccountError("the current password is not correct")
        check_password_rules(new, personal_words(row["email"], row["display_name"]))
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            await StaffUser.update(
                {StaffUser.password_hash: hash_password(new), StaffUser.password_changed_at: now}
            ).where(StaffUser.id == info.identity.user_id)
            await StaffSession.delete().where(
                (StaffSession.user_id == info.identity.user_id)
                & (StaffSession.token_hash != self._token_hash(token))
            )
            await self._record(
                info.identity.actor_id,
                info.identity.role,
                "user.password_change",
                Outcome.ALLOWED,
                resource_id=str(info.identity.user_id),
                request_id=request_id,
            )

    async def count_users(self) -> int:
        return int(await StaffUser.count())

    # --- sign-in -------------------------------------------------------------------------

    async def login(
        self,
        email: str,
        password: str,
        request_id: str = "",
        *,
        client_address: str = "",
        user_agent: str = "",
    ) -> LoginResult:
        """Check credentials under throttling; on success open a (possibly partial) session.

        Same work, same message and the same throttling whether or not the account
        exists, so neither the answer nor its timing reveals which e-mails are staff.
        """
        try:
            address = normalize_email(email)
        except ValueError:
            address = email.strip().lower()[:254]
        account_key = self.throttle.account_key(address)
        address_key = self.throttle.address_key(client_address or "unknown")
        wait = await self.throttle.wait_seconds(account_key, address_key)
        row = await StaffUser.select().where(StaffUser.email == address).first()
        if wait:
            verify_password(None, password)  # same cost as a real attempt
            await self._record(
                f"user:{row['id']}" if row else "anonymous",
                row["role"] if row else "",
                "login",
                Outcome.DENIED,
                resource_type="session",
                reason="throttled",
                request_id=request_id,
            )
            return LoginResult(LoginStatus.THROTTLED, retry_after=wait)
        ok = verify_password(row["password_hash"] if row else None, password)
        if not ok or row is None or not row["is_active"]:
            lock = await self._count_failure(account_key, address_key)
            reason = "disabled" if (ok and row is not None) else "bad_credentials"
            await self._record(
                f"user:{row['id']}" if row else "anonymous",
                row["role"] if row else "",
                "login",
                Outcome.DENIED,
                resource_type="session",
                reason=reason,
                request_id=request_id,
                detail={"locked_seconds": int(lock.total_seconds())} if lock else None,
            )
            if lock:
                return LoginResult(LoginStatus.THROTTLED, retry_after=int(lock.total_seconds()))
            return LoginResult(LoginStatus.INVALID)
        identity = _identity(row)
        if identity.has_totp:
            state = SessionState.MFA_REQUIRED
        elif self.second_factor_required(identity.role):
            state = SessionState.ENROLMENT_REQUIRED
        else:
            state = SessionState.ACTIVE
        if state is not SessionState.MFA_REQUIRED:
            # Cleared only once nothing is left to guess: with a second factor the count
            # goes on until the code is right (complete_second_factor).
            await self.throttle.clear(account_key)
        if needs_rehash(row["password_hash"]):
            await StaffUser.update({StaffUser.password_hash: hash_password(password)}).where(
                StaffUser.id == row["id"]
            )
        session = await self._open_session(
            identity, state, request_id, user_agent=user_agent, reason="password"
        )
        status = {
            SessionState.ACTIVE: LoginStatus.OK,
            SessionState.MFA_REQUIRED: LoginStatus.MFA_REQUIRED,
            SessionState.ENROLMENT_REQUIRED: LoginStatus.ENROLMENT_REQUIRED,
        }[state]
        return LoginResult(status, session)

    async def _count_failure(self, account_key: str, address_key: str) -> dt.timedelta:
        """One wrong password or code against the account and the client address; returns
        the longer of the locks it set (zero if none)."""
        lock = await self.throttle.record_failure(account_key, ACCOUNT_FREE_FAILURES)
        return max(lock, await self.throttle.record_failure(address_key, ADDRESS_FREE_FAILURES))

    async def _open_session(
        self,
        identity: StaffIdentity,
        state: SessionState,
        request_id: str,
        *,
        user_agent: str,
        reason: str,
        replace_token: str | None = None,
    ) -> NewSession:
        token = secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        lifetime = PENDING_MFA_LIFETIME if state is SessionState.MFA_REQUIRED else self.absolute
        expires = now + lifetime
        async with db.write_transaction():
            if replace_token is not None:
                await StaffSession.delete().where(
                    StaffSession.token_hash == self._token_hash(replace_token)
                )
            await StaffSession.insert(
                StaffSession(
                    token_hash=self._token_hash(token),
                    user_id=identity.user_id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires,
                    authenticated_at=now,
                    mfa_passed=state is SessionState.ACTIVE and identity.has_totp,
                    client=client_label(user_agent)[:120],
                    flash="[]",
                )
            ).run()
            if state is SessionState.ACTIVE:
                await StaffUser.update({StaffUser.last_login_at: now}).where(
                    StaffUser.id == identity.user_id
                )
            await self._record(
                identity.actor_id,
                identity.role,
                "login",
                Outcome.ALLOWED,
                resource_type="session",
                reason=reason if state is SessionState.ACTIVE else f"{reason}:{state}",
                request_id=request_id,
            )
        return NewSession(token, identity, expires)

    async def complete_second_factor(
        self,
        token: str,
        code: str,
        request_id: str = "",
        *,
        client_address: str = "",
        user_agent: str = "",
    ) -> LoginResult:
        """Finish a sign-in with a TOTP or recovery code; OK carries a new full session.

        Wrong codes count against the account and the client address exactly like wrong
        passwords (the password step does not reset the count), so a known password does
        not buy endless guesses at the code. The count is cleared only here, on success.
        """
        info = await self.session_info(token)
        if info is None or info.state is not SessionState.MFA_REQUIRED:
            return LoginResult(LoginStatus.INVALID)
        identity = info.identity
        account_key = self.throttle.account_key(identity.email)
        address_key = self.throttle.address_key(client_address or "unknown")
        wait = await self.throttle.wait_seconds(account_key, address_key)
        if wait:
            await self._second_factor_denied(identity, "throttled", request_id)
            return LoginResult(LoginStatus.THROTTLED, retry_after=wait)
        if not await self._code_is_valid(identity, code, request_id):
            lock = await self._count_failure(account_key, address_key)
            await self._second_factor_denied(identity, "bad_code", request_id, lock)
            if lock:
                return LoginResult(LoginStatus.THROTTLED, retry_after=int(lock.total_seconds()))
            return LoginResult(LoginStatus.INVALID)
        await self.throttle.clear(account_key)
        session = await self._open_session(
            identity,
            SessionState.ACTIVE,
            request_id,
            user_agent=user_agent,
            reason="second_factor",
            replace_token=token,
        )
        return LoginResult(LoginStatus.OK, session)

    async def _second_factor_denied(
        self,
        identity: StaffIdentity,
        reason: str,
        request_id: str,
        lock: dt.timedelta = dt.timedelta(0),
    ) -> None:
        """Audit a refused code: who and why, never the code itself."""
        await self._record(
            identity.actor_id,
            identity.role,
            "login.second_factor",
            Outcome.DENIED,
            resource_type="session",
            reason=reason,
            request_id=request_id,
            detail={"locked_seconds": int(lock.total_seconds())} if lock else None,
        )

    async def _code_is_valid(self, identity: StaffIdentity, code: str, request_id: str) -> bool:
        """A TOTP code (not replayable) or an unused recovery code; the caller throttles."""
        row = (
            await StaffUser.select(StaffUser.totp_secret, StaffUser.totp_last_step)
            .where(StaffUser.id == identity.user_id)
            .first()
        )
        if row is None or not row["totp_secret"]:
            return False
        secret = self._sealing.open_secret(TOTP_LABEL, str(identity.user_id), row["totp_secret"])
        step = second_factor.accept_code(secret, code, row["totp_last_step"])
        if step is None:
            return await self._use_recovery_code(identity, code, request_id)
        async with db.write_transaction():
            # Compare-and-set on the last step: two racing requests cannot both win.
            updated = (
                await StaffUser.update({StaffUser.totp_last_step: step})
                .where(
                    (StaffUser.id == identity.user_id)
                    & (StaffUser.totp_last_step.is_null() | (StaffUser.totp_last_step < step))
                )
                .returning(StaffUser.id)
            )
        return bool(updated)

    async def _use_recovery_code(self, identity: StaffIdentity, code: str, request_id: str) -> bool:
        digest = second_factor.recovery_code_hash(code)
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            used = (
                await StaffRecoveryCode.update({StaffRecoveryCode.used_at: now})
                .where(
                    (StaffRecoveryCode.user_id == identity.user_id)
                    & (StaffRecoveryCode.code_hash == digest)
                    & StaffRecoveryCode.used_at.is_null()
                )
                .returning(StaffRecoveryCode.id)
            )
            if used:
                await self._record(
                    identity.actor_id,
                    identity.role,
                    "login.recovery_code",
                    Outcome.ALLOWED,
                    resource_type="session",
                    request_id=request_id,
                )
        return bool(used)

    # --- second factor enrolment --------------------------------------------------------------

    def new_totp_secret(self) -> str:
        return second_factor.new_secret()

    async def enrol_totp(
        self,
        info: SessionInfo,
        token: str,
        secret: str,
        code: str,
        request_id: str = "",
        *,
        user_agent: str = "",
    ) -> tuple[NewSession, list[str]] | None:
        """Confirm enrolment with a first code; returns a fresh session and recovery codes."""
        step = second_factor.accept_code(secret, code, None)
        if step is None:
            await self._record(
                info.identity.actor_id,
                info.identity.role,
                "user.totp_enrol",
                Outcome.DENIED,
                resource_id=str(info.identity.user_id),
                reason="bad_code",
                request_id=request_id,
            )
            return None
        codes = second_factor.new_recovery_codes()
        sealed = self._sealing.seal_secret(TOTP_LABEL, str(info.identity.user_id), secret)
        async with db.write_transaction():
            await StaffUser.update(
                {StaffUser.totp_secret: sealed, StaffUser.totp_last_step: step}
            ).where(StaffUser.id == info.identity.user_id)
            await StaffRecoveryCode.delete().where(
                StaffRecoveryCode.user_id == info.identity.user_id
            )
            await StaffRecoveryCode.insert(
                *(
                    StaffRecoveryCode(
                        user_id=info.identity.user_id, code_hash=second_factor.recovery_code_hash(c)
                    )
                    for c in codes
                )
            ).run()
            await self._record(
                info.identity.actor_id,
                info.identity.role,
                "user.totp_enrol",
                Outcome.ALLOWED,
                resource_id=str(info.identity.user_id),
                request_id=request_id,
            )
        identity = StaffIdentity(**{**info.identity.__dict__, "has_totp": True})
        session = await self._open_session(
            identity,
            SessionState.ACTIVE,
            request_id,
            user_agent=user_agent,
            reason="totp_enrolled",
            replace_token=token,
        )
        return session, codes

    async def remaining_recovery_codes(self, user_id: int) -> int:
        return int(
            await StaffRecoveryCode.count().where(
                (StaffRecoveryCode.user_id == user_id) & StaffRecoveryCode.used_at.is_null()
            )
        )

    # --- sessions --------------------------------------------------------------------------

    async def session_info(self, token: str) -> SessionInfo | None:
        """The session behind a cookie, or None if unknown, expired or the user disabled.
        The session and its user are one statement (a join): every request asks."""
        if not token or len(token) > 128:
            return None
        found = await StaffSession.raw(SESSION_WITH_USER, self._token_hash(token))
        if not found:
            return None
        session, user = _prefixed(found[0], "s_"), _prefixed(found[0], "u_")
        now = dt.datetime.now(dt.UTC)
        if session["expires_at"] <= now or session["last_seen_at"] + self.idle <= now:
            await StaffSession.delete().where(StaffSession.id == session["id"])
            return None
        if user["id"] is None or not user["is_active"]:
            return None
        identity = _identity(user)
        if identity.has_totp and not session["mfa_passed"]:
            state = SessionState.MFA_REQUIRED
        elif not identity.has_totp and self.second_factor_required(identity.role):
            state = SessionState.ENROLMENT_REQUIRED
        else:
            state = SessionState.ACTIVE
        if now - session["last_seen_at"] >= LAST_SEEN_RESOLUTION:
            await StaffSession.update({StaffSession.last_seen_at: now}).where(
                StaffSession.id == session["id"]
            )
        return SessionInfo(
            int(session["id"]),
            identity,
            state,
            session["authenticated_at"],
            session["created_at"],
        )

    async def set_time_zone(self, user_id: int, zone: str, *, if_unset: bool = False) -> None:
        """Pages show this user's times in ``zone`` (a name :func:`known_zone` accepts).
        ``if_unset``: only if they never chose one (the browser's zone at sign-in)."""
        if not known_zone(zone):
            raise AccountError("unknown time zone")
        query = StaffUser.update({StaffUser.time_zone: zone}).where(StaffUser.id == user_id)
        if if_unset:
            query = query.where(StaffUser.time_zone == "")
        await query

    async def resolve(self, token: str) -> StaffIdentity | None:
        """The staff user behind a fully signed-in session (what the API requires)."""
        info = await self.session_info(token)
        return info.identity if info and info.state is SessionState.ACTIVE else None

    async def reauthenticate(
        self,
        token: str,
        password: str,
        code: str = "",
        request_id: str = "",
        *,
        user_agent: str = "",
    ) -> NewSession | None:
        """Confirm the password (and code) again before a sensitive action.

        The session id is replaced, as at login.
        """
        info = await self.session_info(token)
        if info is None or info.state is not SessionState.ACTIVE:
            return None
        row = await StaffUser.select().where(StaffUser.id == info.identity.user_id).first()
        ok = row is not None and verify_password(row["password_hash"], password)
        account_key = self.throttle.account_key(info.identity.email)
        if ok and info.identity.has_totp:
            ok = not await self.throttle.wait_seconds(account_key) and await self._code_is_valid(
                info.identity, code, request_id
            )
        if not ok:
            await self.throttle.record_failure(account_key, ACCOUNT_FREE_FAILURES)
            await self._record(
                info.identity.actor_id,
                info.identity.role,
                "reauth",
                Outcome.DENIED,
                resource_type="session",
                reason="bad_credentials",
                request_id=request_id,
            )
            return None
        await self.throttle.clear(account_key)  # password and code both right: start afresh
        return await self._open_session(
            info.identity,
            SessionState.ACTIVE,
            request_id,
            user_agent=user_agent,
            reason="reauth",
            replace_token=token,
        )

    async def list_sessions(self, user_id: int, current_token: str) -> list[SessionSummary]:
        rows = (
            await StaffSession.select()
            .where(StaffSession.user_id == user_id)
            .order_by(StaffSession.last_seen_at, ascending=False)
        )
        current = self._token_hash(current_token)
        return [
            SessionSummary(
                int(r["id"]),
                r["created_at"],
                r["last_seen_at"],
                r["client"],
                r["token_hash"] == current,
            )
            for r in rows
        ]

    async def end_session(
        self, identity: StaffIdentity, session_id: int, request_id: str = ""
    ) -> bool:
        async with db.write_transaction():
            deleted = (
                await StaffSession.delete()
                .where((StaffSession.id == session_id) & (StaffSession.user_id == identity.user_id))
                .returning(StaffSession.id)
            )
            if deleted:
                await self._record(
                    identity.actor_id,
                    identity.role,
                    "logout",
                    Outcome.ALLOWED,
                    resource_type="session",
                    reason="ended_by_user",
                    request_id=request_id,
                )
        return bool(deleted)

    async def logout(
        self, token: str, identity: StaffIdentity, request_id: str = "", *, everywhere: bool = False
    ) -> None:
        async with db.write_transaction():
            if everywhere:
                await StaffSession.delete().where(StaffSession.user_id == identity.user_id)
            else:
                await StaffSession.delete().where(
                    StaffSession.token_hash == self._token_hash(token)
                )
            await self._record(
                identity.actor_id,
                identity.role,
                "logout",
                Outcome.ALLOWED,
                resource_type="session",
                reason="everywhere" if everywhere else "allowed",
                request_id=request_id,
            )

    # --- one-shot messages for the next page (kept with the session, so any worker) ----------

    async def push_flash(self, token: str, message: str, kind: str = "info") -> None:
        row = (
            await StaffSession.select(StaffSession.flash)
            .where(StaffSession.token_hash == self._token_hash(token))
            .first()
        )
        if row is None:
            return
        messages = [*json.loads(row["flash"] or "[]")[-4:], {"kind": kind, "text": message}]
        await StaffSession.update({StaffSession.flash: json.dumps(messages)}).where(
            StaffSession.token_hash == self._token_hash(token)
        )

    async def pop_flash(self, token: str) -> list[dict[str, str]]:
        row = (
            await StaffSession.select(StaffSession.flash)
            .where(StaffSession.token_hash == self._token_hash(token))
            .first()
        )
        if row is None or row["flash"] in (None, "", "[]"):
            return []
        await StaffSession.update({StaffSession.flash: "[]"}).where(
            StaffSession.token_hash == self._token_hash(token)
        )
        messages: list[dict[str, str]] = json.loads(row["flash"])
        return messages
