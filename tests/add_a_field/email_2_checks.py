"""What a contact field brings with it, checked on a tree that declares ``email_2``.

Not collected on its own (the name does not start with ``test_``): tests/test_add_a_field.py
copies the repository, adds the one data-map declaration of a second e-mail address
(encrypted, blind-indexed, third natural key, duplicate match), generates the migration
with ``piccolo migrations new crm --auto``, and runs this file in that copy.
Every surface below is reached through the real app on the real database, and each check
fails if its surface ignored the new field.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from typing import Any

from httpx import AsyncClient

from server.csvio.exporter import csv_chunks
from server.csvio.importer import ALREADY_IMPORTED, import_rows, read_rows, record_type
from server.datamap import CONTACT
from server.dsr.export import NoRecords, build_export
from server.gateway import Actor
from server.services import Services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import web_login
from tests.conftest import Staff
from tests.dbutil import raw_sql

API = "/api/v1/contacts"
ADMIN = Actor.system("test-admin")
PURPOSE = "customer_relationship"
SECOND = "Grace.Second@Example.ORG"
STORED = "grace.second@example.org"  # as the data map normalises an e-mail address


def values(**overrides: Any) -> dict[str, Any]:
    """A contact known only by its second address (no e-mail, no phone)."""
    return {"first_name": "Grace", "last_name": "Hopper", "email_2": SECOND, **overrides}


async def add(services: Services, **overrides: Any) -> str:
    record = await services.gateway.create(ADMIN, "contact", values(**overrides), purpose=PURPOSE)
    return record.id


def test_the_tree_declares_the_field() -> None:
    spec = CONTACT.field("email_2")
    assert spec.encrypted
    assert spec.blind_index
    assert spec.duplicate_match
    assert spec.natural_key == 3


async def test_validated_sealed_and_found_by_its_blind_index(
    staff: Staff, settings: Settings
) -> None:
    rep = await staff.login(await staff.create("sales"))
    refused = await rep.post(API, json=values(email_2="not an address"))
    assert refused.status_code == 400, refused.text
    assert {"field": "email_2", "message": "not a valid e-mail address"} in refused.json()["errors"]

    made = await rep.post(API, json=values())
    assert made.status_code == 201, made.text
    assert made.json()["email_2"] == STORED
    (row,) = await raw_sql(
        settings.database_url,
        "SELECT email_2, email_2_bidx FROM contact WHERE id = ?",
        made.json()["id"],
    )
    assert row["email_2"].startswith("cs1.")
    assert "grace" not in row["email_2"].lower()
    assert row["email_2_bidx"] is not None

    found = await rep.post(f"{API}/search", json={"email_2": " GRACE.second@example.org"})
    assert found.status_code == 200, found.text
    assert [item["id"] for item in found.json()["items"]] == [made.json()["id"]]


async def test_policy_keeps_it_from_a_role_without_the_field(staff: Staff) -> None:
    rep = await staff.login(await staff.create("sales"))
    made = (await rep.post(API, json=values())).json()
    marketer = await staff.login(await staff.create("marketing"))
    seen = await marketer.get(f"{API}/{made['id']}")
    assert seen.status_code == 200, seen.text
    assert "email_2" not in seen.json()
    assert "email_2" in seen.json()["restricted_fields"]
    asked = await marketer.get(f"{API}/{made['id']}", params={"fields": "email_2"})
    assert asked.status_code == 403


async def test_the_api_document_and_the_admin_form_have_it(
    client: AsyncClient, staff: Staff
) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert schemas["ContactRecord"]["properties"]["email_2"]
    created = schemas["ContactCreate"]["properties"]["email_2"]["anyOf"][0]
    assert created == {"type": "string", "maxLength": 254, "format": "email"}
    assert "email_2" in schemas["ContactUpdate"]["properties"]
    assert "email_2" in schemas["ContactSearch"]["properties"]

    pages = await web_login(staff, await staff.create("sales"))
    form = await pages.get("/contacts/new")
    assert form.status_code == 200
    assert re.search(r'<input[^>]*name="email_2"', form.text), "no input for email_2"


async def test_an_import_keyed_by_it_does_not_duplicate(services: Services) -> None:
    await add(services)
    content = f"First name,Last name,Second e-mail address\nGrace,Hopper,{SECOND.upper()}\n"
    fields = services.gateway.permitted_fields(ADMIN, "contact", "create")
    assert fields is not None
    plan, rows = read_rows(content.encode(), record_type("contact"), {}, fields)
    report = await import_rows(services.gateway, ADMIN, "contact", plan, rows, dry_run=False)
    assert report.created == 0
    assert [(s.line, s.field, s.reason) for s in report.skipped] == [
        (2, "email_2", ALREADY_IMPORTED)
    ]
    assert await services.gateway.count(ADMIN, "contact", purpose=PURPOSE) == 1


async def test_exports_carry_it_and_erasure_removes_it(
    services: Services, settings: Settings, staff: Staff
) -> None:
    record_id = await add(services)
    record = await services.gateway.read(ADMIN, "contact", record_id, purpose=PURPOSE)
    export = await services.gateway.start_export(ADMIN, "contact", reason="reporting")
    text = "".join([chunk async for chunk in csv_chunks(export)])
    (exported,) = list(csv.DictReader(io.StringIO(text)))
    assert exported["email_2"] == STORED

    bundle = await build_export(
        services, record.subject_id, requested_by="user:99", requested_role="admin"
    )
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        data = json.loads(archive.read("data.json"))
        people = archive.read("contacts.csv").decode()
    (mine,) = data["records"]["contact"]
    assert mine["email_2"] == STORED
    assert STORED in people

    result = await services.erasure.erase(record.subject_id, by="user:1")
    assert result.complete
    (row,) = await raw_sql(
        settings.database_url,
        "SELECT email_2, email_2_bidx FROM contact WHERE id = ?",
        record_id,
    )
    assert row["email_2_bidx"] is None
    assert not (row["email_2"] or "").startswith("cs1.")
    assert await services.gateway.search(ADMIN, "contact", "email_2", SECOND) == []
    tombstone = await services.gateway.read(ADMIN, "contact", record_id, purpose="compliance")
    assert tombstone.values["email_2"] is None
    assert STORED not in json.dumps(await subject_export_or_none(services, record.subject_id))


async def subject_export_or_none(services: Services, subject: str) -> dict[str, Any] | None:
    """The subject export's data, or None when nothing is left to export about them."""
    try:
        bundle = await build_export(
            services, subject, requested_by="user:99", requested_role="admin"
        )
    except NoRecords:
        return None
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        data: dict[str, Any] = json.loads(archive.read("data.json"))
    return data


async def test_two_contacts_sharing_it_are_a_duplicate_pair(services: Services) -> None:
    first = await add(services, email="grace@example.org")
    second = await add(services, first_name="Ada", last_name="Lovelace", email="ada@example.org")
    await add(services, first_name="Alan", last_name="Turing", email_2="alan@example.org")
    scan = await services.gateway.find_duplicates(ADMIN, purpose=PURPOSE)
    pairs = {frozenset((p.first_id, p.second_id)): {r.kind for r in p.reasons} for p in scan.pairs}
    assert pairs == {frozenset((first, second)): {"email_2"}}
