"""Engines for the baseline, configured exactly as Consentry configures its own.

Same Piccolo engines, same SQLite busy timeout, WAL mode and ``synchronous=NORMAL``, same
PostgreSQL pool size (see ``server/db.py``): differences in connection handling would
otherwise show up as a "cost of privacy" that has nothing to do with privacy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine

SQLITE_BUSY_TIMEOUT_SECONDS = 30  # as server.db
POOL_MIN, POOL_MAX = 1, 10  # as server.db.start


class BaselineSQLiteEngine(SQLiteEngine):
    """SQLite with ``synchronous=NORMAL`` on every connection, as Consentry's engine."""

    async def get_connection(self) -> Any:
        connection = await super().get_connection()
        await connection.execute("PRAGMA synchronous = NORMAL")
        return connection


def engine_for_url(url: str) -> Engine[Any]:
    """A Piccolo engine for ``sqlite:////abs/path.db`` or ``postgresql://user@host/db``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return BaselineSQLiteEngine(path=path, timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
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


async def start(engine: Engine[Any]) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=POOL_MIN, max_size=POOL_MAX)
    elif isinstance(engine, SQLiteEngine):
        await engine.run_ddl("PRAGMA journal_mode=WAL")


async def stop(engine: Engine[Any]) -> None:
    if isinstance(engine, PostgresEngine):
        await engine.close_connection_pool()
