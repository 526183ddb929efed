"""Long-lived connections (issue 15, "Connections"): SQLite keeps a few reader connections
and one writer instead of opening one per query; PostgreSQL keeps an asyncpg pool. Both
are sized by ``CONSENTRY_DB_POOL_SIZE``.

What a user would notice if this went wrong: reads slowed by a connection opened for each
query, a read that does not show what was just saved, an audit chain with a gap or a fork,
a server that stops writing after one failed transaction, or a typo in the setting that
starts a server with no pool (or a traceback instead of a reason).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from httpx import AsyncClient

from audit.events import AuditEvent, Outcome
from server import db
from server.auth.tables import StaffUser
from server.services import Services
from server.settings import ConfigurationError, Settings
from server.sqlite_engine import PooledSQLiteEngine, reads_only
from tests.conftest import ENGINE, Staff, contact_values
from tests.dbutil import audit_rows, last_seq, raw_sql

# The repository's root, wherever under tests/ this file sits.
REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
CONTACTS = "/api/v1/contacts"


def _event(request_id: str) -> AuditEvent:
    return AuditEvent(
        actor_id="system:test",
        actor_role="system",
        action="read",
        resource_type="contact",
        outcome=Outcome.ALLOWED,
        purpose="compliance",
        request_id=request_id,
    )


class Opens:
    """Counts the database connections opened while it is active."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> Opens:
    counter = Opens()
    real = aiosqlite.connect

    def counting(*args: Any, **kwargs: Any) -> aiosqlite.Connection:
        counter.count += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(aiosqlite, "connect", counting)
    return counter


async def _contact(staff: Staff) -> tuple[AsyncClient, str]:
    admin = await staff.login(await staff.create("admin"))
    response = await admin.post(CONTACTS, json=contact_values())
    assert response.status_code == 201, response.text
    return admin, str(response.json()["id"])


@pytest.mark.skipif(ENGINE != "sqlite", reason="counts SQLite connection opens")
async def test_a_read_by_id_opens_no_connection_once_warm(staff: Staff, opens: Opens) -> None:
    admin, record_id = await _contact(staff)
    warm = await admin.get(f"{CONTACTS}/{record_id}")
    assert warm.status_code == 200
    before = opens.count

    for _ in range(3):
        answer = await admin.get(f"{CONTACTS}/{record_id}")
        assert answer.status_code == 200
        assert answer.json()["first_name"] == "Grace"

    # The session check, the policy, the record and its audit event (committed) all ran
    # on connections that were already open.
    assert opens.count - before == 0


@pytest.mark.skipif(ENGINE != "postgres", reason="asyncpg's pool")
async def test_a_read_by_id_on_postgres_stays_within_the_pool(staff: Staff) -> None:
    admin, record_id = await _contact(staff)
    await admin.get(f"{CONTACTS}/{record_id}")
    engine = db.get_engine()
    pool = getattr(engine, "pool", None)
    assert pool is not None, "the engine runs without a pool: one connection per query"
    opened = pool.get_size()

    for _ in range(3):
        assert (await admin.get(f"{CONTACTS}/{record_id}")).status_code == 200

    assert pool.get_size() == opened
    assert db.pool_status().in_use == 0


async def test_a_write_in_one_task_is_seen_by_a_read_in_the_next(
    staff: Staff, database_url: str
) -> None:
    admin, record_id = await _contact(staff)
    await admin.get(f"{CONTACTS}/{record_id}")  # every connection in play is warm

    async def rename(name: str) -> None:
        response = await admin.patch(f"{CONTACTS}/{record_id}", json={"city": name})
        assert response.status_code == 200, response.text

    async def city() -> str:
        response = await admin.get(f"{CONTACTS}/{record_id}")
        assert response.status_code == 200
        return str(response.json()["city"])

    for name in ("Oslo", "Lima", "Pune"):
        await asyncio.create_task(rename(name))
        assert await asyncio.create_task(city()) == name

    # A write by another process (here: a connection of its own) is seen by the next
    # read on a reader that has served reads before it: no snapshot is kept open.
    user_id = (await StaffUser.select(StaffUser.id).first())["id"]  # type: ignore[index]
    for name in ("Ada", "Alan"):
        await raw_sql(
            database_url, "UPDATE staff_user SET display_name = ? WHERE id = ?", name, user_id
        )
        for _ in range(db.pool_status().size + 1):  # whichever reader each read gets
            row = await StaffUser.select(StaffUser.display_name).where(StaffUser.id == user_id)
            assert row == [{"display_name": name}]


async def test_concurrent_writers_keep_one_gap_free_chain(
    services: Services, database_url: str
) -> None:
    before = await last_seq(database_url)
    audit = services.audit

    async def in_transactions(worker: int) -> None:
        for i in range(5):
            async with db.write_transaction():
                await audit.append(_event(f"tx-{worker}-{i}"))
                await asyncio.sleep(0)  # let the others try to write meanwhile

    async def bare(worker: int) -> None:
        for i in range(5):
            await audit.append(_event(f"bare-{worker}-{i}"))

    async def grouped(worker: int) -> None:
        await asyncio.gather(*(audit.append_committed(_event(f"g-{worker}-{i}")) for i in range(5)))

    await asyncio.gather(*(job(w) for w in range(4) for job in (in_transactions, bare, grouped)))

    rows = await audit_rows(database_url, before)
    assert [int(r["seq"]) for r in rows] == list(range(before + 1, before + 60 + 1))
    assert len({r["request_id"] for r in rows}) == 60
    for previous, row in itertools.pairwise(rows):
        assert row["prev_hash"] == previous["hash"]
    assert (await services.audit_trail.verify()).ok


