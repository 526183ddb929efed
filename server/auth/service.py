"""Staff accounts and server-side sessions stored in the database.

A session cookie carries a random token; the database stores only HMAC(session secret,
token), so a leaked database does not yield usable cookies. Every login creates a new
session row, so the session id is always fresh at login (no fixation). Sessions live in
the database, so any number of workers share them and they survive restarts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from audit.events import AuditEvent, Outcome
from audit.log import AuditLog
from policy.enforcer import ROLES
from server import db
from server.auth.passwords import (
    check_password_rules,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from server.auth.tables import StaffSession, StaffUser
from server.datamap import normalize_email

LAST_SEEN_RESOLUTION = dt.timedelta(minutes=1)


class AccountError(ValueError):
    """Bad account input; the message is safe to show."""


@dataclass(frozen=True)
class StaffIdentity:
    user_id: int
    email: str
    display_name: str
    role: str
    team: str


@dataclass(frozen=True)
class NewSession:
    token: str
    identity: StaffIdentity
    expires_at: dt.datetime


def _identity(row: dict[str, Any]) -> StaffIdentity:
    return StaffIdentity(
        int(row["id"]), row["email"], row["display_name"], row["role"], row["team"]
    )


class StaffAccounts:
    def __init__(
        self, audit: AuditLog, session_secret: bytes, *, idle_minutes: int, absolute_hours: int
    ) -> None:
        self._audit = audit
        self._secret = session_secret
        self.idle = dt.timedelta(minutes=idle_minutes)
        self.absolute = dt.timedelta(hours=absolute_hours)

    def _token_hash(self, token: str) -> str:
        return hmac.new(self._secret, token.encode(), hashlib.sha256).hexdigest()

    async def create_user(
        self,
        email: str,
        role: str,
        *,
        team: str = "default",
        display_name: str = "",
        password: str | None = None,
        actor_id: str = "system:cli",
    ) -> tuple[StaffIdentity, str]:
        """Create a staff account; returns the identity and the password (generated if None)."""
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        try:
            address = normalize_email(email)
        except ValueError:
            raise AccountError("not a valid e-mail address") from None
        password = password if password is not None else generate_password()
        check_password_rules(password)
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            if await StaffUser.exists().where(StaffUser.email == address):
                raise AccountError("a staff account with this e-mail already exists")
            row = StaffUser(
                email=address,
                display_name=display_name or address.split("@")[0],
                password_hash=hash_password(password),
                role=role,
                team=team,
                is_active=True,
                created_at=now,
                password_changed_at=now,
            )
            await row.save()
            await self._audit.append(
                AuditEvent(
                    actor_id=actor_id,
                    actor_role="system" if actor_id.startswith("system") else "admin",
                    action="user.create",
                    resource_type="staff_user",
                    resource_id=str(row.id),
                    outcome=Outcome.ALLOWED,
                    reason="allowed",
                    fields=("email", "role", "team"),
                    detail={"role": role},
                )
            )
        return StaffIdentity(int(row.id), address, row.display_name, role, team), password

    async def login(self, email: str, password: str, request_id: str = "") -> NewSession | None:
        """Check credentials; on success open a new session. Same timing either way."""
        try:
            address = normalize_email(email)
        except ValueError:
            address = ""
        row = (
            await StaffUser.select().where(StaffUser.email == address).first() if address else None
        )
        ok = verify_password(row["password_hash"] if row else None, password)
        ok = ok and row is not None and bool(row["is_active"])
        if not ok or row is None:
            async with db.write_transaction():
                await self._audit.append(
                    AuditEvent(
                        actor_id=f"user:{row['id']}" if row else "anonymous",
                        actor_role=row["role"] if row else "",
                        action="login",
                        resource_type="session",
                        outcome=Outcome.DENIED,
                        reason="bad_credentials" if row is None or row["is_active"] else "disabled",
                        request_id=request_id,
                    )
                )
            return None
        token = secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        expires = now + self.absolute
        async with db.write_transaction():
            changes: dict[Any, Any] = {StaffUser.last_login_at: now}
            if needs_rehash(row["password_hash"]):
                changes[StaffUser.password_hash] = hash_password(password)
            await StaffUser.update(changes).where(StaffUser.id == row["id"])
            await StaffSession.insert(
                StaffSession(
                    token_hash=self._token_hash(token),
                    user_id=row["id"],
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires,
                )
            ).run()
            await self._audit.append(
                AuditEvent(
                    actor_id=f"user:{row['id']}",
                    actor_role=row["role"],
                    action="login",
                    resource_type="session",
                    outcome=Outcome.ALLOWED,
                    reason="allowed",
                    request_id=request_id,
                )
            )
        return NewSession(token, _identity(row), expires)

    async def resolve(self, token: str) -> StaffIdentity | None:
        """The staff user behind a session cookie, or None if unknown, expired or disabled."""
        if not token or len(token) > 128:
            return None
        session = (
            await StaffSession.select()
            .where(StaffSession.token_hash == self._token_hash(token))
            .first()
        )
        if session is None:
            return None
        now = dt.datetime.now(dt.UTC)
        if session["expires_at"] <= now or session["last_seen_at"] + self.idle <= now:
            await StaffSession.delete().where(StaffSession.id == session["id"])
            return None
        user = await StaffUser.select().where(StaffUser.id == session["user_id"]).first()
        if user is None or not user["is_active"]:
            return None
        if now - session["last_seen_at"] >= LAST_SEEN_RESOLUTION:
            await StaffSession.update({StaffSession.last_seen_at: now}).where(
                StaffSession.id == session["id"]
            )
        return _identity(user)

    async def logout(self, token: str, identity: StaffIdentity, request_id: str = "") -> None:
        async with db.write_transaction():
            await StaffSession.delete().where(StaffSession.token_hash == self._token_hash(token))
            await self._audit.append(
                AuditEvent(
                    actor_id=f"user:{identity.user_id}",
                    actor_role=identity.role,
                    action="logout",
                    resource_type="session",
                    outcome=Outcome.ALLOWED,
                    reason="allowed",
                    request_id=request_id,
                )
            )

    async def find_by_email(self, email: str) -> StaffIdentity | None:
        row = await StaffUser.select().where(StaffUser.email == normalize_email(email)).first()
        return _identity(row) if row else None

    async def reset_password(
        self, user_id: int, password: str | None = None, *, actor_id: str = "system:cli"
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
            await self._audit.append(
                AuditEvent(
                    actor_id=actor_id,
                    actor_role="system" if actor_id.startswith("system") else "admin",
                    action="user.password_reset",
                    resource_type="staff_user",
                    resource_id=str(user_id),
                    outcome=Outcome.ALLOWED,
                    reason="allowed",
                )
            )
        return password

    async def count_users(self) -> int:
        return int(await StaffUser.count())
