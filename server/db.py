"""Database engines for SQLite (embedded default) and PostgreSQL (production).

Piccolo looks its engine up through a ``piccolo_conf`` module; ours
(:mod:`server.piccolo_conf`) asks this module, so the engine follows the settings rather
than a hard-coded file. Writes use :func:`write_transaction`, which on SQLite is an
IMMEDIATE transaction (the writer lock is taken up front, so two writers queue on the busy
timeout instead of failing with "database is locked" halfway through).

Connections are kept, not opened per query: on SQLite a few long-lived readers and one
writer (:mod:`server.sqlite_engine`), on PostgreSQL the asyncpg pool. Both are sized by
``CONSENTRY_DB_POOL_SIZE``, opened by :func:`start` and closed by :func:`stop`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.table import Table

from server.settings import ConfigurationError, get_settings
from server.sqlite_engine import DEFAULT_POOL_SIZE, PooledSQLiteEngine

os.environ.setdefault("PICCOLO_CONF", "server.piccolo_conf")

SQLITE_BUSY_TIMEOUT_SECONDS = 30

_engine: Engine[Any] | None = None


class ConsentrySQLiteEngine(PooledSQLiteEngine):
    """Consentry's SQLite engine: long-lived readers and one writer (server.sqlite_engine).

    Every connection runs with ``synchronous=NORMAL``: in WAL mode that never corrupts the
    database; it only lets the last commits before a power cut (not a process crash) be
    lost, and it saves an fsync per commit (measured: ~10% more audited writes per second
    on one writer). Deployments that cannot accept the power-cut window use PostgreSQL.
    """


class ConsentryPostgresEngine(PostgresEngine):
    """PostgreSQL with the asyncpg pool sized by ``CONSENTRY_DB_POOL_SIZE`` (:func:`start`)."""

    def __init__(self, config: dict[str, Any], *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(config=config)
        self.pool_size = pool_size


def engine_for_url(url: str, *, pool_size: int | None = None) -> Engine[Any]:
    """Build a Piccolo engine for a ``sqlite:///path`` or ``postgresql://`` URL, with
    ``pool_size`` connections (default: ``CONSENTRY_DB_POOL_SIZE``)."""
    size = pool_size if pool_size is not None else get_settings().db_pool_size
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            path = path.lstrip("/")  # sqlite:///relative/path.db
        if not path:
            raise ConfigurationError("a SQLite URL needs a file path: sqlite:///path/to/file.db")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return ConsentrySQLiteEngine(path=path, timeout=SQLITE_BUSY_TIMEOUT_SECONDS, pool_size=size)
    if parsed.scheme in {"postgresql", "postgres"}:
        config: dict[str, Any] = {
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or 5432,
            "user": unquote(parsed.username) if parsed.username else "postgres",
            "database": parsed.path.lstrip("/") or "consentry",
        }
        if parsed.password:
            config["password"] = unquote(parsed.password)
        return ConsentryPostgresEngine(config=config, pool_size=size)
    raise ConfigurationError(
        f"unsupported database URL scheme {parsed.scheme!r}: use sqlite:/// or postgresql://"
    )


def get_engine() -> Engine[Any]:
    global _engine
    if _engine is None:
        settings = get_settings()
        _engine = engine_for_url(settings.resolved_database_url, pool_size=settings.db_pool_size)
    return _engine


def set_engine(engine: Engine[Any]) -> Engine[Any]:
    """Point every table at ``engine`` (used by the app factory and by tests)."""
    global _engine
    _engine = engine
    from piccolo.table import TABLE_REGISTRY

    for table in TABLE_REGISTRY:
        table._meta.db = engine
    return engine


def is_sqlite(engine: Engine[Any] | None = None) -> bool:
    return (engine or get_engine()).engine_type == "sqlite"


@asynccontextmanager
async def write_transaction() -> AsyncIterator[None]:
    """One atomic unit of work; nested calls join the outer transaction."""
    engine = get_engine()
    if isinstance(engine, SQLiteEngine):
        if engine.current_transaction.get() is not None:
            yield
            return
        async with engine.transaction(transaction_type=TransactionType.immediate):
            yield
    else:
        async with engine.transaction():
            yield


def in_transaction() -> bool:
    """Whether the caller runs inside a transaction (its writes are not committed yet)."""
    return get_engine().current_transaction.get() is not None


async def start(engine: Engine[Any] | None = None, *, prefill: bool = False) -> None:
    """Make the engine ready. ``prefill`` (the server): open every pooled connection now,
    so that a database that cannot take them fails the start, not the first busy minute."""
    engine = engine or get_engine()
    if isinstance(engine, PostgresEngine):
        size = _pool_size(engine)
        await engine.start_connection_pool(min_size=size if prefill else 1, max_size=size)
    elif isinstance(engine, SQLiteEngine):
        # WAL lets readers proceed while one writer commits; the setting persists in the file.
        await engine.run_ddl("PRAGMA journal_mode=WAL")
        if prefill and isinstance(engine, PooledSQLiteEngine):
            await engine.prefill()


async def stop(engine: Engine[Any] | None = None) -> None:
    """Close the engine's connections (the next query would open what it needs again)."""
    engine = engine or get_engine()
    if isinstance(engine, PostgresEngine):
        if engine.pool is not None:
            await engine.close_connection_pool()
    elif isinstance(engine, PooledSQLiteEngine):
        await engine.close_connections()


def _pool_size(engine: Engine[Any]) -> int:
    return engine.pool_size if isinstance(engine, ConsentryPostgresEngine) else DEFAULT_POOL_SIZE


@dataclass(frozen=True)
class PoolStatus:
    """What this process holds of the database: no address, user or file name."""

    engine: str  # "sqlite" | "postgres"
    size: int  # SQLite: reader connections at most (plus the one writer); PostgreSQL: pool max
    open: int  # connections open now (SQLite: writer included)
    in_use: int  # connections lent to a query or transaction now


def pool_status(engine: Engine[Any] | None = None) -> PoolStatus:
    """The connection pool's size and use, for the start-up log line and ``/ready``."""
    engine = engine or get_engine()
    if isinstance(engine, PooledSQLiteEngine):
        sqlite = engine.pool_status()
        return PoolStatus(
            engine="sqlite",
            size=sqlite.size,
            open=sqlite.readers_open + int(sqlite.writer_open),
            in_use=sqlite.in_use,
        )
    size = _pool_size(engine)
    pool = getattr(engine, "pool", None)
    if pool is None:
        return PoolStatus(engine=engine.engine_type, size=size, open=0, in_use=0)
    opened = pool.get_size()
    return PoolStatus(
        engine=engine.engine_type,
        size=pool.get_max_size(),
        open=opened,
        in_use=opened - pool.get_idle_size(),
    )


# asyncpg refuses a statement with more than 32,767 bind parameters, and SQLite (3.32+)
# allows 32,766: a multi-row insert of a few thousand wide rows passes either limit.
MAX_BIND_PARAMETERS = 32_000


async def insert_all(table: type[Table], rows: Sequence[Table]) -> None:
    """Insert ``rows`` in as few statements as the engines' bind-parameter limit allows.

    Call it inside the caller's transaction: the chunks then commit (or roll back)
    together, as one multi-row insert would."""
    if not rows:
        return
    per_statement = max(1, MAX_BIND_PARAMETERS // max(1, len(table._meta.columns)))
    for start in range(0, len(rows), per_statement):
        await table.insert(*rows[start : start + per_statement]).run()
