"""Integration tests for the gateway, driven directly with staff actors (no HTTP).

Raw SQL (``sqlite3`` / ``asyncpg`` on the test database) checks what the gateway actually
left behind: rows, data keys and audit events, independent of the gateway's own view.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from policy.enforcer import MODEL_PATH, POLICY_PATH, PolicyEngine
from server.auth.directory import ActiveStaff
from server.datamap import CONTACT
from server.gateway import Actor, Conflict, Forbidden, Gateway, InvalidInput, NotFound, Record
from server.services import Services
from tests.conftest import Staff, contact_values, owner_url
from tests.dbutil import (
    audit_rows,
    count_rows,
    customer_row_counts,
    fields_of,
    last_seq,
    raw_sql,
    refuse_audit_inserts,
    subjects_of,
)


def without_birth_date(**overrides: Any) -> dict[str, Any]:
    """Contact input for sales/support, whose policy denies ``birth_date`` entirely."""
    values = contact_values(**overrides)
    del values["birth_date"]
    return values


# --- create / read / update / delete -------------------------------------------------------


async def test_crud_round_trip_and_delete_shreds_the_key(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    sales = staff.actor(await staff.create("sales"))
    values = without_birth_date(first_name="Ada", last_name="Lovelace", phone="020 7946 0123")

    created = await gateway.create(sales, "contact", values)
    assert created.values["first_name"] == "Ada"
    assert created.values["phone"] == "+442079460123"  # stored in canonical E.164 form
    assert created.owner_id == sales.user_id
    assert created.team == sales.team

    got = await gateway.read(sales, "contact", created.id)
    assert got.id == created.id
    assert got.subject_id == created.subject_id
    for name in ("first_name", "last_name", "email", "job_title", "city", "notes"):
        assert got.values[name] == created.values[name]

    updated = await gateway.update(
        sales, "contact", created.id, {"last_name": "Byron", "city": "London"}
    )
    assert updated.values["last_name"] == "Byron"
    assert updated.values["city"] == "London"
    assert updated.values["first_name"] == "Ada"
    assert (await gateway.read(sales, "contact", created.id)).values["city"] == "London"

    subject = created.subject_id
    assert await count_rows(database_url, "subject_key", "subject_id = ?", subject) == 1
    await gateway.delete(sales, "contact", created.id)

    with pytest.raises(NotFound):
        await gateway.read(sales, "contact", created.id)
    assert await count_rows(database_url, "subject_key", "subject_id = ?", subject) == 0
    assert await count_rows(database_url, "contact", "id = ?", created.id) == 0
    assert await gateway.vault.keys_for([subject]) == {}  # no key: nothing decrypts any more
    erased = await raw_sql(database_url, "SELECT erased_at FROM data_subject WHERE id = ?", subject)
    assert len(erased) == 1
    assert erased[0]["erased_at"] is not None  # the subject remains, as a tombstone


# --- record scope ---------------------------------------------------------------------------


async def _walk(gateway: Any, actor: Actor, page_size: int = 7) -> tuple[list[str], int]:
    """Every id of every page, in order, and the total the first page reported."""
    ids: list[str] = []
    first = await gateway.list(actor, "contact", page=1, page_size=page_size)
    total = first.total
    page, current = 1, first
    while current.items:
        assert current.total == total
        assert len(current.items) <= page_size
        ids.extend(item.id for item in current.items)
        page += 1
        current = await gateway.list(actor, "contact", page=page, page_size=page_size)
    assert page - 1 == -(-total // page_size)  # exactly ceil(total / page_size) pages
    return ids, total


async def test_record_scope_is_applied_before_paging(services: Services, staff: Staff) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    seller_a = staff.actor(await staff.create("sales", team="north"))
    seller_b = staff.actor(await staff.create("sales", team="south"))
    support = staff.actor(await staff.create("support", team="north"))

    by_owner: dict[int, set[str]] = {seller_a.user_id or 0: set(), seller_b.user_id or 0: set()}
    by_team: dict[str, set[str]] = {"north": set(), "south": set()}
    for i in range(30):
        owner = seller_a if i % 3 == 0 else seller_b
        team = "north" if i % 2 == 0 else "south"
        record = await gateway.create(
            admin, "contact", contact_values(first_name=f"C{i}"), owner_id=owner.user_id, team=team
        )
        by_owner[owner.user_id or 0].add(record.id)
        by_team[team].add(record.id)

    expectations = [
        (seller_a, by_owner[seller_a.user_id or 0]),  # 10 records, own scope
        (seller_b, by_owner[seller_b.user_id or 0]),  # 20 records, own scope
        (support, by_team["north"]),  # 15 records, team scope
        (admin, by_team["north"] | by_team["south"]),  # all 30
    ]
    for actor, expected in expectations:
        ids, total = await _walk(gateway, actor)
        assert total == len(expected), actor.role
        assert len(ids) == len(set(ids)), f"duplicates across pages for {actor.role}"
        assert set(ids) == expected, actor.role
        assert await gateway.count(actor, "contact") == len(expected), actor.role


async def test_counting_reaches_no_customer(
    services: Services, staff: Staff, database_url: str
) -> None:
    """The start page's counts must not show up in any customer's access report."""
    gateway = services.gateway
    seller = staff.actor(await staff.create("sales"))
    await gateway.create(seller, "contact", without_birth_date())
    before = await last_seq(database_url)
    assert await gateway.count(seller, "contact") == 1
    [row] = await audit_rows(database_url, before)
    assert (row["action"], row["outcome"], row["subject_ids"]) == ("count", "allowed", "[]")
    assert json.loads(row["detail"]) == {"total": 1}
    officer = staff.actor(await staff.create("compliance"))
    with pytest.raises(Forbidden):  # compliance may not act under the marketing purpose
        await gateway.count(officer, "organization", purpose="marketing")


async def test_out_of_scope_looks_exactly_like_missing_and_is_audited(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    seller_a = staff.actor(await staff.create("sales", team="north"))
    seller_b = staff.actor(await staff.create("sales", team="north"))
    theirs = await gateway.create(seller_b, "contact", without_birth_date())
    missing = str(uuid.uuid4())

    attempts: dict[str, Callable[[str], Awaitable[Any]]] = {
        "read": lambda rid: gateway.read(seller_a, "contact", rid),
        "update": lambda rid: gateway.update(seller_a, "contact", rid, {"city": "Leeds"}),
        "delete": lambda rid: gateway.delete(seller_a, "contact", rid),
    }
    for action, attempt in attempts.items():
        messages: list[str] = []
        for record_id in (theirs.id, missing):
            before = await last_seq(database_url)
            with pytest.raises(NotFound) as caught:
                await attempt(record_id)
            assert not isinstance(caught.value, Forbidden)
            messages.append(str(caught.value))

            [row] = await audit_rows(database_url, before)
            assert row["outcome"] == "denied"
            assert row["action"] == action
            assert row["reason"] == "not_found_or_out_of_scope"
            assert row["resource_id"] == record_id
            assert row["actor_id"] == seller_a.id
            expected_subjects = [theirs.subject_id] if record_id == theirs.id else []
            assert subjects_of(row) == expected_subjects
        assert messages[0] == messages[1], f"{action}: out-of-scope differs from missing"

    # nothing happened to the other seller's record
    again = await gateway.read(seller_b, "contact", theirs.id)
    assert again.values["city"] == theirs.values["city"]


# --- field rules ----------------------------------------------------------------------------


async def test_support_may_not_read_birth_date(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin", team="north"))
    support = staff.actor(await staff.create("support", team="north"))
    record = await gateway.create(admin, "contact", contact_values(), team="north")

    before = await last_seq(database_url)
    with pytest.raises(Forbidden):
        await gateway.read(support, "contact", record.id, fields=("birth_date",))
    [row] = await audit_rows(database_url, before)
    assert row["outcome"] == "denied"
    assert row["action"] == "read"
    assert row["reason"] == "field_not_readable"
    assert fields_of(row) == ["birth_date"]
    assert row["resource_id"] == record.id

    default = await gateway.read(support, "contact", record.id)
    assert "birth_date" in default.restricted
    assert "birth_date" not in default.values
    assert default.values["email"] == record.values["email"]
    [row] = await audit_rows(database_url, before + 1)
    assert row["outcome"] == "allowed"
    assert "birth_date" not in fields_of(row)


async def test_marketing_sees_only_campaign_fields(services: Services, staff: Staff) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    marketing = staff.actor(await staff.create("marketing"))
    record = await gateway.create(admin, "contact", contact_values())

    got = await gateway.read(marketing, "contact", record.id, purpose="marketing")
    campaign = {
        "first_name",
        "last_name",
        "email",
        "country",
        "lifecycle_stage",
        "source",
        "organization_id",
    }
    assert set(got.values) == campaign
    assert {"phone", "birth_date", "notes", "job_title", "city"} <= set(got.restricted)
    assert got.values["email"] == record.values["email"]

    page = await gateway.list(marketing, "contact", purpose="marketing")
    assert [set(item.values) for item in page.items] == [campaign]


async def test_compliance_sees_no_contact_values(services: Services, staff: Staff) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    compliance = staff.actor(await staff.create("compliance"))
    record = await gateway.create(admin, "contact", contact_values())

    got = await gateway.read(compliance, "contact", record.id)
    assert got.values == {}
    assert set(got.restricted) == set(record.values)
    page = await gateway.list(compliance, "contact")
    assert page.total == 1
    assert page.items[0].values == {}


async def test_support_may_not_update_notes(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin", team="north"))
    support = staff.actor(await staff.create("support", team="north"))
    record = await gateway.create(admin, "contact", contact_values(notes="Original"))

    before = await last_seq(database_url)
    with pytest.raises(Forbidden):
        await gateway.update(support, "contact", record.id, {"notes": "Rewritten", "city": "York"})
    [row] = await audit_rows(database_url, before)
    assert (row["outcome"], row["action"], row["reason"]) == (
        "denied",
        "update",
        "field_not_writable",
    )
    assert fields_of(row) == ["notes"]

    unchanged = await gateway.read(support, "contact", record.id)
    assert unchanged.values["notes"] == "Original"
    assert unchanged.values["city"] == record.values["city"]


async def test_handing_a_record_to_a_colleague_is_refused_for_sales(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    seller_a = staff.actor(await staff.create("sales", team="north"))
    seller_b = staff.actor(await staff.create("sales", team="north"))
    mine = await gateway.create(seller_a, "contact", without_birth_date(city="Bath"))

    before = await last_seq(database_url)
    with pytest.raises(Forbidden, match="only to yourself"):
        await gateway.update(
            seller_a, "contact", mine.id, {"city": "Hull"}, owner_id=seller_b.user_id
        )

    after = await gateway.read(seller_a, "contact", mine.id)
    assert after.owner_id == seller_a.user_id
    assert after.values["city"] == "Bath"
    with pytest.raises(NotFound):
        await gateway.read(seller_b, "contact", mine.id)

    updates = [r for r in await audit_rows(database_url, before) if r["action"] == "update"]
    assert [r["outcome"] for r in updates] == ["denied"]  # refused, and the refusal audited
    assert updates[0]["reason"] == "ownership_not_allowed"
    assert updates[0]["resource_id"] == mine.id
    assert subjects_of(updates[0]) == [mine.subject_id]
    assert json.loads(updates[0]["detail"])["owner_asked"] == seller_b.user_id

    # the same holds for a create handed to someone else
    counts = await customer_row_counts(database_url)
    before = await last_seq(database_url)
    with pytest.raises(Forbidden):
        await gateway.create(seller_a, "contact", without_birth_date(), owner_id=seller_b.user_id)
    assert await customer_row_counts(database_url) == counts
    [row] = await audit_rows(database_url, before)
    assert (row["outcome"], row["action"], row["reason"]) == (
        "denied",
        "create",
        "ownership_not_allowed",
    )
    assert row["resource_id"] is None
    assert subjects_of(row) == []  # the refused subject never existed


async def test_write_that_leaves_scope_is_rolled_back(
    services: Services, staff: Staff, database_url: str, tmp_path: Path
) -> None:
    """The re-check after a write is the second line: even under a policy that let sales
    hand records to anyone, a record handed out of their own scope is rolled back."""
    lax = tmp_path / "policy.csv"
    lax.write_text(POLICY_PATH.read_text() + "p, sales, *, assign:any, allow\n")
    gateway = Gateway(
        services.gateway.vault,
        PolicyEngine(MODEL_PATH, lax),
        services.audit,
        ActiveStaff(),
        restrictions=services.gateway.restrictions,
    )
    seller_a = staff.actor(await staff.create("sales", team="north"))
    seller_b = staff.actor(await staff.create("sales", team="north"))
    mine = await gateway.create(seller_a, "contact", without_birth_date(city="Bath"))

    before = await last_seq(database_url)
    with pytest.raises(Forbidden):
        await gateway.update(
            seller_a, "contact", mine.id, {"city": "Hull"}, owner_id=seller_b.user_id
        )
    after = await gateway.read(seller_a, "contact", mine.id)
    assert (after.owner_id, after.values["city"]) == (seller_a.user_id, "Bath")
    updates = [r for r in await audit_rows(database_url, before) if r["action"] == "update"]
    assert [(r["outcome"], r["reason"]) for r in updates] == [
        ("denied", "outside_scope_after_write")
    ]
    assert subjects_of(updates[0]) == [mine.subject_id]

    counts = await customer_row_counts(database_url)
    before = await last_seq(database_url)
    with pytest.raises(Forbidden):
        await gateway.create(seller_a, "contact", without_birth_date(), owner_id=seller_b.user_id)
    assert await customer_row_counts(database_url) == counts
    [row] = await audit_rows(database_url, before)
    assert (row["outcome"], row["reason"]) == ("denied", "outside_scope_after_write")
    assert subjects_of(row) == []  # the rolled-back subject never existed


# --- bad input, fail closed ------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"email": "not-an-email"},
        {"favourite_colour": "blue"},
        {"first_name": "x" * 101},
        {"notes": "y" * 5001},
    ],
    ids=["invalid-email", "unknown-field", "oversize-name", "oversize-notes"],
)
async def test_invalid_input_leaves_nothing_behind(
    services: Services, staff: Staff, database_url: str, overrides: dict[str, Any]
) -> None:
    admin = staff.actor(await staff.create("admin"))
    await services.gateway.create(admin, "contact", contact_values())
    counts = await customer_row_counts(database_url)
    before = await last_seq(database_url)

    with pytest.raises(InvalidInput) as caught:
        await services.gateway.create(admin, "contact", contact_values(**overrides))
    assert set(caught.value.problems) == set(overrides)

    assert await customer_row_counts(database_url) == counts  # no orphaned subject or key
    [row] = await audit_rows(database_url, before)
    assert (row["outcome"], row["action"], row["reason"]) == ("error", "create", "invalid_input")
    for value in overrides.values():
        assert value not in caught.value.message
        assert value not in json.dumps(row, default=str)


AUDIT_FAULT = (sqlite3.DatabaseError, asyncpg.PostgresError)


async def test_create_fails_closed_without_audit(
    services: Services, staff: Staff, database_url: str
) -> None:
    admin = staff.actor(await staff.create("admin"))
    counts = await customer_row_counts(database_url)
    audit_before = await count_rows(database_url, "audit")

    await refuse_audit_inserts(owner_url(database_url))
    with pytest.raises(AUDIT_FAULT, match="injected audit fault"):
        await services.gateway.create(admin, "contact", contact_values())
    assert await customer_row_counts(database_url) == counts
    assert await count_rows(database_url, "audit") == audit_before


async def test_reads_fail_closed_without_audit(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    record = await gateway.create(admin, "contact", contact_values())

    await refuse_audit_inserts(owner_url(database_url))
    results: list[Any] = []
    with pytest.raises(AUDIT_FAULT):
        results.append(await gateway.read(admin, "contact", record.id))
    with pytest.raises(AUDIT_FAULT):
        results.append(await gateway.list(admin, "contact"))
    with pytest.raises(AUDIT_FAULT):
        results.append(await gateway.search(admin, "contact", "email", record.values["email"]))
    assert results == []


# --- search ---------------------------------------------------------------------------------


async def test_search_by_email_ignores_case_and_whitespace(
    services: Services, staff: Staff
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    target = await gateway.create(admin, "contact", contact_values(email="Ada.King@Example.org"))
    await gateway.create(admin, "contact", contact_values(email="someone.else@example.org"))

    for query in ("ada.king@example.org", "  ADA.KING@EXAMPLE.ORG  ", "Ada.King@Example.org\t"):
        found = await gateway.search(admin, "contact", "email", query)
        assert [r.id for r in found] == [target.id], repr(query)


async def test_search_by_phone_accepts_national_and_international(
    services: Services, staff: Staff
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    target = await gateway.create(admin, "contact", contact_values(phone="020 7946 0321"))
    await gateway.create(admin, "contact", contact_values(phone="020 7946 0322"))

    for query in ("020 7946 0321", "+44 20 7946 0321", "+442079460321", "(020) 7946-0321"):
        found = await gateway.search(admin, "contact", "phone", query)
        assert [r.id for r in found] == [target.id], query
    assert await gateway.search(admin, "contact", "phone", "020 7946 0999") == []


async def test_search_never_returns_out_of_scope_records(services: Services, staff: Staff) -> None:
    gateway = services.gateway
    seller_a = staff.actor(await staff.create("sales"))
    seller_b = staff.actor(await staff.create("sales"))
    shared = "shared.customer@example.org"
    mine = await gateway.create(seller_a, "contact", without_birth_date(email=shared))
    await gateway.create(seller_b, "contact", without_birth_date(email=shared))
    only_theirs = await gateway.create(seller_b, "contact", without_birth_date())

    assert [r.id for r in await gateway.search(seller_a, "contact", "email", shared)] == [mine.id]
    assert await gateway.search(seller_a, "contact", "email", only_theirs.values["email"]) == []
    theirs = await gateway.search(seller_b, "contact", "email", shared)
    assert len(theirs) == 1
    assert theirs[0].id != mine.id


async def test_search_drops_blind_index_false_positives(
    services: Services, staff: Staff, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 1-bit index half of all e-mails share a token; only the exact match returns."""
    monkeypatch.setattr("server.vault.vault.index_width", lambda expected_rows: 1)
    gateway = services.gateway
    vault = gateway.vault
    spec = CONTACT.field("email")
    admin = staff.actor(await staff.create("admin"))

    wanted = "needle@example.org"
    token = vault.index_token(CONTACT, spec, wanted)
    assert token in (0, 1)
    colliding = [
        address
        for address in (f"hay{i}@example.org" for i in range(200))
        if vault.index_token(CONTACT, spec, address) == token
    ][:6]
    assert len(colliding) == 6

    target = await gateway.create(admin, "contact", contact_values(email=wanted))
    for address in colliding:
        await gateway.create(admin, "contact", contact_values(email=address))

    before = await last_seq(database_url)
    found = await gateway.search(admin, "contact", "email", wanted)
    assert [r.id for r in found] == [target.id]
    [row] = await audit_rows(database_url, before)
    detail = json.loads(row["detail"])
    assert detail["candidates"] == 7  # every colliding row was a candidate...
    assert detail["returned"] == 1  # ...and all but the real match were re-checked away


