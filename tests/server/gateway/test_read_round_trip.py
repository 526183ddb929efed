"""One round trip for a record (issue 15): what a read costs in statements, and that
nothing a worker keeps between requests can outlive an erasure, a restriction or a merge.

A read by id is one SELECT for the record, its person's wrapped data key and whether the
person is restricted; the session cookie (or API token) and its user are one more. The
statements are counted at the engine, so a read that falls back to separate look-ups
fails here. "Another worker" is a second, independently built set of services (and app)
on the same database: no memory is shared, as between two processes.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from litestar import Litestar

from server import db
from server.app import create_app
from server.auth.tokens import TokenKind
from server.gateway import Actor, Forbidden
from server.gateway.tables import Contact, ContactMerge
from server.services import Services, build_services
from server.settings import Settings
from tests.conftest import Staff, contact_values, http_client

API = "/api/v1"
SYSTEM = Actor.system("test-round-trip")
PURPOSE = "customer_relationship"
BACKFILL = "migrations.duplicates.versions.duplicates_2026_12_03t06_46_00_000000"


class Statements:
    """Every SQL statement the engine runs while recording (its text, squeezed)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def touching(self, table: str) -> list[str]:
        return [s for s in self.seen if f'"{table}"' in s]

    def outside_audit(self) -> list[str]:
        """What the request asked, without the audit append (its own, separately batched
        statements: on PostgreSQL the append lock, then the tail of the chain and the
        insert)."""
        return [s for s in self.seen if '"audit"' not in s and "pg_advisory" not in s]


@contextmanager
def recorded() -> Iterator[Statements]:
    """Record what the engine runs (patched on its class: PostgreSQL's engine has slots)."""
    engine_class: Any = type(db.get_engine())
    statements = Statements()
    run_querystring, run_ddl = engine_class.run_querystring, engine_class.run_ddl

    async def querystring(self: Any, query: Any, in_pool: bool = False) -> Any:
        statements.seen.append(re.sub(r"\s+", " ", str(query)))
        return await run_querystring(self, query, in_pool=in_pool)

    async def ddl(self: Any, text: str, in_pool: bool = False) -> Any:
        statements.seen.append(re.sub(r"\s+", " ", text))
        return await run_ddl(self, text, in_pool=in_pool)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_class, "run_querystring", querystring)
        patch.setattr(engine_class, "run_ddl", ddl)
        yield statements


async def a_contact(services: Services, **values: Any) -> Any:
    return await services.gateway.create(SYSTEM, "contact", contact_values(**values))


# --- statement counts -------------------------------------------------------------------


async def test_an_api_read_is_one_statement_for_the_session_and_one_for_the_record(
    services: Services, staff: Staff
) -> None:
    grace = await a_contact(services)
    client = await staff.login(await staff.create("admin"))
    url = f"{API}/contacts/{grace.id}"
    assert (await client.get(url)).status_code == 200  # warm: templates, policy cache
    with recorded() as statements:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.json()["first_name"] == "Grace"
    asked = statements.outside_audit()
    assert len(asked) == 2, asked
    session, record = asked
    assert '"staff_session"' in session
    assert '"staff_user"' in session
    assert '"contact"' in record
    assert '"subject_key"' in record
    assert '"processing_restriction"' in record
    assert "NOT IN" not in record  # merged contacts are a column, not a sub-select


async def test_an_update_reads_record_key_and_restriction_together_and_returns_in_one_read(
    services: Services, staff: Staff
) -> None:
    """Before: a separate restriction check on the way in, and the row and its key read
    as two statements on the way out. The key inside the transaction stays: it is what
    notices an erasure that happened meanwhile."""
    grace = await a_contact(services)
    client = await staff.login(await staff.create("admin"))
    url = f"{API}/contacts/{grace.id}"
    assert (await client.patch(url, json={"city": "Leeds"})).status_code == 200  # warm
    with recorded() as statements:
        response = await client.patch(url, json={"city": "York"})
    assert response.status_code == 200, response.text
    assert response.json()["city"] == "York"
    assert response.json()["first_name"] == "Grace"  # decrypted with the key read with it
    assert statements.touching("processing_restriction") == [
        s for s in statements.touching("processing_restriction") if '"subject_key"' in s
    ], statements.seen  # the restriction flag only ever comes with the record
    reads_of_contact = [s for s in statements.touching("contact") if s.startswith("SELECT")]
    assert len(reads_of_contact) == 3, reads_of_contact  # in scope; recheck; the response
    standalone_key_reads = [s for s in statements.touching("subject_key") if '"contact"' not in s]
    assert len(standalone_key_reads) == 1, standalone_key_reads  # inside the transaction


