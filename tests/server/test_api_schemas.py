"""Typed API (issue 18): the lead conversion and the public lead form take and give msgspec
Structs, so the OpenAPI document carries real schemas, and every answer here - success and
error - is validated against the document the server itself serves.

The schemathesis run (tests/server/test_api_fuzz.py) checks conformance too, but against a schema
that said only "an object" these answers conformed whatever they held; these tests fail if
an answer drifts from its declared shape or a schema goes back to being a bare object.
"""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient, Response
from jsonschema import Draft202012Validator

from server.datamap import RECORD_TYPES
from server.services import Services
from tests.conftest import Staff, contact_values
from tests.server.leads.test_leads import API, FORM, created, form_body, lead_values

CONVERT = "/api/v1/leads/{record_id}/convert"
TYPED = {
    ("get", "/api/v1/public/leads/form-token"): "FormTokenOut",
    ("post", "/api/v1/public/leads"): "FormReceived",
    ("post", CONVERT): "LeadConversionOut",
}


async def document(client: AsyncClient) -> dict[str, Any]:
    answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200
    doc: dict[str, Any] = answer.json()
    return doc


def conforms(doc: dict[str, Any], method: str, path: str, answer: Response) -> None:
    """The answer's status is documented for the operation and its body matches the schema."""
    responses = doc["paths"][path][method]["responses"]
    assert str(answer.status_code) in responses, (path, answer.status_code, answer.text)
    media = responses[str(answer.status_code)]["content"]["application/json"]
    schema = {**media["schema"], "components": doc["components"]}
    Draft202012Validator(schema).validate(answer.json())


