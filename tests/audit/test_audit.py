"""The audit log: one PII-free event per gateway operation, append-only in the database
(triggers for everyone, and on PostgreSQL no UPDATE/DELETE privilege for the application
role), and gap-free under concurrent writers. Tamper evidence: tests/audit/test_audit_trail.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import asyncpg
import pytest

from server.gateway import Forbidden, InvalidInput, NotFound
from server.services import Services
from tests.conftest import ENGINE, Staff, contact_values, owner_url
from tests.dbutil import audit_rows, count_rows, fields_of, last_seq, raw_sql, subjects_of

DATABASE_ERRORS = (sqlite3.DatabaseError, asyncpg.PostgresError)

# Personal values of the scenario's contact; none may ever reach the audit table.
PERSON = {
    "first_name": "Ermintrude",
    "last_name": "Quackenbush",
    "email": "ermintrude.quackenbush@example.net",
    "phone": "+44 20 7946 0777",
    "job_title": "Chief Wrangler",
    "city": "Kirkcudbright",
    "notes": "Allergic to marzipan",
}
UPDATED_CITY = "Auchtermuchty"
SECRETS = [*PERSON.values(), "+442079460777", "020 7946 0777", "2079460777", UPDATED_CITY]


async def _one_new_row(database_url: str, before: int) -> dict[str, Any]:
    rows = await audit_rows(database_url, before)
    assert len(rows) == 1, [(r["action"], r["outcome"]) for r in rows]
    return rows[0]


async def test_each_operation_appends_one_pii_free_event(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    seller = staff.actor(await staff.create("sales"))
    values = {k: v for k, v in contact_values(**PERSON).items() if k != "birth_date"}
    readable = sorted(set(values) | {"address_line", "postcode", "organization_id"})

    before = await last_seq(database_url)
    record = await gateway.create(seller, "contact", values)
    row = await _one_new_row(database_url, before)
    assert (row["action"], row["outcome"], row["reason"]) == ("create", "allowed", "allowed")
    assert fields_of(row) == sorted(values)
    assert row["resource_id"] == record.id
    assert subjects_of(row) == [record.subject_id]
    assert (row["actor_id"], row["actor_role"]) == (seller.id, "sales")
    assert row["purpose"] == "customer_relationship"

    before = await last_seq(database_url)
    await gateway.read(seller, "contact", record.id)
    row = await _one_new_row(database_url, before)
    assert (row["action"], row["outcome"]) == ("read", "allowed")
    assert fields_of(row) == readable  # everything but birth_date, which sales may not see
    assert row["resource_id"] == record.id

    before = await last_seq(database_url)
    await gateway.list(seller, "contact", page_size=10)
    row = await _one_new_row(database_url, before)
    assert (row["action"], row["outcome"]) == ("list", "allowed")
    assert subjects_of(row) == [record.subject_id]
    assert json.loads(row["detail"])["returned"] == 1

    before = await last_seq(database_url)
    await gateway.search(seller, "contact", "email", PERSON["email"].upper())
    row = await _one_new_row(database_url, before)
    assert (row["action"], row["outcome"]) == ("search", "allowed")
    assert json.loads(row["detail"])["by"] == "email"
    assert subjects_of(row) == [record.subject_id]

    before = await last_seq(database_url)
    await gateway.update(seller, "contact", record.id, {"city": UPDATED_CITY})
    row = await _one_new_row(database_url, before)
    assert (row["action"], row["outcome"]) == ("update", "allowed")
    assert fields_of(row) == ["city"]

    before = await last_seq(database_url)
    with pytest.raises(Forbidden):
        await gateway.update(seller, "contact", record.id, {"birth_date": "1970-01-01"})
    row = await _one_new_row(database_url, before)
    assert (row["action"], row["outcome"], row["reason"]) == (
        "update",
        "denied",
        "field_not_writable",
    )
    assert fields_of(row) == ["birth_date"]

    before = await last_seq(database_url)
    with pytest.raises(InvalidInput):
        await gateway.update(seller, "contact", record.id, {"email": "not an e-mail"})
    row = await _one_new_row(database_url, before)
    assert (row["action"], row["outcome"], row["reason"]) == ("update", "error", "invalid_input")
    assert fields_of(row) == ["email"]

    before = await last_seq(database_url)
    await gateway.delete(seller, "contact", record.id)
    row = await _one_new_row(database_url, before)
    assert (row["action"], row["outcome"]) == ("delete", "allowed")
    assert fields_of(row) == []
    assert row["resource_id"] == record.id

    before = await last_seq(database_url)
    with pytest.raises(NotFound):
        await gateway.read(seller, "contact", record.id)
    row = await _one_new_row(database_url, before)
    assert (row["action"], row["outcome"]) == ("read", "denied")

    dump = json.dumps(await audit_rows(database_url), default=str).casefold()
    assert record.id in dump  # the dump is the real log: ids are there...
    for secret in SECRETS:
        assert secret.casefold() not in dump, f"personal value {secret!r} in the audit log"


# --- append-only in the database --------------------------------------------------------


async def _seed_log(services: Services, staff: Staff) -> None:
    """At least six audit rows: a staff user, two creates, a read, a list, a denial."""
    admin = staff.actor(await staff.create("admin"))
    first = await services.gateway.create(admin, "contact", contact_values())
    await services.gateway.create(admin, "contact", contact_values())
    await services.gateway.read(admin, "contact", first.id)
    await services.gateway.list(admin, "contact")
    with pytest.raises(NotFound):
        await services.gateway.read(admin, "contact", "no-such-id")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit SET actor_role = 'admin' WHERE seq = 2",
        "UPDATE audit SET outcome = 'allowed'",
        "DELETE FROM audit WHERE seq = 3",
        "DELETE FROM audit",
        "UPDATE audit_checkpoint SET tree_size = 1",
        "DELETE FROM audit_checkpoint",
    ],
)
async def test_database_rejects_update_and_delete_even_from_the_owner(
    services: Services, staff: Staff, database_url: str, statement: str
) -> None:
    await _seed_log(services, staff)
    await services.audit_trail.seal()
    snapshot = await audit_rows(database_url)
    heads = await count_rows(database_url, "audit_checkpoint")

    with pytest.raises(DATABASE_ERRORS, match="append-only"):
        await raw_sql(owner_url(database_url), statement)

    assert await audit_rows(database_url) == snapshot
    assert await count_rows(database_url, "audit_checkpoint") == heads
    assert (await services.audit_trail.verify()).ok


@pytest.mark.parametrize("table", ["audit", "audit_checkpoint"])
async def test_database_rejects_truncate(
    services: Services, staff: Staff, database_url: str, table: str
) -> None:
    if ENGINE != "postgres":
        pytest.skip("SQLite has no TRUNCATE (DELETE without WHERE is covered above)")
    await _seed_log(services, staff)
    await services.audit_trail.seal()
    count = await count_rows(database_url, table)

    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await raw_sql(owner_url(database_url), f"TRUNCATE {table}")
    assert await count_rows(database_url, table) == count


async def test_the_application_role_can_only_read_and_add_evidence(
    services: Services, staff: Staff, database_url: str
) -> None:
    """On PostgreSQL the server connects as a role without UPDATE/DELETE/TRUNCATE on the
    audit tables: even with the triggers disabled by the owner, it cannot rewrite them."""
    if ENGINE != "postgres":
        pytest.skip("SQLite has no roles; its triggers are the guard")
    await _seed_log(services, staff)
    await services.audit_trail.seal()
    owner = owner_url(database_url)
    for table in ("audit", "audit_checkpoint"):
        await raw_sql(owner, f"ALTER TABLE {table} DISABLE TRIGGER USER")
    statements = [
        "UPDATE audit SET outcome = 'allowed'",
        "DELETE FROM audit WHERE seq = 1",
        "TRUNCATE audit",
        "UPDATE audit_checkpoint SET root_hash = ''",
        "DELETE FROM audit_checkpoint",
        "TRUNCATE audit_checkpoint",
        "DROP TRIGGER audit_no_update_delete ON audit",
    ]
    for statement in statements:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await raw_sql(database_url, statement)
    # ... while the application itself goes on working as that role.
    admin = staff.actor(await staff.create("admin"))
    record = await services.gateway.create(admin, "contact", contact_values())
    await services.gateway.read(admin, "contact", record.id)
    assert await services.audit_trail.seal() is not None
    assert (await services.audit_trail.verify()).ok


# --- concurrency ------------------------------------------------------------------------


async def test_concurrent_appends_have_no_gaps_or_duplicates(
    services: Services, staff: Staff, database_url: str
) -> None:
    admin = staff.actor(await staff.create("admin"))
    before = await count_rows(database_url, "audit")

    created = await asyncio.gather(
        *(
            services.gateway.create(admin, "contact", contact_values(first_name=f"N{i}"))
            for i in range(25)
        )
    )

    rows = await audit_rows(database_url)
    seqs = [int(r["seq"]) for r in rows]
    assert seqs == list(range(1, before + 26))
    creates = [r for r in rows if r["action"] == "create"]
    assert sorted(r["resource_id"] for r in creates) == sorted(c.id for c in created)
    assert len({r["hash"] for r in rows}) == len(rows)
    report = await services.audit_trail.verify()
    assert report.ok, report
    assert report.checked == len(rows)