async def test_a_search_by_email_reads_its_candidates_with_their_keys(
    services: Services, staff: Staff
) -> None:
    grace = await a_contact(services, email="grace@example.org")
    client = await staff.login(await staff.create("admin"))
    body = {"email": "grace@example.org"}
    assert (await client.post(f"{API}/contacts/search", json=body)).status_code == 200  # warm
    with recorded() as statements:
        response = await client.post(f"{API}/contacts/search", json=body)
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [grace.id]
    asked = statements.outside_audit()
    assert len(asked) == 2, asked  # the session, then the candidates with their keys
    assert '"subject_key"' in asked[1]


async def test_an_admin_record_page_reads_session_and_record_once_each(
    services: Services, staff: Staff
) -> None:
    grace = await a_contact(services)
    admin = await staff.create("admin")
    client = await staff.login(admin)
    url = f"/contacts/{grace.id}"
    assert (await client.get(url)).status_code == 200
    with recorded() as statements:
        page = await client.get(url)
    assert page.status_code == 200
    assert "Grace" in page.text
    # The page lists the person's deals, cases ... too; those are lists of other tables.
    assert len(statements.touching("staff_user")) == 1
    assert statements.touching("staff_user") == statements.touching("staff_session")[:1]
    record = [s for s in statements.seen if ' FROM "contact" ' in s]
    assert len(record) == 1, record
    assert '"subject_key"' in record[0]
    assert '"processing_restriction"' in record[0]
    # No separate key look-up (each list on the page reads its keys with its rows too),
    # and no separate "is this person restricted?".
    assert not [s for s in statements.seen if s.startswith('SELECT ALL "subject_key"')]
    assert not [s for s in statements.seen if s.startswith("SELECT EXISTS")]


async def test_a_token_call_reads_the_token_and_its_creator_in_one_statement(
    services: Services, staff: Staff, app: Litestar
) -> None:
    grace = await a_contact(services)
    admin = await staff.create("admin")
    made = await services.tokens.create(
        admin, TokenKind.PERSONAL, name="sync", role="admin", purposes=[PURPOSE]
    )
    headers = {"Authorization": f"Bearer {made.secret}"}
    async with http_client(app) as client:
        url = f"{API}/contacts/{grace.id}"
        assert (await client.get(url, headers=headers)).status_code == 200
        with recorded() as statements:
            response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    token_reads = [s for s in statements.touching("api_token") if s.startswith("SELECT")]
    assert len(token_reads) == 1, token_reads
    assert '"staff_user"' in token_reads[0]
    assert not [s for s in statements.touching("staff_user") if s not in token_reads]
    assert len(statements.touching("subject_key")) == 1


async def test_a_list_page_reads_keys_with_its_rows(services: Services, staff: Staff) -> None:
    for n in range(3):
        await a_contact(services, first_name=f"Person{n}")
    client = await staff.login(await staff.create("admin"))
    assert (await client.get(f"{API}/contacts")).status_code == 200
    with recorded() as statements:
        response = await client.get(f"{API}/contacts")
    assert response.status_code == 200
    assert len(response.json()["items"]) == 3
    asked = statements.outside_audit()
    assert len(asked) == 3, asked  # session + user, the count, the page with its keys
    assert '"subject_key"' in asked[2]
    assert all("contact_merge" not in s for s in asked)


# --- nothing a worker keeps outlives a change made by another ---------------------------


@pytest.fixture
def other_worker(settings: Settings) -> tuple[Services, Litestar]:
    """A second worker on the same database: its own services and app, no shared memory."""
    services = build_services(settings)
    return services, create_app(settings, services)


async def test_a_key_shredded_in_one_worker_is_unusable_on_the_next_request_in_another(
    services: Services, staff: Staff, other_worker: tuple[Services, Litestar]
) -> None:
    grace = await a_contact(services, notes="Prefers phone calls")
    client = await staff.login(await staff.create("admin"))
    url = f"{API}/contacts/{grace.id}"
    before = await client.get(url)
    assert before.json()["last_name"] == "Hopper"  # this worker has read (and held) it
    assert (await services.gateway.read(SYSTEM, "contact", grace.id)).values["notes"]

    elsewhere, _ = other_worker
    await elsewhere.gateway.vault.shred_subject(grace.subject_id)  # only the key goes

    after = await client.get(url)
    assert after.status_code == 200, after.text
    body = after.json()
    assert body["last_name"] is None
    assert body["notes"] is None
    assert body["email"] is None
    assert "Hopper" not in after.text
    again = await services.gateway.read(SYSTEM, "contact", grace.id)
    assert again.erased
    assert again.values["notes"] is None
    listed = (await client.get(f"{API}/contacts")).json()["items"]
    assert [i["last_name"] for i in listed if i["id"] == grace.id] == [None]


