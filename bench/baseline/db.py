"""Engines for the baseline, configured exactly as Consentry configures its own.

Same engines and connection handling: on SQLite the same long-lived readers and single
writer (``server.sqlite_engine``, which imports nothing of Consentry), the same busy
timeout, WAL mode and ``synchronous=NORMAL``; on PostgreSQL an asyncpg pool of the same
size, opened in full at start-up as ``consentry serve`` opens its own. Both are sized by
``CONSENTRY_DB_POOL_SIZE`` (default 10), as Consentry's are. Differences in connection
handling would otherwise show up as a "cost of privacy" that has nothing to do with
privacy (bench/results/connections.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine

from server.sqlite_engine import DEFAULT_POOL_SIZE, PooledSQLiteEngine

SQLITE_BUSY_TIMEOUT_SECONDS = 30  # as server.db


def pool_size() -> int:
    """``CONSENTRY_DB_POOL_SIZE``, as Consentry reads it (default 10)."""
    return int(os.environ.get("CONSENTRY_DB_POOL_SIZE") or DEFAULT_POOL_SIZE)


class BaselineSQLiteEngine(PooledSQLiteEngine):
    """The pooled SQLite engine Consentry uses, ``synchronous=NORMAL`` included."""


def engine_for_url(url: str) -> Engine[Any]:
    """A Piccolo engine for ``sqlite:////abs/path.db`` or ``postgresql://user@host/db``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return BaselineSQLiteEngine(
            path=path, timeout=SQLITE_BUSY_TIMEOUT_SECONDS, pool_size=pool_size()
        )
    if parsed.scheme in {"postgresql", "postgres"}:
        config: dict[str, Any] = {
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or 5432,
            "user": unquote(parsed.username) if parsed.username else "postgres",
            "database": parsed.path.lstrip("/"),
        }
        if parsed.password:
            config["password"] = unquote(parsed.password)
        return PostgresEngine(config=config)
    raise ValueError(f"unsupported database URL scheme {parsed.scheme!r}")


async def start(engine: Engine[Any], *, prefill: bool = False) -> None:
    """As ``server.db.start``: ``prefill`` (the server) opens every connection now."""
    size = pool_size()
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=size if prefill else 1, max_size=size)
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.run_ddl("PRAGMA journal_mode=WAL")
        if prefill:
            await engine.prefill()


async def stop(engine: Engine[Any]) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.close_connections()