async def test_search_by_unreadable_field_is_forbidden_and_audited(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    marketing = staff.actor(await staff.create("marketing"))
    record = await gateway.create(admin, "contact", contact_values())

    before = await last_seq(database_url)
    with pytest.raises(Forbidden):
        await gateway.search(
            marketing, "contact", "phone", record.values["phone"], purpose="marketing"
        )
    [row] = await audit_rows(database_url, before)
    assert (row["outcome"], row["action"]) == ("denied", "search")
    assert row["reason"] in {"action_not_allowed", "field_not_readable"}
    assert fields_of(row) == ["phone"]
    assert subjects_of(row) == []


# --- organizations, references, purposes -------------------------------------------------


async def test_organization_with_contacts_cannot_be_deleted(
    services: Services, staff: Staff
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    org = await gateway.create(admin, "organization", {"name": "Analytical Engines Ltd"})
    member = await gateway.create(admin, "contact", contact_values(organization_id=org.id))
    assert member.values["organization_id"] == org.id

    with pytest.raises(Conflict):
        await gateway.delete(admin, "organization", org.id)
    assert (await gateway.read(admin, "organization", org.id)).values["name"] == (
        "Analytical Engines Ltd"
    )

    await gateway.delete(admin, "contact", member.id)
    await gateway.delete(admin, "organization", org.id)
    with pytest.raises(NotFound):
        await gateway.read(admin, "organization", org.id)


async def test_contact_may_only_reference_a_visible_organization(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin", team="south"))
    seller = staff.actor(await staff.create("sales", team="north"))
    elsewhere = await gateway.create(admin, "organization", {"name": "Southern Co"}, team="south")
    nearby = await gateway.create(admin, "organization", {"name": "Northern Co"}, team="north")
    counts = await customer_row_counts(database_url)

    for org_id in (elsewhere.id, str(uuid.uuid4())):
        with pytest.raises(InvalidInput) as caught:
            await gateway.create(seller, "contact", without_birth_date(organization_id=org_id))
        assert set(caught.value.problems) == {"organization_id"}
    assert await customer_row_counts(database_url) == counts

    mine = await gateway.create(seller, "contact", without_birth_date(organization_id=nearby.id))
    with pytest.raises(InvalidInput):
        await gateway.update(seller, "contact", mine.id, {"organization_id": elsewhere.id})
    assert (await gateway.read(seller, "contact", mine.id)).values["organization_id"] == nearby.id


async def test_unknown_purpose_is_invalid_input(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    record: Record = await gateway.create(admin, "contact", contact_values())
    counts = await customer_row_counts(database_url)

    with pytest.raises(InvalidInput):
        await gateway.read(admin, "contact", record.id, purpose="astrology")
    with pytest.raises(InvalidInput):
        await gateway.list(admin, "contact", purpose="astrology")
    with pytest.raises(InvalidInput):
        await gateway.search(admin, "contact", "email", record.values["email"], purpose="x")
    with pytest.raises(InvalidInput):
        await gateway.create(admin, "contact", contact_values(), purpose="astrology")
    with pytest.raises(InvalidInput):
        await gateway.update(admin, "contact", record.id, {"city": "Ely"}, purpose="astrology")
    with pytest.raises(InvalidInput):
        await gateway.delete(admin, "contact", record.id, purpose="astrology")
    assert await customer_row_counts(database_url) == counts
    assert (await gateway.read(admin, "contact", record.id)).values["city"] == "Arlington"


async def test_export_subject_returns_everything_about_one_person_and_is_audited(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    seller = staff.actor(await staff.create("sales"))
    person = await gateway.create(seller, "contact", without_birth_date(city="Tenby"))
    await gateway.create(seller, "contact", without_birth_date())  # someone else
    exporter = Actor.system("dsr-export")

    before = await last_seq(database_url)
    [record] = await gateway.export_subject(exporter, person.subject_id, purpose="compliance")
    assert record.id == person.id
    assert record.values["city"] == "Tenby"
    [event] = await audit_rows(database_url, before)
    assert (event["action"], event["outcome"]) == ("export", "allowed")
    assert subjects_of(event) == [person.subject_id]
    assert json.loads(event["detail"]) == {"records": 1, "for": "data_subject"}
    assert "Tenby" not in json.dumps(event, default=str)

    with pytest.raises(Forbidden):  # sales may read its customers, not export them
        await gateway.export_subject(seller, person.subject_id)
    with pytest.raises(InvalidInput):
        await gateway.export_subject(exporter, "not-a-subject", purpose="compliance")