async def test_a_restriction_made_in_one_worker_holds_on_the_next_request_in_another(
    services: Services, staff: Staff, other_worker: tuple[Services, Litestar]
) -> None:
    grace = await a_contact(services)
    client = await staff.login(await staff.create("admin"))
    url = f"{API}/contacts/{grace.id}"
    assert (await client.get(url)).status_code == 200

    elsewhere, other_app = other_worker
    await elsewhere.erasure.restrictions.restrict(
        grace.subject_id, "accuracy_contested", by="user:1"
    )

    refused = await client.get(url)
    assert refused.status_code == 403, refused.text
    assert "restricted" in refused.text
    assert "Grace" not in refused.text
    with pytest.raises(Forbidden, match="restricted"):
        await services.gateway.read(SYSTEM, "contact", grace.id)
    # Storage and legal claims still reach them, with the key read alongside.
    kept = await services.gateway.read(SYSTEM, "contact", grace.id, purpose="compliance")
    assert kept.values["first_name"] == "Grace"

    await elsewhere.erasure.restrictions.lift(grace.subject_id, by="user:1")
    async with http_client(other_app) as second:
        second.cookies = client.cookies
        assert (await second.get(url)).status_code == 200
    assert (await client.get(url)).status_code == 200


# --- merged contacts: a column, set by the merge, filled for old merges -------------------


async def test_a_merged_contact_leaves_lists_at_once_and_returns_on_undo(
    services: Services, staff: Staff, other_worker: tuple[Services, Litestar]
) -> None:
    survivor = await a_contact(services, first_name="Jon", last_name="Smith")
    merged = await a_contact(services, first_name="John", last_name="Smith")
    client = await staff.login(await staff.create("admin"))

    async def listed() -> set[str]:
        response = await client.get(f"{API}/contacts")
        assert response.status_code == 200
        assert response.json()["total"] == len(response.json()["items"])
        return {i["id"] for i in response.json()["items"]}

    assert await listed() == {survivor.id, merged.id}
    elsewhere, _ = other_worker
    merge = await elsewhere.gateway.merge_contacts(SYSTEM, survivor.id, merged.id, purpose=PURPOSE)
    assert await listed() == {survivor.id}
    assert (await client.get(f"{API}/contacts/{merged.id}")).status_code == 404
    [row] = await Contact.select(Contact.merged_into).where(Contact.id == merged.id)
    assert str(row["merged_into"]) == survivor.id

    await elsewhere.gateway.undo_merge(SYSTEM, merge.id, purpose=PURPOSE)
    assert await listed() == {survivor.id, merged.id}
    [row] = await Contact.select(Contact.merged_into).where(Contact.id == merged.id)
    assert row["merged_into"] is None


async def test_the_migration_marks_contacts_merged_before_the_column_existed(
    services: Services,
) -> None:
    survivor = await a_contact(services, first_name="Jon")
    merged = await a_contact(services, first_name="John")
    undone = await a_contact(services, first_name="Johnny")
    gw = services.gateway

    async def listed() -> set[str]:
        return {r.id for r in (await gw.list(SYSTEM, "contact")).items}

    # Merges as an older release wrote them: a contact_merge row and no column.
    for person, state in ((merged, "pending"), (undone, "undone")):
        await ContactMerge.insert(
            ContactMerge(
                survivor_id=survivor.id,
                merged_id=person.id,
                survivor_subject_id=survivor.subject_id,
                merged_subject_id=person.subject_id,
                state=state,
                merged_by=SYSTEM.id,
            )
        ).run()
    assert await listed() == {survivor.id, merged.id, undone.id}

    await importlib.import_module(BACKFILL).backfill()

    assert await listed() == {survivor.id, undone.id}
    assert await gw.count(SYSTEM, "contact") == 2
    [row] = await Contact.select(Contact.merged_into).where(Contact.id == merged.id)
    assert str(row["merged_into"]) == survivor.id
