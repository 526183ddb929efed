"""Raw SQL against a test database on either engine: what the gateway really left behind."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncpg


def _sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


def _sqlite_run(database_url: str, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(_sqlite_path(database_url), timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        with conn:  # commits on success, rolls back on error
            rows = conn.execute(sql, tuple(args)).fetchall()
        return [dict(row) for row in rows]


def _pg_params(sql: str) -> str:
    """``?`` placeholders -> ``$1, $2, ...`` (the tests never put ``?`` in literals)."""
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


async def raw_sql(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run one statement outside the application (``?`` placeholders); return its rows."""
    if database_url.startswith("sqlite"):
        return _sqlite_run(database_url, sql, args)
    conn = await asyncpg.connect(database_url)
    try:
        records = await conn.fetch(_pg_params(sql), *args)
    finally:
        await conn.close()
    return [dict(record) for record in records]


async def count_rows(database_url: str, table: str, where: str = "", *args: Any) -> int:
    sql = f"SELECT COUNT(*) AS n FROM {table}" + (f" WHERE {where}" if where else "")
    rows = await raw_sql(database_url, sql, *args)
    return int(rows[0]["n"])


async def audit_rows(database_url: str, after_seq: int = 0) -> list[dict[str, Any]]:
    return await raw_sql(database_url, "SELECT * FROM audit WHERE seq > ? ORDER BY seq", after_seq)


async def last_seq(database_url: str) -> int:
    rows = await raw_sql(database_url, "SELECT MAX(seq) AS s FROM audit")
    return int(rows[0]["s"] or 0)


async def customer_row_counts(database_url: str) -> dict[str, int]:
    return {
        table: await count_rows(database_url, table)
        for table in ("contact", "organization", "data_subject", "subject_key")
    }


def fields_of(row: dict[str, Any]) -> list[str]:
    fields: list[str] = json.loads(row["fields"])
    return fields


def subjects_of(row: dict[str, Any]) -> list[str]:
    subjects: list[str] = json.loads(row["subject_ids"])
    return subjects


async def refuse_audit_inserts(owner_database_url: str, request_id: str | None = None) -> None:
    """A real fault in the audit store: a trigger, created by the tables' owner, that
    makes every insert into ``audit`` fail - or only one carrying ``request_id`` (a
    multi-row insert holding it fails as a whole)."""
    if owner_database_url.startswith("sqlite"):
        when = "" if request_id is None else f"WHEN NEW.request_id = '{request_id}' "
        await raw_sql(
            owner_database_url,
            f"CREATE TRIGGER audit_injected_fault BEFORE INSERT ON audit {when}"
            "BEGIN SELECT RAISE(ABORT, 'injected audit fault'); END",
        )
        return
    await raw_sql(
        owner_database_url,
        "CREATE FUNCTION audit_injected_fault() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN RAISE EXCEPTION 'injected audit fault'; END$$",
    )
    when = "" if request_id is None else f"WHEN (NEW.request_id = '{request_id}') "
    await raw_sql(
        owner_database_url,
        f"CREATE TRIGGER audit_injected_fault BEFORE INSERT ON audit FOR EACH ROW {when}"
        "EXECUTE FUNCTION audit_injected_fault()",
    )