async def test_typed_operations_document_their_schemas(client: AsyncClient) -> None:
    doc = await document(client)
    schemas = doc["components"]["schemas"]
    for (method, path), name in TYPED.items():
        operation = doc["paths"][path][method]
        success = next(s for s in operation["responses"] if s.startswith("2"))
        ref = operation["responses"][success]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{name}"
        assert schemas[name]["properties"], name
    convert_body = doc["paths"][CONVERT]["post"]["requestBody"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/LeadConversionIn"} in convert_body["schema"]["oneOf"]
    assert set(schemas["LeadConversionIn"]["properties"]) == {
        "create_organization",
        "organization_id",
        "deal",
    }
    assert {"title", "amount", "currency"} <= set(schemas["DealDraft"]["properties"])
    # The public form parses its own body (HTML forms too), and still documents it.
    form = doc["paths"]["/api/v1/public/leads"]["post"]["requestBody"]["content"]
    assert set(form) == {"application/json", "application/x-www-form-urlencoded"}
    fields = form["application/json"]["schema"]
    assert fields["required"] == ["form_token"]
    assert fields["additionalProperties"] is False
    assert {"email", "first_name", "website"} <= set(fields["properties"])


async def test_public_form_answers_match_the_document(
    client: AsyncClient, services: Services
) -> None:
    doc = await document(client)
    token = await client.get(f"{FORM}/form-token")
    conforms(doc, "get", "/api/v1/public/leads/form-token", token)
    assert token.headers["cache-control"] == "no-store"
    accepted = await client.post(FORM, json=form_body(services))
    assert accepted.status_code == 202
    conforms(doc, "post", "/api/v1/public/leads", accepted)
    refused = await client.post(FORM, json=form_body(services, form_token="x"))
    assert refused.status_code == 400
    conforms(doc, "post", "/api/v1/public/leads", refused)
    as_form = await client.post(FORM, data=form_body(services, email="second@example.net"))
    assert as_form.status_code == 202, as_form.text


async def test_conversion_answers_match_the_document(staff: Staff, client: AsyncClient) -> None:
    doc = await document(client)
    seller = await staff.login(await staff.create("sales"))
    lead = await created(await seller.post(f"{API}/leads", json=lead_values()))
    path = f"{API}/leads/{lead['id']}/convert"

    unknown = await seller.post(path, json={"alice@example.org": True})
    assert unknown.status_code == 400
    conforms(doc, "post", CONVERT, unknown)
    assert "alice@example.org" not in unknown.text  # a key is input: not echoed
    wrong_type = await seller.post(path, json={"create_organization": "yes"})
    assert wrong_type.status_code == 400
    conforms(doc, "post", CONVERT, wrong_type)
    bad_deal = await seller.post(path, json={"deal": {"amount": -5, "currency": "XXX"}})
    assert bad_deal.status_code == 400
    conforms(doc, "post", CONVERT, bad_deal)
    assert {e["field"] for e in bad_deal.json()["errors"]} == {"title", "amount", "currency"}
    not_a_deal_field = await seller.post(path, json={"deal": {"contact_id": lead["id"]}})
    assert not_a_deal_field.status_code == 400  # the conversion sets the contact

    done = await seller.post(
        path,
        json={
            "create_organization": True,
            "deal": {"title": "Forty bellows", "amount": 4800, "currency": "GBP"},
        },
    )
    assert done.status_code == 200, done.text
    conforms(doc, "post", CONVERT, done)
    body = done.json()
    assert body["lead_id"] == lead["id"]
    assert body["organization_id"]
    assert body["deal_id"]
    again = await seller.post(path, json=None)
    assert again.status_code == 409
    conforms(doc, "post", CONVERT, again)


@pytest.mark.parametrize("key", ["bob@example.org", "x" * 500])
async def test_unknown_keys_in_typed_bodies_are_not_echoed(
    staff: Staff, client: AsyncClient, key: str
) -> None:
    """msgspec names an unknown key in its message; the API shows it only if it looks like
    a field name (every Struct-typed body, not just the lead's)."""
    admin = await staff.login(await staff.create("admin"))
    answer = await admin.post(f"{API}/pipelines", json={"name": "x", key: 1})
    assert answer.status_code == 400
    assert key not in answer.text
    assert "unrecognised field name" in answer.text


async def test_record_answers_match_their_generated_schemas(
    staff: Staff, client: AsyncClient
) -> None:
    """Every record type's answers have a schema generated from the data map (one property
    per field, typed), and a contact's and a deal's answers conform to them."""
    doc = await document(client)
    schemas = doc["components"]["schemas"]
    contact = schemas["ContactRecord"]["properties"]
    assert contact["email"]["oneOf"] == [{"type": "string"}, {"type": "null"}]
    assert {"id", "owner_id", "restricted_fields", "first_name", "birth_date"} <= set(contact)
    assert {"type": "integer"} in schemas["DealRecord"]["properties"]["amount"]["oneOf"]
    listed = doc["paths"]["/api/v1/deals"]["get"]["responses"]["200"]["content"]
    assert listed["application/json"]["schema"] == {"$ref": "#/components/schemas/DealPage"}

    admin = await staff.login(await staff.create("admin"))
    whole = await admin.post(f"{API}/contacts", json=contact_values())
    assert whole.status_code == 201, whole.text
    conforms(doc, "post", "/api/v1/contacts", whole)
    assert whole.json()["birth_date"] == "1906-12-09"
    # A role that may not read a field: left out, named in restricted_fields, still valid.
    seller = await staff.login(await staff.create("sales"))
    values = {k: v for k, v in contact_values().items() if k != "birth_date"}
    made = await seller.post(f"{API}/contacts", json=values)
    assert made.status_code == 201, made.text
    conforms(doc, "post", "/api/v1/contacts", made)
    assert "birth_date" not in made.json()
    assert "birth_date" in made.json()["restricted_fields"]
    record_id = made.json()["id"]
    one = "/api/v1/contacts/{record_id}"
    conforms(doc, "get", one, await seller.get(f"{API}/contacts/{record_id}"))
    changed = await seller.patch(f"{API}/contacts/{record_id}", json={"city": None})
    conforms(doc, "patch", one, changed)
    assert changed.json()["city"] is None
    conforms(doc, "get", "/api/v1/contacts", await seller.get(f"{API}/contacts"))
    found = await seller.post(f"{API}/contacts/search", json={"email": made.json()["email"]})
    conforms(doc, "post", "/api/v1/contacts/search", found)
    assert found.json()["total"] == 1
    by_name = await seller.post(f"{API}/contacts/search", json={"name": made.json()["last_name"]})
    conforms(doc, "post", "/api/v1/contacts/search", by_name)
    assert by_name.json()["capped"] is False
    deal = await seller.post(
        f"{API}/deals",
        json={"title": "Bellows", "contact_id": record_id, "amount": 1250, "currency": "EUR"},
    )
    assert deal.status_code == 201, deal.text
    conforms(doc, "post", "/api/v1/deals", deal)
    refused = await seller.get(f"{API}/deals/{record_id}")
    assert refused.status_code == 404
    conforms(doc, "get", "/api/v1/deals/{record_id}", refused)


def body_validator(doc: dict[str, Any], name: str) -> Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


async def test_record_bodies_are_described_field_by_field_from_the_data_map(
    client: AsyncClient,
) -> None:
    """Every record type's create, update and search bodies are named schemas built from
    its declaration: each field a client may set, with the rules the server applies."""
    doc = await document(client)
    bodies = {
        (method, operation["requestBody"]["content"]["application/json"]["schema"].get("$ref"))
        for operations in doc["paths"].values()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "requestBody" in operation
    }
    routed = [
        rt
        for rt in RECORD_TYPES.values()
        if f"{rt.label.replace(' ', '')}Record" in doc["components"]["schemas"]
    ]
    assert len(routed) >= 10  # every type with API routes of its own
    for rt in routed:
        name = rt.label.replace(" ", "")
        settable = {f.name for f in rt.fields if not f.set_by_rule}
        for method, suffix in (("post", "Create"), ("patch", "Update")):
            schema = doc["components"]["schemas"][f"{name}{suffix}"]
            assert set(schema["properties"]) == settable | {"owner_id", "team"}, name
            assert schema["additionalProperties"] is False
            assert (method, f"#/components/schemas/{name}{suffix}") in bodies, name
        required = {f.name for f in rt.fields if f.required and f.default is None}
        assert set(doc["components"]["schemas"][f"{name}Create"].get("required", [])) == required
        assert "required" not in doc["components"]["schemas"][f"{name}Update"]
    deal = doc["components"]["schemas"]["DealCreate"]["properties"]
    assert deal["probability"]["minimum"] == 0
    assert deal["probability"]["maximum"] == 100
    assert "stage_entered_at" not in deal  # set by the deal rule: a client may not send it
    stage = doc["components"]["schemas"]["ContactCreate"]["properties"]["lifecycle_stage"]
    assert stage["anyOf"][0]["enum"] == ["lead", "prospect", "customer", "former_customer"]
    search = doc["components"]["schemas"]["ContactSearch"]["properties"]
    assert {"name", "email", "phone"} <= set(search)


async def test_the_documented_body_and_the_server_agree(staff: Staff, client: AsyncClient) -> None:
    """A body the document accepts is one the server takes, and bodies the document
    refuses the server refuses too (400, in the one documented error schema)."""
    doc = await document(client)
    create = body_validator(doc, "ContactCreate")
    seller = await staff.login(await staff.create("sales"))
    good = {k: v for k, v in contact_values().items() if k != "birth_date"}
    create.validate(good)
    made = await seller.post(f"{API}/contacts", json=good)
    assert made.status_code == 201, made.text
    create.validate({**good, "city": "  ", "job_title": None})  # blank and null clear

    refused = {
        "unknown key": {**good, "favourite_colour": "blue"},
        "not an e-mail": {**good, "email": "grace-at-example.org"},
        "too long": {**good, "city": "x" * 101},
        "no last name": {k: v for k, v in good.items() if k != "last_name"},
        "empty first name": {**good, "first_name": ""},
        "not a stage": {**good, "lifecycle_stage": "vip"},
        "a number for a name": {**good, "first_name": 7},
    }
    for why, body in refused.items():
        assert not create.is_valid(body), why
        answer = await seller.post(f"{API}/contacts", json=body)
        assert answer.status_code == 400, (why, answer.text)
        conforms(doc, "post", "/api/v1/contacts", answer)
    update = body_validator(doc, "ContactUpdate")
    update.validate({"city": None})
    assert not update.is_valid({"last_name": None})  # required: never cleared
    cleared = await seller.patch(f"{API}/contacts/{made.json()['id']}", json={"last_name": None})
    assert cleared.status_code == 400
    conforms(doc, "patch", "/api/v1/contacts/{record_id}", cleared)


async def test_every_error_answer_refers_to_the_one_error_schema(client: AsyncClient) -> None:
    doc = await document(client)
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["status_code", "detail"]
    answers = [
        answer
        for operations in doc["paths"].values()
        for operation in operations.values()
        if isinstance(operation, dict) and "responses" in operation
        for status, answer in operation["responses"].items()
        if status.startswith("4")
    ]
    assert len(answers) > 200
    for answer in answers:
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}, answer
