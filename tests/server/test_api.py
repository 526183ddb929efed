"""REST API v1 for contacts and organizations, over HTTP, as each kind of staff user.

Everything here goes through the real app: session cookie -> route -> gateway -> policy ->
vault -> audit. The audit table is read back where a refusal must leave a trace.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from httpx import AsyncClient, Response

from audit.tables import AuditRecord
from server.vault.tables import DataSubject
from tests.conftest import ENGINE, Staff, contact_values

API = "/api/v1"
PATHS = {"contact": f"{API}/contacts", "organization": f"{API}/organizations"}
RESOURCES = ["contact", "organization"]
BIRTH_DATE = "1906-12-09"  # contact_values' default: what support must never see


def organization_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": f"Initech {uuid.uuid4().hex[:6]}",
        "domain": "initech.example",
        "industry": "Software",
        "employee_count": 120,
        "annual_revenue": 4_500_000,
        "email": f"office.{uuid.uuid4().hex[:6]}@initech.example",
        "phone": "+44 20 7946 0999",
        "city": "Austin",
        "country": "US",
    }
    values.update(overrides)
    return values


def values_for(resource: str, *, omit: tuple[str, ...] = (), **overrides: Any) -> dict[str, Any]:
    values = (contact_values if resource == "contact" else organization_values)(**overrides)
    return {k: v for k, v in values.items() if k not in omit}


# Sales and support may not set a contact's birth date: what they create leaves it out.
NOT_FOR_SALES = ("birth_date",)


# Per resource: a field every writing role may change, and the value to change it to.
CHANGE = {"contact": ("job_title", "Commodore"), "organization": ("industry", "Logistics")}


async def create(
    client: AsyncClient, resource: str, *, omit: tuple[str, ...] = (), **overrides: Any
) -> dict[str, Any]:
    response = await client.post(PATHS[resource], json=values_for(resource, omit=omit, **overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def total(client: AsyncClient, resource: str) -> int:
    response = await client.get(PATHS[resource])
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


def content(record: dict[str, Any]) -> dict[str, Any]:
    """A record's data: without timestamps (rendered differently by the two engines) and
    without the list of fields hidden from whoever fetched it."""
    skip = {"created_at", "updated_at", "restricted_fields"}
    return {k: v for k, v in record.items() if k not in skip}


def error_fields(response: Response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


async def audit_rows(**where: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await AuditRecord.select().order_by(AuditRecord.seq)
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


# --- CRUD, list, search ------------------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES)
async def test_admin_crud_round_trip(staff: Staff, resource: str) -> None:
    admin = await staff.login(await staff.create("admin"))
    sent = values_for(resource)

    created = await admin.post(PATHS[resource], json=sent)
    assert created.status_code == 201, created.text
    body = created.json()
    record_id = body["id"]
    assert uuid.UUID(record_id)
    for name, value in sent.items():
        if name != "phone":  # stored in E.164
            assert body[name] == value, name
    assert body["restricted_fields"] == []

    got = await admin.get(f"{PATHS[resource]}/{record_id}")
    assert got.status_code == 200, got.text
    assert got.json()["id"] == record_id
    assert got.json()["phone"] == "+44" + sent["phone"].removeprefix("+44").replace(" ", "")

    field, new_value = CHANGE[resource]
    patched = await admin.patch(f"{PATHS[resource]}/{record_id}", json={field: new_value})
    assert patched.status_code == 200, patched.text
    assert patched.json()[field] == new_value
    again = await admin.get(f"{PATHS[resource]}/{record_id}")
    assert again.json()[field] == new_value
    assert again.json()["updated_at"] >= again.json()["created_at"]

    cleared = await admin.patch(f"{PATHS[resource]}/{record_id}", json={"city": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["city"] is None

    deleted = await admin.delete(f"{PATHS[resource]}/{record_id}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await admin.get(f"{PATHS[resource]}/{record_id}")
    assert gone.status_code == 404
    assert await total(admin, resource) == 0
    again_deleted = await admin.delete(f"{PATHS[resource]}/{record_id}")
    assert again_deleted.status_code == 404


async def test_list_pages_through_every_record_once(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    ids = {(await create(admin, "contact"))["id"] for _ in range(5)}

    seen: list[str] = []
    for page in (1, 2, 3):
        response = await admin.get(PATHS["contact"], params={"page": page, "page_size": 2})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["page"], body["page_size"], body["total"], body["pages"]) == (page, 2, 5, 3)
        seen += [item["id"] for item in body["items"]]
    assert len(seen) == 5
    assert set(seen) == ids

    beyond = await admin.get(PATHS["contact"], params={"page": 4, "page_size": 2})
    assert beyond.status_code == 200
    assert beyond.json()["items"] == []
    assert beyond.json()["total"] == 5

    default = (await admin.get(PATHS["contact"])).json()
    assert (default["page"], default["page_size"], default["pages"]) == (1, 25, 1)


async def test_list_rejects_bad_paging(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    for params in ({"page_size": 101}, {"page_size": 0}, {"page": 0}, {"page": "two"}):
        response = await admin.get(PATHS["contact"], params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert next(iter(params)) in response.text, params


async def test_list_filters(staff: Staff) -> None:
    admin_identity = await staff.create("admin")
    admin = await staff.login(admin_identity)
    rep = await staff.create("sales", "north")
    org = await create(admin, "organization")
    lead = await create(admin, "contact", lifecycle_stage="lead", organization_id=org["id"])
    customer = await create(admin, "contact", lifecycle_stage="customer", owner_id=rep.user_id)
    await create(admin, "organization", industry="Energy")

    async def ids(resource: str, **params: Any) -> set[str]:
        response = await admin.get(PATHS[resource], params=params)
        assert response.status_code == 200, response.text
        assert response.json()["total"] == len(response.json()["items"])
        return {item["id"] for item in response.json()["items"]}

    assert await ids("contact", lifecycle_stage="lead") == {lead["id"]}
    assert await ids("contact", lifecycle_stage="customer") == {customer["id"]}
    assert await ids("contact", lifecycle_stage="former_customer") == set()
    assert await ids("contact", organization_id=org["id"]) == {lead["id"]}
    assert await ids("contact", owner_id=rep.user_id) == {customer["id"]}
    assert await ids("contact", owner_id=admin_identity.user_id) == {lead["id"]}
    assert await ids("contact", owner_id=rep.user_id, lifecycle_stage="lead") == set()
    assert await ids("organization", industry="Software") == {org["id"]}


async def test_list_rejects_bad_filters(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    for params, named in (
        ({"colour": "teal"}, "colour"),
        ({"email": "someone@example.org"}, "email"),  # encrypted: not filterable
        ({"lifecycle_stage": "bogus"}, "lifecycle_stage"),
        ({"organization_id": "not-a-uuid"}, "organization_id"),
        ({"owner_id": "seven"}, "owner_id"),
    ):
        response = await admin.get(PATHS["contact"], params=params)
        assert response.status_code == 400, (params, response.text)
        assert named in response.json()["detail"], params
        if named != "owner_id":
            assert named in error_fields(response), params
        assert "someone@example.org" not in response.text


async def test_search_by_email_and_phone(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    wanted = await create(
        admin, "contact", email="Ada.Lovelace@Example.ORG", phone="+44 20 7946 0123"
    )
    await create(admin, "contact", email="charles.babbage@example.org", phone="+44 20 7946 0456")
    search = f"{PATHS['contact']}/search"

    for query in (
        {"email": "ada.lovelace@example.org"},
        {"email": "ADA.LOVELACE@EXAMPLE.ORG"},
        {"email": "  Ada.Lovelace@example.org "},
        {"phone": "020 7946 0123"},
        {"phone": "+442079460123"},
    ):
        response = await admin.post(search, json=query)
        assert response.status_code == 200, (query, response.text)
        assert response.json()["total"] == 1, query
        assert [item["id"] for item in response.json()["items"]] == [wanted["id"]]

    nobody = await admin.post(search, json={"email": "nobody@example.org"})
    assert nobody.status_code == 200
    assert nobody.json() == {"items": [], "total": 0}


async def test_search_rejects_bad_queries(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    cases: list[tuple[Any, str | None]] = [
        ({"email": "ada@example.org", "phone": "020 7946 0123"}, None),
        ({"city": "London"}, "city"),
        ({"notes": "ada"}, "notes"),
        ({}, None),
        ({"email": ""}, None),
        ({"email": 42}, None),
        ({"email": "not an address"}, "email"),
        ({"email": "x" * 400 + "@example.org"}, None),
    ]
    for body, named in cases:
        response = await admin.post(f"{PATHS['contact']}/search", json=body)
        assert response.status_code == 400, (body, response.text)
        assert "email" in response.json()["detail"], body
        if named:
            assert named in error_fields(response), body
        assert "London" not in response.text
        assert "not an address" not in response.text
        assert "xxxxxxxx" not in response.text
    for raw in (b"[]", b'{"email": '):
        response = await admin.post(
            f"{PATHS['contact']}/search", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (raw, response.text)


# --- bad input ------------------------------------------------------------------------------

SECRET = "Zq7-private-value"  # submitted inside bad input; must never be echoed back

BAD_CREATES: list[tuple[str, Any, str | None]] = [
    ("contact", contact_values(email=f"{SECRET}-no-at-sign"), "email"),
    ("contact", contact_values(email=f"{SECRET}@"), "email"),
    ("contact", contact_values(favourite_colour=SECRET), "favourite_colour"),
    ("contact", contact_values(first_name=SECRET * 10), "first_name"),
    ("contact", contact_values(notes=SECRET * 400), "notes"),
    ("contact", contact_values(first_name=987654321), "first_name"),
    ("contact", contact_values(phone=987654321), "phone"),
    ("contact", contact_values(phone=f"{SECRET} 0"), "phone"),
    ("contact", contact_values(birth_date=f"{SECRET}"), "birth_date"),
    ("contact", contact_values(birth_date="1906-13-45"), "birth_date"),
    ("contact", contact_values(country="Zqland"), "country"),
    ("contact", contact_values(lifecycle_stage=SECRET), "lifecycle_stage"),
    ("contact", contact_values(first_name=""), "first_name"),
    ("contact", contact_values(first_name=None), "first_name"),
    ("contact", contact_values(organization_id=str(uuid.uuid4())), "organization_id"),
    ("contact", contact_values(owner_id="Zq7"), "owner_id"),
    ("contact", {"first_name": SECRET}, "last_name"),
    ("organization", organization_values(employee_count=f"{SECRET}"), "employee_count"),
    ("organization", organization_values(employee_count="12"), "employee_count"),
    ("organization", organization_values(employee_count=True), "employee_count"),
    ("organization", organization_values(annual_revenue=12.5), "annual_revenue"),
    ("organization", organization_values(name=["Zq7", SECRET]), "name"),
    ("organization", organization_values(email=f"{SECRET}@@example.org"), "email"),
    ("contact", [contact_values(first_name=SECRET)], None),
    ("organization", [organization_values(name=SECRET)], None),
    ("contact", f'{{"first_name": "{SECRET}", "last_name": ', None),
    ("contact", f'{{"first_name": "{SECRET}" "last_name": "x"}}', None),
    ("contact", f'"{SECRET}"', None),
]


async def test_bad_create_is_refused_and_writes_nothing(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    for resource in RESOURCES:
        await create(admin, resource)
    before = {resource: await total(admin, resource) for resource in RESOURCES}
    subjects_before = len(await DataSubject.select(DataSubject.id))

    for resource, body, named in BAD_CREATES:
        case = (resource, named, str(body)[:60])
        if isinstance(body, str):
            response = await admin.post(
                PATHS[resource], content=body.encode(), headers={"content-type": "application/json"}
            )
        else:
            response = await admin.post(PATHS[resource], json=body)

        assert response.status_code == 400, (case, response.text)
        assert response.headers["content-type"].startswith("application/json"), case
        assert response.json()["status_code"] == 400, case
        assert response.json()["detail"], case
        if named:
            assert named in error_fields(response), (case, response.text)
            assert named in response.json()["detail"], case
        assert SECRET not in response.text, case
        assert "987654321" not in response.text, case
        assert await total(admin, resource) == before[resource], case

    assert len(await DataSubject.select(DataSubject.id)) == subjects_before


@pytest.mark.parametrize("resource", RESOURCES)
async def test_bad_update_changes_nothing(staff: Staff, resource: str) -> None:
    admin = await staff.login(await staff.create("admin"))
    record = await create(admin, resource)
    url = f"{PATHS[resource]}/{record['id']}"
    field, new_value = CHANGE[resource]

    for body in (
        {field: new_value, "email": f"{SECRET}-no-at-sign"},
        {field: new_value, "favourite_colour": SECRET},
        {field: new_value, "city": SECRET * 20},
        {field: new_value, "country": 44},
    ):
        response = await admin.patch(url, json=body)
        assert response.status_code == 400, response.text
        assert set(body) - {field} <= error_fields(response)
        assert SECRET not in response.text

    for raw in (b"[]", b'{"city": ', b"null"):
        response = await admin.patch(url, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, (raw, response.text)

    after = (await admin.get(url)).json()
    assert content(after) == content(record)
    assert after["updated_at"] == after["created_at"]  # never touched
    assert await total(admin, resource) == 1


# --- permission matrix ------------------------------------------------------------------

# Contacts are scoped to their owner (a colleague in the same team still cannot see them);
# organizations to the owner's team.
OTHER_TEAM = {"contact": "north", "organization": "south"}
# Who may delete: sales deletes its own contacts; only admins delete organizations.
DELETER = {"contact": "sales", "organization": "admin"}


def endpoints(resource: str, record_id: str) -> list[tuple[str, str, Any]]:
    base = PATHS[resource]
    return [
        ("GET", base, None),
        ("POST", base, values_for(resource)),
        ("POST", f"{base}/search", {"email": "someone@example.org"}),
        ("GET", f"{base}/{record_id}", None),
        ("PATCH", f"{base}/{record_id}", {"city": "Nowhere"}),
        ("DELETE", f"{base}/{record_id}", None),
    ]


@pytest.mark.parametrize("resource", RESOURCES)
async def test_permission_matrix(staff: Staff, client: AsyncClient, resource: str) -> None:
    """Anonymous, wrong role, other owner, allowed - the same four questions per resource."""
    base = PATHS[resource]
    admin = await staff.login(await staff.create("admin", "hq"))
    owner = await staff.login(await staff.create("sales", "north"))
    record = await create(owner, resource, omit=NOT_FOR_SALES)
    url = f"{base}/{record['id']}"
    missing_url = f"{base}/{uuid.uuid4()}"
    assert record["team"] == "north"

    # Anonymous: 401 on every endpoint, with or without a made-up session cookie.
    for headers in ({}, {"cookie": "consentry_session=made-up-token"}):
        for method, target, body in endpoints(resource, record["id"]):
            response = await client.request(method, target, json=body, headers=headers)
            assert response.status_code == 401, (method, target, response.text)
            assert "login" in response.json()["detail"]
            assert record["city"] not in response.text

    # Wrong role: refused. Creating answers 403 (there is nothing to hide); refusing a
    # write to an existing record answers 404, exactly like a record that does not exist.
    marketing = await staff.login(await staff.create("marketing", "north"))
    compliance = await staff.login(await staff.create("compliance", "north"))
    support = await staff.login(await staff.create("support", "north"))
    created = await marketing.post(base, json=values_for(resource))
    assert created.status_code == 403, created.text
    assert "create" in created.json()["detail"]
    updated = await compliance.patch(url, json={"city": "Nowhere"})
    assert updated.status_code == 404, updated.text
    assert updated.json() == (await compliance.patch(missing_url, json={"city": "x"})).json()
    deleted = await support.delete(url)
    assert deleted.status_code == 404, deleted.text
    assert deleted.json() == (await support.delete(missing_url)).json()

    # Other owner: the record does not exist for them - 404, never 403, on every route.
    other = await staff.login(await staff.create("sales", OTHER_TEAM[resource]))
    for method, body in (("GET", None), ("PATCH", {"city": "Nowhere"}), ("DELETE", None)):
        response = await other.request(method, url, json=body)
        assert response.status_code == 404, (method, response.text)
        assert response.json() == (await other.request(method, missing_url, json=body)).json()
        assert record["city"] not in response.text
    assert (await other.get(base)).json()["total"] == 0
    found = await other.post(f"{base}/search", json={"email": record["email"]})
    assert found.status_code == 200
    assert found.json() == {"items": [], "total": 0}

    # Nothing above changed anything.
    assert await total(admin, resource) == 1
    assert content(record).items() <= content((await admin.get(url)).json()).items()

    # Allowed: the owner reads, lists, searches and updates; the right role deletes.
    got = await owner.get(url)
    assert got.status_code == 200
    assert got.json()["email"] == record["email"]
    assert got.json()["restricted_fields"] == (["birth_date"] if resource == "contact" else [])
    assert [item["id"] for item in (await owner.get(base)).json()["items"]] == [record["id"]]
    found = await owner.post(f"{base}/search", json={"email": record["email"]})
    assert [item["id"] for item in found.json()["items"]] == [record["id"]]
    field, new_value = CHANGE[resource]
    changed = await owner.patch(url, json={field: new_value})
    assert changed.status_code == 200, changed.text
    assert changed.json()[field] == new_value
    deleter = owner if DELETER[resource] == "sales" else admin
    assert (await deleter.delete(url)).status_code == 204
    assert (await owner.get(url)).status_code == 404

    # Every refusal left an audit trail naming who was refused what; no values in it.
    denied = await audit_rows(resource_type=resource, outcome="denied")
    assert [(r["actor_role"], r["action"], r["resource_id"]) for r in denied] == [
        ("marketing", "create", None),
        ("compliance", "update", record["id"]),
        ("compliance", "update", missing_url.rsplit("/", 1)[1]),
        ("support", "delete", record["id"]),
        ("support", "delete", missing_url.rsplit("/", 1)[1]),
        *[
            ("sales", action, rid)
            for action in ("read", "update", "delete")
            for rid in (record["id"], missing_url.rsplit("/", 1)[1])
        ],
        ("sales", "read", record["id"]),
    ]
    assert denied[1]["subject_ids"] == f'["{record["subject_id"]}"]'
    assert all(record["email"] not in str(r) for r in denied)
    allowed = [
        r["action"]
        for r in await audit_rows(resource_type=resource, actor_role="sales")
        if r["outcome"] == "allowed"
    ]
    assert allowed == ["create", "list", "search", "read", "list", "search", "update"] + (
        ["delete"] if resource == "contact" else []
    )


async def test_support_never_sees_birth_date(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    support = await staff.login(await staff.create("support", "north"))
    record = await create(admin, "contact", birth_date=BIRTH_DATE, team="north")
    url = f"{PATHS['contact']}/{record['id']}"

    for fields in ("birth_date", "first_name,birth_date", " birth_date , email"):
        refused = await support.get(url, params={"fields": fields})
        assert refused.status_code == 403, refused.text
        assert "birth_date" in refused.json()["detail"]
        assert BIRTH_DATE not in refused.text

    default = await support.get(url)
    assert default.status_code == 200, default.text
    assert "birth_date" in default.json()["restricted_fields"]
    assert "birth_date" not in default.json()
    assert default.json()["email"] == record["email"]
    assert BIRTH_DATE not in default.text

    chosen = await support.get(url, params={"fields": "first_name,email"})
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["first_name"] == record["first_name"]
    assert "phone" not in chosen.json()
    assert BIRTH_DATE not in chosen.text

    listed = await support.get(PATHS["contact"])
    found = await support.post(f"{PATHS['contact']}/search", json={"email": record["email"]})
    for response in (listed, found):
        assert response.status_code == 200
        assert [item["id"] for item in response.json()["items"]] == [record["id"]]
        assert "birth_date" not in response.json()["items"][0]
        assert BIRTH_DATE not in response.text

    sneaky = await support.patch(url, json={"birth_date": "1999-01-01"})
    assert sneaky.status_code == 403, sneaky.text
    assert BIRTH_DATE not in sneaky.text
    assert (await admin.get(url)).json()["birth_date"] == BIRTH_DATE

    refusals = await audit_rows(reason="field_not_readable")
    assert len(refusals) == 3
    assert {r["fields"] for r in refusals} == {'["birth_date"]'}


# --- purpose -------------------------------------------------------------------------------


async def test_purpose_header(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    record = await create(admin, "contact", team="north")
    url = f"{PATHS['contact']}/{record['id']}"

    for method, target in (("GET", PATHS["contact"]), ("GET", url)):
        unknown = await admin.request(method, target, headers={"X-Consentry-Purpose": "curiosity"})
        assert unknown.status_code == 400, unknown.text
        assert "purpose" in unknown.json()["detail"]
        assert "marketing" in unknown.json()["detail"]  # lists the registered ones

    marketing = await staff.login(await staff.create("marketing", "marketing"))
    listed = await marketing.get(PATHS["contact"])
    assert listed.status_code == 200, listed.text
    item = listed.json()["items"][0]
    assert item["email"] == record["email"]
    assert "phone" not in item
    assert "phone" in item["restricted_fields"]
    read = await marketing.get(url)
    assert read.status_code == 200
    last_two = (await audit_rows(actor_role="marketing"))[-2:]
    assert [(r["action"], r["purpose"]) for r in last_two] == [
        ("list", "marketing"),
        ("read", "marketing"),
    ]

    support = await staff.login(await staff.create("support", "north"))
    assert (await support.get(url)).status_code == 200
    as_marketing = {"X-Consentry-Purpose": "marketing"}
    refused_list = await support.get(PATHS["contact"], headers=as_marketing)
    assert refused_list.status_code == 403, refused_list.text
    refused_read = await support.get(url, headers=as_marketing)
    assert refused_read.status_code == 404, refused_read.text
    refused_search = await support.post(
        f"{PATHS['contact']}/search", json={"email": record["email"]}, headers=as_marketing
    )
    assert refused_search.status_code == 403, refused_search.text
    assert record["email"] not in refused_search.text
    denied = await audit_rows(actor_role="support", outcome="denied")
    assert len(denied) == 3
    assert {(r["purpose"], r["reason"]) for r in denied} == {
        ("marketing", "purpose_not_allowed_for_role")
    }


# --- operations ---------------------------------------------------------------------------


async def test_health_ready_and_openapi(client: AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}

    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "audit_sealing": "ok"},
        # The pool's size and use, and nothing about where the database is.
        "database_pool": {"engine": ENGINE, "size": 10, "in_use": 0},
    }

    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for base in PATHS.values():
        assert base in paths
        assert {"get", "post"} <= set(paths[base])
        assert f"{base}/search" in paths
        assert {"get", "patch", "delete"} <= set(paths[f"{base}/{{record_id}}"])
    assert "/api/v1/auth/login" in paths
    assert "email" in paths[PATHS["contact"]]["post"]["description"]


async def test_every_response_carries_a_request_id(staff: Staff, client: AsyncClient) -> None:
    admin = await staff.login(await staff.create("admin"))
    record = await create(admin, "contact")
    url = f"{PATHS['contact']}/{record['id']}"
    responses = [
        await client.get("/health"),
        await client.get("/ready"),
        await client.get("/schema/openapi.json"),
        await client.get("/no/such/page"),
        await client.put(PATHS["contact"], json={}),
        await client.get(PATHS["contact"]),
        await admin.get(PATHS["contact"]),
        await admin.get(url),
        await admin.get(f"{PATHS['contact']}/{uuid.uuid4()}"),
        await admin.post(PATHS["contact"], json=[]),
        await admin.post(PATHS["contact"], json=contact_values()),
        await admin.patch(url, json={"city": "Paris"}),
        await admin.delete(url),
    ]
    assert [r.status_code for r in responses] == [
        *(200, 200, 200, 404, 405, 401),  # the router's own 404/405 included
        *(200, 200, 404, 400, 201, 200, 204),
    ]
    ids = [r.headers.get("x-request-id", "") for r in responses]
    assert all(len(i) >= 8 for i in ids), ids
    assert len(set(ids)) == len(ids)

    chosen = await client.get("/health", headers={"x-request-id": "trace-abc.12345"})
    assert chosen.headers["x-request-id"] == "trace-abc.12345"
    hostile = await client.get("/health", headers={"x-request-id": "<script>alert(1)</script>"})
    assert hostile.headers["x-request-id"] != "<script>alert(1)</script>"
    assert len(hostile.headers["x-request-id"]) == 32


async def test_keys_that_look_like_personal_data_are_not_echoed(staff: Staff) -> None:
    """A filter or search *key* is client input too: it must not come back in errors."""
    client = await staff.login(await staff.create("admin"))
    listing = await client.get("/api/v1/contacts", params={"alice@example.org": "1"})
    assert listing.status_code == 400
    assert "alice@example.org" not in listing.text
    search = await client.post("/api/v1/contacts/search", json={"bob@example.org": "x"})
    assert search.status_code == 400
    assert "bob@example.org" not in search.text
