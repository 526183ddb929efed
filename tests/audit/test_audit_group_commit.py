"""Group commit of the audit events of reads (audit.log.AuditLog.append_committed).

Reads have no transaction of their own, so their events are committed together: one lock,
one read of the chain head, one insert, one commit for every event that arrived while the
previous batch was being written. These tests hold it to what one-by-one appends promised:
a request returns only once its own event is committed, fails if that event is not, and the
log stays one gap-free chain that the product's verifier and the standalone one accept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from audit.events import AuditEvent, Outcome
from server import db
from server.gateway import Record
from server.services import Services
from tests.audit.test_audit_integrity import _agree
from tests.conftest import ENGINE, Staff, contact_values, owner_url
from tests.dbutil import audit_rows, last_seq, raw_sql, refuse_audit_inserts

AUDIT_FAULT = (sqlite3.DatabaseError, asyncpg.PostgresError)
POISON = "poison-request"


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


async def _contacts(services: Services, staff: Staff, count: int) -> list[str]:
    admin = staff.actor(await staff.create("admin"))
    result = await services.gateway.create_many(
        admin, "contact", [contact_values(first_name=f"N{i}") for i in range(count)]
    )
    return result.created


async def _transactions(database_url: str, after_seq: int) -> int | None:
    """How many transactions wrote the entries after ``after_seq``, as the database saw
    them (PostgreSQL's xmin: the inserting transaction); None on SQLite, which keeps none."""
    if ENGINE != "postgres":
        return None
    rows = await raw_sql(
        database_url, "SELECT COUNT(DISTINCT xmin::text) AS n FROM audit WHERE seq > ?", after_seq
    )
    return int(rows[0]["n"])


async def test_many_concurrent_reads_make_one_verified_chain_in_fewer_commits(
    services: Services, staff: Staff, database_url: str, tmp_path: Path
) -> None:
    reads = 60
    records = await _contacts(services, staff, 6)
    admin = staff.actor(await staff.create("admin"))
    actors = [dataclasses.replace(admin, request_id=f"read-{i}") for i in range(reads)]
    before = await last_seq(database_url)
    stats_before = dataclasses.replace(services.audit.group_stats)

    results = await asyncio.gather(
        *(
            services.gateway.read(actor, "contact", records[i % len(records)])
            for i, actor in enumerate(actors)
        )
    )

    assert [r.id for r in results] == [records[i % len(records)] for i in range(reads)]
    rows = await audit_rows(database_url, before)
    assert [int(r["seq"]) for r in rows] == list(range(before + 1, before + reads + 1))
    assert sorted(r["request_id"] for r in rows) == sorted(a.request_id for a in actors)
    assert all(r["action"] == "read" and r["outcome"] == "allowed" for r in rows)
    for previous, row in itertools.pairwise(rows):
        assert row["prev_hash"] == previous["hash"]

    stats = services.audit.group_stats
    commits = stats.commits - stats_before.commits
    assert stats.events - stats_before.events == reads
    assert 1 <= commits < reads, commits  # grouped: fewer transactions than events
    assert stats.largest > 1
    written_by = await _transactions(database_url, before)
    assert written_by in (None, commits)

    head = await services.audit_trail.seal()
    assert head is not None
    assert head.tree_size == before + reads
    for seq in (before + 1, before + reads // 2, before + reads):
        assert (await services.audit_trail.inclusion(seq))["verified"]
    report, standalone = await _agree(services, tmp_path)
    assert report.ok, report
    assert standalone.ok


async def test_a_batch_that_fails_to_commit_fails_every_request_in_it(
    services: Services, database_url: str
) -> None:
    before = await last_seq(database_url)
    await refuse_audit_inserts(owner_url(database_url), POISON)
    stats_before = dataclasses.replace(services.audit.group_stats)

    # Queued in one go, these ten are one batch; the poisoned one makes its insert fail.
    request_ids = [f"batch-{i}" for i in range(9)] + [POISON]
    outcomes = await asyncio.gather(
        *(services.audit.append_committed(_event(r)) for r in request_ids),
        return_exceptions=True,
    )

    assert all(isinstance(o, AUDIT_FAULT) for o in outcomes), outcomes
    assert all("injected audit fault" in str(o) for o in outcomes)
    assert services.audit.group_stats.failed_batches == stats_before.failed_batches + 1
    assert await last_seq(database_url) == before  # nothing of the batch was written

    # The next batch is unaffected and continues the chain without a gap.
    seqs = await asyncio.gather(
        *(services.audit.append_committed(_event(f"after-{i}")) for i in range(3))
    )
    assert sorted(seqs) == [before + 1, before + 2, before + 3]
    assert (await services.audit_trail.verify()).ok


async def test_a_read_whose_event_is_not_committed_fails_and_so_do_its_batch_mates(
    services: Services, staff: Staff, database_url: str
) -> None:
    """Through the gateway, under real concurrency: which reads share the poisoned read's
    batch depends on timing, so the test asks the log: a read succeeded exactly when its
    event is in the log, and the poisoned read failed."""
    records = await _contacts(services, staff, 4)
    admin = staff.actor(await staff.create("admin"))
    before = await last_seq(database_url)
    await refuse_audit_inserts(owner_url(database_url), POISON)
    request_ids = [f"read-{i}" for i in range(30)]
    request_ids.insert(12, POISON)

    outcomes = await asyncio.gather(
        *(
            services.gateway.read(
                dataclasses.replace(admin, request_id=r), "contact", records[i % 4]
            )
            for i, r in enumerate(request_ids)
        ),
        return_exceptions=True,
    )

    failed = {r for r, o in zip(request_ids, outcomes, strict=True) if isinstance(o, Exception)}
    assert all(isinstance(o, (Record, *AUDIT_FAULT)) for o in outcomes), outcomes
    assert POISON in failed
    logged = {r["request_id"] for r in await audit_rows(database_url, before)}
    assert logged == set(request_ids) - failed
    assert (await services.audit_trail.verify()).ok


async def test_an_event_inside_a_transaction_joins_it(
    services: Services, database_url: str
) -> None:
    """A caller that already holds a transaction (a write) keeps its event in it: rolled
    back with it, never committed by a batch behind its back."""
    before = await last_seq(database_url)

    class RolledBack(Exception):
        pass

    async def append_then_fail() -> None:
        async with db.write_transaction():
            await services.audit.append_committed(_event("joined"))
            raise RolledBack

    with pytest.raises(RolledBack):
        await append_then_fail()
    assert await last_seq(database_url) == before
    assert services.audit.group_stats.events == 0  # it never went through a batch
