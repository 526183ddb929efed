"""Where each system's data lives for one engine, and PostgreSQL housekeeping.

Every run starts from empty databases and removes them afterwards: on SQLite, files in
the run's temporary directory; on PostgreSQL, databases named ``consentry_bench_*``
(created and dropped with asyncpg as the ``postgres`` superuser).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import asyncpg

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
CONSENTRY_DB = "consentry_bench_app"
BASELINE_DB = "consentry_bench_baseline"
AUDIT_DB = "consentry_bench_audit"
_SAFE_NAME = re.compile(r"^consentry_bench_[a-z_]+$")


@dataclass(frozen=True)
class EngineUrls:
    engine: str  # sqlite | postgres
    consentry: str
    baseline: str
    audit: str  # throwaway database for the audit append figures


def urls_for(engine: str, workdir: Path, postgres: str) -> EngineUrls:
    if engine == "sqlite":
        root = workdir / "sqlite"
        return EngineUrls(
            engine,
            f"sqlite:///{root / 'consentry.sqlite3'}",
            f"sqlite:///{root / 'baseline.sqlite3'}",
            f"sqlite:///{root / 'audit.sqlite3'}",
        )
    return EngineUrls(
        engine,
        f"{postgres}/{CONSENTRY_DB}",
        f"{postgres}/{BASELINE_DB}",
        f"{postgres}/{AUDIT_DB}",
    )


async def _admin(postgres: str, *statements: str) -> None:
    conn = await asyncpg.connect(f"{postgres}/postgres")
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def recreate(postgres: str, name: str) -> None:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"refusing to manage database {name!r}: not a consentry_bench_* name")
    await _admin(
        postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    )


async def drop(postgres: str, name: str) -> None:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"refusing to manage database {name!r}: not a consentry_bench_* name")
    await _admin(postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def analyze(url: str) -> None:
    """Planner statistics for freshly loaded tables, as a deployment's housekeeping would
    have them (autovacuum's VACUUM and ANALYZE on PostgreSQL, which an insert-only table
    also gets since PostgreSQL 13; ANALYZE, or PRAGMA optimize, on SQLite). Without them
    PostgreSQL plans the first minutes after a bulk load for empty tables (sequential
    scans and sorts where an index serves) and cannot count from an index alone."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("ANALYZE")
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def server_version(postgres: str) -> str:
    conn = await asyncpg.connect(f"{postgres}/postgres")
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
