"""Which worker of a deployment seals: one at a time, elected, and replaced when it dies.

Sealing is correct with any number of sealers (``AuditTrail.seal`` takes its own lock and a
head's ``tree_size`` is unique), but every worker sealing means every worker polling the
log several times a second and queueing for the write lock that the requests need. So one
worker holds the sealer lease and seals; the others only watch for a stall (``/ready``
and the stall alert still work in every worker) and try for the lease now and then.

The lease is a lock the operating system or the database drops by itself when its holder
dies - no expiry to tune, no clock to trust:

- PostgreSQL: a session-level advisory lock, held on a connection of its own (not one of
  the pool's). A worker that dies or loses that connection loses the lock with it.
- SQLite: an exclusive ``flock`` on a file next to the database (``<db>.sealer.lock``),
  which the kernel releases when the process holding it exits, however it exits. Workers
  of one deployment share the database file, so they share the lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

PG_SEALER_LOCK = 0x0C0A_5EA2  # session advisory lock id (seal() itself uses 0x0C0A_5EA1)


class SealerLease(Protocol):
    """Held by at most one worker of a deployment at a time."""

    async def acquire(self) -> bool:
        """Take the lease, or confirm it is still held; False if another worker has it
        (or it cannot be reached right now). Never raises for a database hiccup."""
        ...

    async def release(self) -> None: ...

    @property
    def held(self) -> bool: ...


class PostgresSealerLease:
    def __init__(self, connect: dict[str, Any]) -> None:
        self._connect = connect
        self._conn: asyncpg.Connection | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    async def acquire(self) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self._held = False
                self._conn = await asyncpg.connect(**self._connect)
            if self._held:
                # Still ours only if the session that holds it is still alive.
                await self._conn.fetchval("SELECT 1")
            else:
                self._held = bool(
                    await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", PG_SEALER_LOCK)
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self._drop()
        return self._held

    async def release(self) -> None:
        if self._conn is not None and self._held and not self._conn.is_closed():
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self._conn.fetchval("SELECT pg_advisory_unlock($1)", PG_SEALER_LOCK)
        await self._drop()

    async def _drop(self) -> None:
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await conn.close(timeout=2)


class FileSealerLease:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    async def acquire(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another worker holds it
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


def sealer_lease(engine: Engine[Any]) -> SealerLease:
    """The lease for the deployment ``engine`` points at."""
    if isinstance(engine, PostgresEngine):
        return PostgresSealerLease(dict(engine.config))
    if isinstance(engine, SQLiteEngine):
        return FileSealerLease(Path(f"{engine.path}.sealer.lock"))
    raise TypeError(f"no sealer lease for the {engine.engine_type} engine")