class Refused(Exception):
    pass


async def test_a_failed_transaction_rolls_back_and_writing_goes_on(
    services: Services, database_url: str
) -> None:
    before = await last_seq(database_url)

    async def fails() -> None:
        async with db.write_transaction():
            await services.audit.append(_event("rolled-back"))
            raise Refused

    async def refused_by_the_database() -> None:
        async with db.write_transaction():
            await services.audit.append(_event("also-rolled-back"))
            await raw_insert_existing_staff_email()

    with pytest.raises(Refused):
        await fails()
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await refused_by_the_database()

    # A transaction whose task is cancelled halfway (a client that went away).
    started = asyncio.Event()

    async def cancelled() -> None:
        async with db.write_transaction():
            await services.audit.append(_event("cancelled"))
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(cancelled())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await last_seq(database_url) == before
    # The writer is free at once (not after a busy timeout) and commits.
    async with asyncio.timeout(5):
        seq = await services.audit.append(_event("afterwards"))
        async with db.write_transaction():
            await services.audit.append(_event("afterwards-too"))
    assert seq == before + 1
    assert [r["request_id"] for r in await audit_rows(database_url, before)] == [
        "afterwards",
        "afterwards-too",
    ]
    assert db.pool_status().in_use == 0


async def raw_insert_existing_staff_email() -> None:
    """Two staff users with one address: the unique index refuses the second."""
    for _ in range(2):
        await StaffUser.insert(
            StaffUser(
                email="twice@staff.example.com",
                role="sales",
                team="north",
                password_hash="x",
                is_active=True,
            )
        )


@pytest.mark.parametrize("size", [1, 3])
async def test_the_pool_size_setting_is_honoured(database_url: str, size: int) -> None:
    setting = Settings.from_env({"CONSENTRY_DB_POOL_SIZE": str(size)})
    engine = db.engine_for_url(database_url, pool_size=setting.db_pool_size)
    await db.start(engine, prefill=True)
    try:
        status = db.pool_status(engine)
        assert (status.engine, status.size) == (ENGINE, size)
        # SQLite: every reader and the writer; PostgreSQL: the whole pool, opened at start.
        assert status.open == size + (1 if ENGINE == "sqlite" else 0)
        # More concurrent reads than connections: they wait their turn, none opens more.
        old = db.set_engine(engine)
        try:
            counts = await asyncio.gather(*(StaffUser.count() for _ in range(size * 4)))
        finally:
            db.set_engine(old)
        assert len(set(counts)) == 1
        assert db.pool_status(engine).open == status.open
    finally:
        await db.stop(engine)
    assert db.pool_status(engine).open == 0


async def test_the_default_pool_size_is_ten(database_url: str) -> None:
    assert Settings.from_env({}).db_pool_size == 10
    assert db.pool_status().size == 10


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_a_bad_pool_size_is_refused_at_startup_in_one_line(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CONSENTRY_DB_POOL_SIZE"):
        Settings.from_env({"CONSENTRY_DB_POOL_SIZE": value})
    env = {
        **os.environ,
        "CONSENTRY_HOME": str(tmp_path),
        "CONSENTRY_DB_POOL_SIZE": value,
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "migrate"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CONSENTRY_DB_POOL_SIZE" in lines[0]
    assert value in lines[0]
    assert not (tmp_path / "consentry.sqlite3").exists()  # refused before touching anything


def test_only_plain_reads_go_to_the_readers() -> None:
    for sql in (
        "SELECT 1",
        "  select * from contact",
        "-- a comment\nSELECT 1",
        "/* c */ SELECT 1",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "EXPLAIN QUERY PLAN SELECT 1",
    ):
        assert reads_only(sql), sql
    for sql in (
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "REPLACE INTO t VALUES (1)",
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
        "PRAGMA secure_delete = ON",
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "CREATE TABLE t (a)",
        "VACUUM",
        "BEGIN IMMEDIATE",
        "SELECTED",
    ):
        assert not reads_only(sql), sql


@pytest.mark.skipif(ENGINE != "sqlite", reason="SQLite's readers")
async def test_a_write_that_reached_a_reader_would_be_refused(database_url: str) -> None:
    engine = db.get_engine()
    assert isinstance(engine, PooledSQLiteEngine)
    async with engine.connections().reader() as reader:
        with pytest.raises(Exception, match="readonly"):
            await reader.execute("DELETE FROM staff_user")


@pytest.mark.skipif(ENGINE != "sqlite", reason="SQLite's write lock, held by another process")
async def test_a_transaction_cancelled_while_waiting_for_the_lock_leaves_the_writer_clean(
    services: Services, database_url: str
) -> None:
    """Another process holds SQLite's write lock; a request waiting in ``BEGIN IMMEDIATE``
    is cancelled. When the lock comes free that ``BEGIN`` still runs in the connection's
    thread: the writer must not be left inside it (every later write would then fail)."""
    before = await last_seq(database_url)
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")

        async def waits() -> None:
            async with db.write_transaction():
                await services.audit.append(_event("never"))

        task = asyncio.create_task(waits())
        await asyncio.sleep(0.3)  # it is in BEGIN, waiting on the busy timeout
        task.cancel()
        await asyncio.sleep(0.1)
        other.execute("COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        other.close()

    async with asyncio.timeout(5):
        seq = await services.audit.append(_event("afterwards"))
    assert seq == before + 1
    assert [r["request_id"] for r in await audit_rows(database_url, before)] == ["afterwards"]
