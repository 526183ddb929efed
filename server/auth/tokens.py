"""API tokens: personal tokens and service accounts, as actors of their own.

A token is bound, when it is made, to a role no wider than its creator's (asked of the
policy: :meth:`PolicyEngine.role_within`), a set of purposes the role may act for, an
optional field allow-list and an expiry. Its secret is shown once; the database keeps
only HMAC-SHA256(key, secret), the key derived from the master key's index root
(``Vault.derived_key``), so a stolen database yields no usable token.

Every bearer request looks the token up in the database - there is no per-worker cache -
so a revocation (or the creator's deactivation, or a narrowing of the creator's role) is
effective on the next request in every worker. The same row carries the last-used time
and the per-minute call count of the rate limit, so every worker counts against one
number. Calls made with a token are audited with ``token:<id>`` as the actor; the gateway
narrows every decision by the token's purposes and fields (:class:`TokenLimits`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import ROLES, PolicyEngine, TokenLimits
from server import db
from server.auth.service import StaffIdentity
from server.auth.tables import ApiToken, StaffUser
from server.datamap import PURPOSES, RECORD_TYPES
from server.identity import TokenRateLimited
from server.logs import get_logger

# "Consentry token": lets secret scanners recognise a leaked one (a prefix, not a secret).
SECRET_PREFIX = "cst_"  # noqa: S105
MAX_SECRET = 128
HINT_LENGTH = 10  # "cst_" and six characters of the secret, shown in lists
DEFAULT_DAYS = 90
MAX_DAYS = 366
MAX_NAME = 80
WINDOW = dt.timedelta(minutes=1)
log = get_logger("consentry.tokens")


class TokenKind(enum.StrEnum):
    PERSONAL = "personal"  # acts with its creator's record scope; listed under My account
    SERVICE = "service"  # a website or another system; managed in Settings by admins


# What the policy must allow a role to manage each kind (policy.csv, "API tokens").
MANAGE = {
    TokenKind.PERSONAL: ("api_token", "manage"),
    TokenKind.SERVICE: ("service_account", "manage"),
}


class TokenError(ValueError):
    """Refused token input or action; the message is safe to show (never a secret)."""


class TokenNotFound(TokenError):
    def __init__(self) -> None:
        super().__init__("no such token")


@dataclass(frozen=True)
class TokenInfo:
    id: str
    kind: TokenKind
    name: str
    role: str
    purposes: tuple[str, ...]
    fields: tuple[str, ...] | None
    created_by: int
    hint: str
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and self.expires_at > dt.datetime.now(dt.UTC)

    @property
    def limits(self) -> TokenLimits:
        fields = None if self.fields is None else frozenset(self.fields)
        return TokenLimits(frozenset(self.purposes), fields)


@dataclass(frozen=True)
class NewToken:
    info: TokenInfo
    secret: str  # shown once; never stored


# A token and the staff user who made it in one statement (every bearer call asks): the
# token's columns as they are, the creator's under ``creator_``. On PostgreSQL the token
# row is locked (``FOR UPDATE OF t``) for the rate-limit count.
_CREATOR_COLUMNS = ("id", "email", "role", "team", "is_active")
TOKEN_WITH_CREATOR = (
    "SELECT t.*, "  # noqa: S608 - names from this module only; the secret's hash is a parameter
    + ", ".join(f'u."{c}" AS "creator_{c}"' for c in _CREATOR_COLUMNS)
    + f' FROM "{ApiToken._meta.tablename}" AS t'
    + f' LEFT JOIN "{StaffUser._meta.tablename}" AS u ON u."id" = t."created_by"'
    + ' WHERE t."secret_hash" = {}'
)


def _info(row: dict[str, Any]) -> TokenInfo:
    fields = None if row["fields"] is None else tuple(json.loads(row["fields"]))
    return TokenInfo(
        id=str(row["id"]),
        kind=TokenKind(row["kind"]),
        name=str(row["name"]),
        role=str(row["role"]),
        purposes=tuple(json.loads(row["purposes"] or "[]")),
        fields=fields,
        created_by=int(row["created_by"]),
        hint=str(row["hint"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def known_fields() -> frozenset[str]:
    """Every name a field allow-list may hold: ``email`` or ``contact.email``."""
    names = {f.name for rt in RECORD_TYPES.values() for f in rt.fields}
    qualified = {f"{r}.{f.name}" for r, rt in RECORD_TYPES.items() for f in rt.fields}
    return frozenset(names | qualified)


def policy_objects() -> frozenset[str]:
    """The concrete objects a role comparison is asked over (data-map fields, purposes)."""
    objects = {f"purpose:{name}" for name in PURPOSES}
    for resource, rt in RECORD_TYPES.items():
        objects |= {resource, *(f"{resource}.{f.name}" for f in rt.fields)}
    return frozenset(objects)


class ApiTokens:
    def __init__(
        self, audit: AuditLog, policy: PolicyEngine, key: bytes, *, rate_per_minute: int
    ) -> None:
        self._audit = audit
        self._policy = policy
        self._key = key
        self.rate_per_minute = rate_per_minute
        self._objects = policy_objects()

    def _hash(self, secret: str) -> str:
        return hmac.new(self._key, secret.encode(), hashlib.sha256).hexdigest()

    def may_manage(self, identity: StaffIdentity, kind: TokenKind) -> bool:
        """Tokens never make or revoke tokens; staff may as far as the policy says."""
        resource, action = MANAGE[kind]
        return identity.token is None and self._policy.allows(identity.role, resource, action)

    def roles_for(self, identity: StaffIdentity) -> list[str]:
        """The roles a token made by ``identity`` may be bound to (none wider than theirs)."""
        return [r for r in ROLES if self._policy.role_within(r, identity.role, self._objects)]

    def purposes_for(self, role: str) -> list[str]:
        return [p for p in PURPOSES if self._policy.allows(role, f"purpose:{p}", "use")]

    def _check(
        self,
        identity: StaffIdentity,
        role: str,
        purposes: Iterable[str],
        fields: Iterable[str] | None,
    ) -> tuple[list[str], list[str] | None]:
        if role not in ROLES:
            raise TokenError(f"unknown role; roles: {', '.join(ROLES)}")
        if not self._policy.role_within(role, identity.role, self._objects):
            raise TokenError("a token's role may not be wider than your own")
        chosen = sorted(set(purposes))
        if not chosen:
            raise TokenError("choose at least one purpose")
        usable = self.purposes_for(role)
        wrong = [p for p in chosen if p not in usable]
        if wrong:
            raise TokenError(
                f"the role {role} may not act for: {', '.join(wrong)} (it may for: "
                f"{', '.join(usable)})"
            )
        if fields is None:
            return chosen, None
        allowed = sorted(set(fields))
        unknown = [f for f in allowed if f not in known_fields()]
        if unknown:
            raise TokenError("unknown field(s) in the allow-list: " + ", ".join(unknown[:5]))
        if not allowed:
            raise TokenError("a field allow-list needs at least one field (or leave it out)")
        return chosen, allowed

    async def create(
        self,
        identity: StaffIdentity,
        kind: TokenKind,
        *,
        name: str,
        role: str,
        purposes: Iterable[str],
        fields: Iterable[str] | None = None,
        days: int = DEFAULT_DAYS,
        request_id: str = "",
    ) -> NewToken:
        if not self.may_manage(identity, kind):
            raise TokenError(f"you may not make {kind.value} tokens")
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME:
            raise TokenError(f"a token needs a name of 1 to {MAX_NAME} characters")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
            raise TokenError(f"expiry must be 1 to {MAX_DAYS} days")
        chosen, allowed = self._check(identity, role, purposes, fields)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "kind": kind.value,
            "name": name,
            "role": role,
            "purposes": json.dumps(chosen),
            "fields": None if allowed is None else json.dumps(allowed),
            "created_by": identity.user_id,
            "team": identity.team,
            "secret_hash": self._hash(secret),
            "hint": secret[:HINT_LENGTH],
            "created_at": now,
            "expires_at": now + dt.timedelta(days=days),
            "revoked_at": None,
            "last_used_at": None,
        }
        async with db.write_transaction():
            await ApiToken.insert(ApiToken(**row)).run()
            await self._record(identity, "token.create", str(row["id"]), kind, role, request_id)
        return NewToken(_info(row), secret)

    async def _record(
        self,
        identity: StaffIdentity,
        action: str,
        token_id: str,
        kind: TokenKind,
        role: str,
        request_id: str,
    ) -> None:
        await self._audit.append(
            audit_event(
                actor_id=identity.actor_id,
                actor_role=identity.role,
                action=action,
                resource_type="api_token",
                resource_id=token_id,
                outcome=Outcome.ALLOWED,
                request_id=request_id,
                detail={"kind": kind.value, "role": role},
            )
        )

    async def list(self, identity: StaffIdentity, kind: TokenKind) -> list[TokenInfo]:
        """A person's own personal tokens; every service account (for their managers)."""
        if not self.may_manage(identity, kind):
            return []
        query = ApiToken.select().where(ApiToken.kind == kind.value)
        if kind is TokenKind.PERSONAL:
            query = query.where(ApiToken.created_by == identity.user_id)
        rows = await query.order_by(ApiToken.created_at, ascending=False)
        return [_info(row) for row in rows]

    async def get(self, identity: StaffIdentity, token_id: str) -> TokenInfo:
        """One token ``identity`` manages (anything else: not found)."""
        try:
            key = uuid.UUID(str(token_id))
        except ValueError:
            raise TokenNotFound() from None
        row = await ApiToken.select().where(ApiToken.id == key).first()
        if row is None:
            raise TokenNotFound()
        info = _info(row)
        if not self.may_manage(identity, info.kind):
            raise TokenNotFound()
        if info.kind is TokenKind.PERSONAL and info.created_by != identity.user_id:
            raise TokenNotFound()
        return info

    async def labels(self, actor_ids: Iterable[str]) -> dict[str, str]:
        """``token:<id>`` actor ids as people read them: "API token “Website form”"."""
        keys = []
        for actor_id in set(actor_ids):
            if actor_id.startswith("token:"):
                with contextlib.suppress(ValueError):
                    keys.append(uuid.UUID(actor_id.removeprefix("token:")))
        if not keys:
            return {}
        rows = await ApiToken.select(ApiToken.id, ApiToken.name).where(ApiToken.id.is_in(keys))
        return {f"token:{row['id']}": f"API token “{row['name']}”" for row in rows}

    async def revoke(
        self, identity: StaffIdentity, token_id: str, request_id: str = ""
    ) -> TokenInfo:
        """Revoke at once: the next request with it fails, in every worker."""
        info = await self.get(identity, token_id)
        if info.revoked_at is not None:
            return info
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            await ApiToken.update({ApiToken.revoked_at: now}).where(
                (ApiToken.id == uuid.UUID(info.id)) & ApiToken.revoked_at.is_null()
            )
            await self._record(identity, "token.revoke", info.id, info.kind, info.role, request_id)
        return await self.get(identity, token_id)

    async def resolve(self, secret: str) -> StaffIdentity | None:
        """The identity a bearer secret acts as, or None (unknown, revoked, expired, its
        creator deactivated or narrowed below it). Counts the call against the token's
        per-minute limit (:class:`TokenRateLimited` past it) and stamps its last use."""
        if not secret.startswith(SECRET_PREFIX) or len(secret) > MAX_SECRET:
            return None
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            sql = TOKEN_WITH_CREATOR + ("" if db.is_sqlite() else " FOR UPDATE OF t")
            found = await ApiToken.raw(sql, self._hash(secret))
            row = found[0] if found else None
            if row is None or row["revoked_at"] is not None or row["expires_at"] <= now:
                return None
            creator = {k[8:]: v for k, v in row.items() if k.startswith("creator_")}
            if creator["id"] is None or not creator["is_active"]:
                return None
            info = _info(row)
            if not self._policy.role_within(info.role, creator["role"], self._objects):
                return None
            minute = now.replace(second=0, microsecond=0)
            started = row["window_start"]
            same = started is not None and started.replace(second=0, microsecond=0) == minute
            calls = int(row["window_calls"]) + 1 if same else 1
            if calls > self.rate_per_minute:
                log.info("refused", status=429, error="token_rate_limited")
                raise TokenRateLimited(max(1, int((minute + WINDOW - now).total_seconds()) + 1))
            await ApiToken.update(
                {
                    ApiToken.window_start: minute,
                    ApiToken.window_calls: calls,
                    ApiToken.last_used_at: now,
                }
            ).where(ApiToken.id == row["id"])
        return StaffIdentity(
            user_id=int(creator["id"]),
            email=str(creator["email"]),
            display_name=info.name,
            role=info.role,
            team=str(creator["team"]),
            token=info.limits,
            token_id=info.id,
        )
