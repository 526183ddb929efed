"""Progressive lockout after failed logins, per account and per client address.

A failure is a wrong password or a wrong second-factor code (TOTP or recovery code).

Counters live in the database so that every worker sees the same numbers. Keys are HMACs
of the normalised e-mail and of the client address, so the table holds no e-mail or IP.
The same counter applies to unknown e-mails: a lockout reveals nothing about whether an
account exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from server import db
from server.auth.tables import LoginThrottle

ACCOUNT_FREE_FAILURES = 5  # the 5th failure locks the account for a minute
ADDRESS_FREE_FAILURES = 20  # many people may share an office's address
FIRST_LOCK = dt.timedelta(minutes=1)
MAX_LOCK = dt.timedelta(hours=1)
FORGET_AFTER = dt.timedelta(hours=1)  # a quiet hour resets the counter


def lock_for(failures: int, free: int) -> dt.timedelta:
    """No lock below ``free`` failures, then 1, 2, 4 ... minutes, at most an hour."""
    if failures < free:
        return dt.timedelta(0)
    return min(FIRST_LOCK * (1 << min(failures - free, 16)), MAX_LOCK)


class LoginThrottler:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def account_key(self, normalized_email: str) -> str:
        return self._key("account", normalized_email)

    def address_key(self, address: str) -> str:
        return self._key("address", address)

    def _key(self, kind: str, value: str) -> str:
        message = f"consentry/throttle|{kind}|{value}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    async def wait_seconds(self, *keys: str) -> int:
        """Seconds until every key is unlocked (0 if none is locked)."""
        now = dt.datetime.now(dt.UTC)
        rows = await LoginThrottle.select(LoginThrottle.locked_until).where(
            LoginThrottle.key.is_in(list(keys))
        )
        waits = [(r["locked_until"] - now).total_seconds() for r in rows if r["locked_until"]]
        return max([0, *[int(w) + 1 for w in waits if w > 0]])

    async def record_failure(self, key: str, free: int) -> dt.timedelta:
        """Count one failure; returns the lock it triggered (zero if none)."""
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            # Two first failures at once (two workers) must not both insert: the row is
            # made if missing, then read locked (SQLite's IMMEDIATE transaction already
            # serialises writers; PostgreSQL needs FOR UPDATE).
            await (
                LoginThrottle.insert(
                    LoginThrottle(key=key, failures=0, last_failure_at=now, locked_until=None)
                )
                .on_conflict(action="DO NOTHING")
                .run()
            )
            query = LoginThrottle.select().where(LoginThrottle.key == key)
            if not db.is_sqlite():
                query = query.lock_rows()
            row = await query.first()
            stale = row is None or now - row["last_failure_at"] > FORGET_AFTER
            failures = 1 if row is None or stale else int(row["failures"]) + 1
            lock = lock_for(failures, free)
            await LoginThrottle.update(
                {
                    LoginThrottle.failures: failures,
                    LoginThrottle.last_failure_at: now,
                    LoginThrottle.locked_until: now + lock if lock else None,
                }
            ).where(LoginThrottle.key == key)
        return lock

    async def clear(self, key: str) -> None:
        await LoginThrottle.delete().where(LoginThrottle.key == key)
