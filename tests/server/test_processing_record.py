"""The record of processing (Art. 30): complete with respect to the data map, and served
only to the roles the policy allows (as a page and as JSON)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from policy.enforcer import ROLES, PolicyEngine
from server.app import create_app
from server.datamap import PURPOSES, RECORD_TYPES, Category, LegalBasis
from server.processing_record import (
    CATEGORY_LABELS,
    DATA_SUBJECTS,
    FORMAT,
    LEGAL_BASIS_LABELS,
    UNDESCRIBED,
    build_record,
    is_personal,
)
from server.services import build_services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import text_of, web_login
from tests.conftest import Staff, http_client

CONTROLLER = {
    "controller_name": "Acme Widgets GmbH",
    "controller_contact": "privacy@acme-widgets.example, Hauptstrasse 1, Berlin",
    "dpo_contact": "dpo@acme-widgets.example",
}


@pytest.fixture
async def acme(settings: Settings) -> AsyncIterator[Staff]:
    """An installation whose controller is configured, with its staff helper."""
    configured = settings.with_overrides(**CONTROLLER)
    services = build_services(configured)
    helper = Staff(services, create_app(configured, services))
    yield helper
    for client in helper.clients:
        await client.aclose()


def test_every_purpose_and_personal_field_category_is_in_the_record() -> None:
    record = build_record(Settings(), PolicyEngine())
    assert [p.name for p in record.purposes] == list(PURPOSES)
    for entry in record.purposes:
        purpose = PURPOSES[entry.name]
        assert entry.legal_basis == purpose.legal_basis
        assert entry.recipients == purpose.recipients
        listed = {
            (d.record_type, f.name) for d in entry.data for c in d.categories for f in c.fields
        }
        declared = {
            (rt.resource, f.name)
            for rt in RECORD_TYPES.values()
            for f in rt.fields
            if entry.name in f.purposes and is_personal(f)
        }
        assert listed == declared, entry.name

    personal = {
        (rt.resource, f.category)
        for rt in RECORD_TYPES.values()
        for f in rt.fields
        if is_personal(f)
    }
    in_categories = {
        (name.split(".")[0], c.category)
        for c in record.data_categories
        for name in (f.name for f in c.fields)
    }
    assert in_categories == {(rt, str(cat)) for rt, cat in personal}
    in_retention = {(r.record_type, r.category) for r in record.retention}
    assert in_retention == {(rt, str(cat)) for rt, cat in personal}
    for entry in record.retention:
        assert entry.rules
        assert all(entry.rules)


def test_every_declaration_the_record_draws_on_has_a_description() -> None:
    """A new record type, category or legal basis must be described before it ships."""
    assert set(DATA_SUBJECTS) >= set(RECORD_TYPES)
    assert set(CATEGORY_LABELS) == set(Category)
    assert set(LEGAL_BASIS_LABELS) == set(LegalBasis)
    record = build_record(Settings(), PolicyEngine())
    assert all(s.description != UNDESCRIBED for s in record.data_subjects)
    assert all(p.recipients for p in PURPOSES.values())


def test_the_record_describes_what_the_product_does() -> None:
    settings = Settings().with_overrides(**CONTROLLER)
    record = build_record(settings, PolicyEngine())
    assert record.controller.name == "Acme Widgets GmbH"
    assert record.controller.dpo_contact == "dpo@acme-widgets.example"
    marketing = next(p for p in record.purposes if p.name == "marketing_email")
    assert marketing.legal_basis == "consent"
    assert "Art. 6(1)(a)" in marketing.legal_basis_label
    assert any("processor" in r for r in marketing.recipients)
    # Staff access comes from the policy: marketing reads a few contact fields, all records.
    [contacts] = [
        a for a in marketing.staff_access if (a.role, a.record_type) == ("marketing", "contact")
    ]
    assert contacts.scope == "all"
    assert "email" in contacts.fields
    assert "phone" not in contacts.fields
    assert not any(a.role == "sales" for a in marketing.staff_access)
    compliance = next(p for p in record.purposes if p.name == "compliance")
    [ids_only] = [
        a for a in compliance.staff_access if (a.role, a.record_type) == ("compliance", "contact")
    ]
    assert ids_only.fields == ()
    assert "none configured" in record.transfers.lower()

    measures = " ".join(f"{m.title}: {m.description}" for m in record.security_measures)
    for promise in (
        "AES-256-GCM",
        "per data subject",
        "contact.email",  # blind-indexed
        "HMAC",
        "Casbin",
        "sales: contact own",
        "support: contact team",
        "marketing: contact all",
        "admin, compliance",  # roles with a mandatory second factor
        "TOTP",
        "argon2id",
        "append-only",
        "Merkle",
        "Ed25519",
        "crypto-shredding",
    ):
        assert promise.lower() in measures.lower(), promise

    data = record.to_json()
    assert data["format"] == FORMAT
    assert [p["name"] for p in data["purposes"]] == list(PURPOSES)
    assert data["third_country_transfers"]["transfers"] == []
    assert data["controller"]["name"] == "Acme Widgets GmbH"


@pytest.mark.parametrize("role", ["compliance", "admin"])
async def test_the_record_page_for_compliance_and_admins(acme: Staff, role: str) -> None:
    client = await web_login(acme, await acme.create(role))
    page = await client.get("/compliance/record-of-processing")
    assert page.status_code == 200
    text = text_of(page)
    for expected in (
        "Record of processing activities",
        "Acme Widgets GmbH",
        "dpo@acme-widgets.example",
        "Performance of a contract",
        "E-mail delivery provider",
        "Free-text notes",
        "AES-256-GCM",
    ):
        assert expected in text, expected
    for purpose in PURPOSES:
        assert f'id="purpose-{purpose}"' in page.text


@pytest.mark.parametrize("role", sorted(set(ROLES) - {"compliance", "admin"}))
async def test_the_record_page_does_not_exist_for_other_roles(acme: Staff, role: str) -> None:
    client = await web_login(acme, await acme.create(role))
    assert (await client.get("/compliance/record-of-processing")).status_code == 404


async def test_the_record_as_json(acme: Staff) -> None:
    url = "/api/v1/compliance/record-of-processing"
    anonymous = http_client(acme.app)
    acme.clients.append(anonymous)
    assert (await anonymous.get(url)).status_code == 401
    for role in ("compliance", "admin"):
        client = await acme.login(await acme.create(role))
        response = await client.get(url)
        assert response.status_code == 200, role
        data = response.json()
        assert data["format"] == FORMAT
        assert data["controller"]["name"] == "Acme Widgets GmbH"
        assert {p["name"] for p in data["purposes"]} == set(PURPOSES)
    for role in ("sales", "support", "marketing"):
        client = await acme.login(await acme.create(role))
        assert (await client.get(url)).status_code == 404, role
