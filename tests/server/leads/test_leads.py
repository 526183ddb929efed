"""Leads: capture (API, admin, public web form), qualify, assign and convert.

A lead is its own data subject, like a contact. Converting it creates the contact under
the same subject (and key), optionally an organization and a deal, in one transaction; a
failure half-way leaves nothing behind. The public form is rate-limited, guarded by a
honeypot and a signed minimum fill time, and never echoes what was typed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import json
import zipfile
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from httpx import AsyncClient, Response

from audit.tables import AuditRecord
from server.app import create_app
from server.background import remove_expired_rows
from server.datamap import DEAL, LEAD, RecordType
from server.dsr.export import build_export
from server.gateway import Actor, Conflict
from server.leads.webform import ALREADY_USED, SpentTokens, WebForm
from server.services import Services
from tests.admin_ui.test_admin_ui import csrf_of, location, submit, text_of, web_login
from tests.admin_ui.test_compliance_console import officer_client
from tests.conftest import ENGINE, Staff, http_client
from tests.dbutil import raw_sql
from tests.server.vault.test_at_rest import _database_copy

API = "/api/v1"
FORM = f"{API}/public/leads"
ADMIN = Actor.system("test-admin")
COMPLIANCE = Actor.system("test-compliance")
FIRST, LAST = "Ottoline", "Winterbottom"
EMAIL = "ottoline.winterbottom@example.net"
PHONE = "+44 20 7946 0777"
COMPANY = "Winterbottom Bespoke Bellows"
MESSAGE = "Please call about forty brass bellows for the Quenby forge"


def lead_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "first_name": FIRST,
        "last_name": LAST,
        "email": EMAIL,
        "phone": PHONE,
        "company_name": COMPANY,
        "message": MESSAGE,
        "source": "event",
    }
    values.update(overrides)
    return values


def aged_token(services: Services, seconds: int = 30) -> str:
    """A form token issued ``seconds`` ago, as if a person had spent that long typing."""
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    return WebForm(services.gateway, services.settings).tokens.issue(issued)


def form_body(services: Services, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "first_name": FIRST,
        "last_name": LAST,
        "email": EMAIL,
        "company_name": COMPANY,
        "message": MESSAGE,
        "website": "",
        "form_token": aged_token(services),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def lead_total(services: Services) -> int:
    return await services.gateway.count(ADMIN, "lead", purpose="compliance")


async def created(response: Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- API by role ------------------------------------------------------------------------------


async def test_sales_capture_qualify_and_own_scope(staff: Staff) -> None:
    rep = await staff.create("sales")
    seller = await staff.login(rep)
    lead = await created(await seller.post(f"{API}/leads", json=lead_values()))
    assert lead["status"] == "new"  # the default
    assert lead["email"] == EMAIL
    assert lead["owner_id"] == rep.user_id

    listed = (await seller.get(f"{API}/leads", params={"status": "new"})).json()
    assert [item["id"] for item in listed["items"]] == [lead["id"]]

    qualified = await seller.patch(
        f"{API}/leads/{lead['id']}", json={"status": "qualified", "phone": "020 7946 0778"}
    )
    assert qualified.status_code == 200, qualified.text
    assert qualified.json()["status"] == "qualified"
    assert qualified.json()["phone"] == "+442079460778"

    # What a conversion sets is not for hand editing.
    refused = await seller.patch(
        f"{API}/leads/{lead['id']}", json={"converted_contact_id": lead["id"]}
    )
    assert refused.status_code == 403
    assert "converted_contact_id" in refused.json()["detail"]

    # Another rep cannot see it; a bad status names the field, not the value.
    other = await staff.login(await staff.create("sales"))
    assert (await other.get(f"{API}/leads/{lead['id']}")).status_code == 404
    assert (await other.get(f"{API}/leads")).json()["total"] == 0
    bad = await seller.patch(f"{API}/leads/{lead['id']}", json={"status": "hot-ish"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "status"
    assert "hot-ish" not in bad.text


async def test_admin_reassigns_and_disqualifies(staff: Staff) -> None:
    first, second = await staff.create("sales"), await staff.create("sales")
    admin = await staff.login(await staff.create("admin"))
    lead = await created(
        await admin.post(
            f"{API}/leads", json={**lead_values(), "owner_id": first.user_id, "team": first.team}
        )
    )
    moved = await admin.patch(
        f"{API}/leads/{lead['id']}",
        json={"owner_id": second.user_id, "status": "disqualified", "disqualified_reason": "spam"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["owner_id"] == second.user_id
    assert (await (await staff.login(first)).get(f"{API}/leads/{lead['id']}")).status_code == 404
    mine = await (await staff.login(second)).get(f"{API}/leads/{lead['id']}")
    assert mine.json()["disqualified_reason"] == "spam"


async def test_other_roles_see_what_policy_allows(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    lead = await created(await admin.post(f"{API}/leads", json=lead_values()))

    support = await staff.login(await staff.create("support"))
    assert (await support.get(f"{API}/leads")).status_code == 403
    assert (await support.post(f"{API}/leads", json=lead_values())).status_code == 403

    marketing = await staff.login(await staff.create("marketing"))
    page = await marketing.get(f"{API}/leads", headers={"x-consentry-purpose": "marketing"})
    assert page.status_code == 200, page.text
    (item,) = page.json()["items"]
    assert item["status"] == "new"
    assert item["source"] == "event"
    assert "email" not in item
    assert "email" in item["restricted_fields"]
    assert (await marketing.get(f"{API}/leads/{lead['id']}")).status_code == 404

    compliance = await staff.login(await staff.create("compliance"))
    record = await compliance.get(
        f"{API}/leads/{lead['id']}", headers={"x-consentry-purpose": "compliance"}
    )
    assert record.status_code == 200
    assert FIRST not in record.text
    assert EMAIL not in record.text


# --- the public web form ---------------------------------------------------------------------


async def test_web_form_creates_a_lead_without_echo(
    client: AsyncClient, services: Services
) -> None:
    token = (await client.get(f"{FORM}/form-token")).json()
    assert token["honeypot_field"] == "website"
    assert token["min_seconds"] >= 1

    response = await client.post(FORM, json=form_body(services))
    assert response.status_code == 202, response.text
    for value in (FIRST, LAST, EMAIL, COMPANY, MESSAGE):
        assert value not in response.text

    (lead,) = (await services.gateway.list(ADMIN, "lead", purpose="customer_relationship")).items
    assert lead.values["email"] == EMAIL
    assert lead.values["source"] == "web"
    assert lead.values["status"] == "new"
    assert (lead.owner_id, lead.team) == (0, "sales")  # the configured defaults
    (event,) = await AuditRecord.select().where(
        (AuditRecord.resource_type == "lead") & (AuditRecord.action == "create")
    )
    assert event["actor_id"] == "system:web-form"
    assert event["purpose"] == "customer_relationship"

    # A plain HTML form (form-encoded) works the same.
    response = await client.post(FORM, data=form_body(services, email="second@example.net"))
    assert response.status_code == 202, response.text
    assert await lead_total(services) == 2


async def test_web_form_owner_is_configurable(
    services: Services, settings: Any, staff: Staff
) -> None:
    rep = await staff.create("sales", "west")
    custom = dataclasses.replace(
        services,
        settings=settings.with_overrides(web_form_owner_id=rep.user_id, web_form_team="west"),
    )
    async with http_client(create_app(custom.settings, custom)) as client:
        assert (await client.post(FORM, json=form_body(services))).status_code == 202
    (lead,) = (await services.gateway.list(ADMIN, "lead", purpose="customer_relationship")).items
    assert (lead.owner_id, lead.team) == (rep.user_id, "west")


@pytest.mark.parametrize("active", [False, None])
async def test_a_web_form_owner_who_cannot_own_leaves_the_lead_to_the_team(
    services: Services, settings: Any, staff: Staff, active: bool | None
) -> None:
    """A disabled or unknown configured owner never costs a visitor their enquiry, and is
    never made the owner either (records go only to active staff)."""
    owner_id = 987_654
    if active is False:
        rep = await staff.create("sales", "west")
        admin = await staff.create("admin", "hq")
        await services.accounts.set_active(rep.user_id, False, by=admin)
        owner_id = rep.user_id
    custom = dataclasses.replace(
        services,
        settings=settings.with_overrides(web_form_owner_id=owner_id, web_form_team="west"),
    )
    async with http_client(create_app(custom.settings, custom)) as client:
        assert (await client.post(FORM, json=form_body(services))).status_code == 202
    (lead,) = (await services.gateway.list(ADMIN, "lead", purpose="customer_relationship")).items
    assert (lead.owner_id, lead.team) == (0, "west")


async def test_honeypot_is_answered_but_dropped(client: AsyncClient, services: Services) -> None:
    response = await client.post(FORM, json=form_body(services, website="http://spam.example"))
    assert response.status_code == 202
    assert await lead_total(services) == 0


async def test_too_fast_or_forged_tokens_are_refused(
    client: AsyncClient, services: Services
) -> None:
    fresh = (await client.get(f"{FORM}/form-token")).json()["form_token"]
    too_fast = await client.post(FORM, json=form_body(services, form_token=fresh))
    assert too_fast.status_code == 400
    assert too_fast.json()["errors"] == [
        {
            "field": "form_token",
            "message": "the form was sent too quickly after it was opened; try again",
        }
    ]
    issued, _, _ = aged_token(services).partition(".")
    forged = await client.post(FORM, json=form_body(services, form_token=f"{issued}.{'0' * 64}"))
    assert forged.status_code == 400
    missing = await client.post(FORM, json=form_body(services, form_token=None))
    assert missing.status_code == 400
    assert await lead_total(services) == 0


async def test_a_form_token_creates_one_lead_on_any_worker(
    client: AsyncClient, services: Services, app: Any
) -> None:
    token = aged_token(services)
    first = await client.post(FORM, json=form_body(services, form_token=token))
    assert first.status_code == 202, first.text
    body = form_body(services, form_token=token, email="another@example.net")
    again = await client.post(FORM, json=body)
    assert again.status_code == 400
    assert again.json()["errors"] == [{"field": "form_token", "message": ALREADY_USED}]
    assert FIRST not in again.text
    # Another worker (its own app and WebForm) knows it too: the state is in the database.
    async with http_client(create_app(services.settings, services)) as other_worker:
        replayed = await other_worker.post(FORM, json=form_body(services, form_token=token))
    assert replayed.status_code == 400
    assert await lead_total(services) == 1

    # Two at once with one token: still one lead.
    racing = aged_token(services)
    answers = await asyncio.gather(
        *(
            client.post(FORM, json=form_body(services, form_token=racing, email=f"{n}@example.net"))
            for n in range(2)
        )
    )
    assert sorted(a.status_code for a in answers) == [202, 400]
    assert await lead_total(services) == 2

    # Only a keyed hash of each token is kept, and nothing about the visitor.
    rows = await raw_sql(services.settings.database_url, "SELECT * FROM spent_form_token")
    assert len(rows) == 2
    dump = json.dumps(rows, default=str)
    for value in (token, racing, token.rsplit(".", 1)[1], EMAIL, FIRST, "127.0.0.1"):
        assert value not in dump


async def test_a_refused_submission_does_not_spend_its_token(
    client: AsyncClient, services: Services
) -> None:
    token = aged_token(services)
    typo = await client.post(FORM, json=form_body(services, form_token=token, email="ottoline@"))
    assert typo.status_code == 400
    assert {e["field"] for e in typo.json()["errors"]} == {"email"}
    fixed = await client.post(FORM, json=form_body(services, form_token=token))
    assert fixed.status_code == 202, fixed.text
    assert await lead_total(services) == 1


async def test_spent_tokens_are_purged_by_the_daily_housekeeping(services: Services) -> None:
    spent = WebForm(services.gateway, services.settings).spent
    now = dt.datetime.now(dt.UTC)
    assert await spent.spend("old-token", now - dt.timedelta(minutes=1))
    assert await spent.spend("live-token", now + dt.timedelta(hours=1))
    assert not await spent.spend("live-token", now + dt.timedelta(hours=1))

    removed = await remove_expired_rows(services)

    assert removed["spent_form_tokens"] == 1
    assert await SpentTokens.purge_expired() == 0
    assert not await spent.spend("live-token", now + dt.timedelta(hours=1))  # still spent


async def test_invalid_input_names_fields_never_values(
    client: AsyncClient, services: Services
) -> None:
    typed = "ottoline at winterbottom dot net"
    response = await client.post(
        FORM, json=form_body(services, email=typed, last_name=None, status="converted")
    )
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"status"}  # unknown keys are refused before anything else
    response = await client.post(FORM, json=form_body(services, email=typed, last_name=None))
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"email", "last_name"}
    assert typed not in response.text
    assert FIRST not in response.text
    assert await lead_total(services) == 0


async def test_rate_limit_per_client_address(services: Services, settings: Any) -> None:
    strict = dataclasses.replace(
        services, settings=settings.with_overrides(web_form_free_submissions=3)
    )
    async with http_client(create_app(strict.settings, strict)) as client:
        for n in range(3):
            body = form_body(services, email=f"n{n}@example.net")
            assert (await client.post(FORM, json=body)).status_code == 202
        throttled = await client.post(FORM, json=form_body(services))
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["retry-after"]) <= 60
    assert await lead_total(services) == 3


# --- conversion ----------------------------------------------------------------------------


async def test_convert_creates_contact_organization_and_deal(
    staff: Staff, services: Services
) -> None:
    rep = await staff.create("sales")
    seller = await staff.login(rep)
    lead = await created(await seller.post(f"{API}/leads", json=lead_values()))
    response = await seller.post(
        f"{API}/leads/{lead['id']}/convert",
        json={
            "create_organization": True,
            "deal": {"title": "Forty bellows", "amount": 480_000, "currency": "GBP"},
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["subject_id"] == lead["subject_id"]

    contact = (await seller.get(f"{API}/contacts/{result['contact_id']}")).json()
    assert contact["subject_id"] == lead["subject_id"]  # one person, one subject
    assert (contact["first_name"], contact["email"]) == (FIRST, EMAIL)
    assert contact["phone"] == "+442079460777"
    assert contact["lifecycle_stage"] == "prospect"
    assert contact["organization_id"] == result["organization_id"]
    assert contact["owner_id"] == rep.user_id
    organization = (await seller.get(f"{API}/organizations/{result['organization_id']}")).json()
    assert organization["name"] == COMPANY
    deal = (await seller.get(f"{API}/deals/{result['deal_id']}")).json()
    assert (deal["title"], deal["amount"], deal["stage"]) == (
        "Forty bellows",
        480_000,
        "qualification",
    )
    assert deal["contact_id"] == result["contact_id"]
    assert deal["organization_id"] == result["organization_id"]
    converted = (await seller.get(f"{API}/leads/{lead['id']}")).json()
    assert converted["status"] == "converted"
    assert converted["converted_contact_id"] == result["contact_id"]
    assert converted["converted_deal_id"] == result["deal_id"]
    assert converted["message"] == MESSAGE  # still readable: the key is the contact's too
    # The new contact is findable by the lead's e-mail (blind index recomputed).
    found = await seller.post(f"{API}/contacts/search", json={"email": EMAIL})
    assert [c["id"] for c in found.json()["items"]] == [result["contact_id"]]

    again = await seller.post(f"{API}/leads/{lead['id']}/convert", json={})
    assert again.status_code == 409

    actions = {
        (r["action"], r["resource_type"])
        for r in await AuditRecord.select().where(AuditRecord.actor_id == f"user:{rep.user_id}")
    }
    assert {("create", "contact"), ("create", "organization"), ("create", "deal")} <= actions
    assert ("convert", "lead") in actions
    dump = json.dumps(await AuditRecord.select(), default=str)
    for value in (FIRST, EMAIL, COMPANY, "Forty bellows"):
        assert value not in dump


async def test_convert_with_existing_organization_and_refusals(staff: Staff) -> None:
    rep = await staff.create("sales")
    seller = await staff.login(rep)
    org = await created(await seller.post(f"{API}/organizations", json={"name": "Quenby Forge"}))
    lead = await created(await seller.post(f"{API}/leads", json=lead_values(company_name=None)))

    no_company = await seller.post(
        f"{API}/leads/{lead['id']}/convert", json={"create_organization": True}
    )
    assert no_company.status_code == 400
    assert no_company.json()["errors"][0]["field"] == "company_name"
    bad_deal = await seller.post(
        f"{API}/leads/{lead['id']}/convert", json={"deal": {"amount": -5, "currency": "XXX"}}
    )
    assert bad_deal.status_code == 400
    assert {e["field"] for e in bad_deal.json()["errors"]} == {"title", "amount", "currency"}
    unknown = await seller.post(f"{API}/leads/{lead['id']}/convert", json={"contact": {}})
    assert unknown.status_code == 400
    other = await staff.login(await staff.create("sales"))
    assert (await other.post(f"{API}/leads/{lead['id']}/convert", json={})).status_code == 404

    response = await seller.post(
        f"{API}/leads/{lead['id']}/convert", json={"organization_id": org["id"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["organization_id"] == org["id"]
    assert response.json()["deal_id"] is None


async def test_a_failure_midway_leaves_nothing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = services.gateway
    lead = await gw.create(ADMIN, "lead", lead_values(), purpose="customer_relationship")
    before = {
        r: await gw.count(ADMIN, r, purpose="compliance")
        for r in ("contact", "organization", "deal")
    }
    real = gw.vault.encrypt_values

    def failing(rt: RecordType, row_id: str, key: Any, values: Any) -> dict[str, Any]:
        if rt is DEAL:  # after the organization and the contact were inserted
            raise RuntimeError("disk full")
        return real(rt, row_id, key, values)

    monkeypatch.setattr(gw.vault, "encrypt_values", failing)
    with pytest.raises(RuntimeError):
        await gw.convert_lead(
            ADMIN,
            lead.id,
            purpose="customer_relationship",
            create_organization=True,
            deal={"title": "Bellows", "currency": "EUR"},
        )
    monkeypatch.undo()
    after = {
        r: await gw.count(ADMIN, r, purpose="compliance")
        for r in ("contact", "organization", "deal")
    }
    assert after == before
    # Nothing was audited as written: no create, no convert.
    written = await AuditRecord.select().where(
        AuditRecord.action.is_in(["create", "convert"]) & (AuditRecord.resource_type != "lead")
        | (AuditRecord.action == "convert")
    )
    assert written == []
    unchanged = await gw.read(ADMIN, "lead", lead.id, purpose="customer_relationship")
    assert unchanged.values["status"] == "new"
    assert unchanged.values["converted_contact_id"] is None
    # ... and the conversion works once the fault is gone.
    result = await gw.convert_lead(ADMIN, lead.id, purpose="customer_relationship")
    assert result.contact_id
    with pytest.raises(Conflict):
        await gw.convert_lead(ADMIN, lead.id, purpose="customer_relationship")


async def test_deleting_a_converted_lead_keeps_the_contact_readable(services: Services) -> None:
    gw = services.gateway
    lead = await gw.create(ADMIN, "lead", lead_values(), purpose="customer_relationship")
    result = await gw.convert_lead(ADMIN, lead.id, purpose="customer_relationship")
    await gw.delete(ADMIN, "lead", lead.id, purpose="customer_relationship")
    contact = await gw.read(ADMIN, "contact", result.contact_id, purpose="customer_relationship")
    assert contact.values["first_name"] == FIRST
    assert not contact.erased
    # An unconverted lead's key goes with it.
    other = await gw.create(ADMIN, "lead", lead_values(), purpose="customer_relationship")
    await gw.delete(ADMIN, "lead", other.id, purpose="customer_relationship")
    assert await gw.vault.keys_for([other.subject_id]) == {}


# --- privacy -----------------------------------------------------------------------------


async def test_lead_values_are_ciphertext_at_rest(
    client: AsyncClient, services: Services, database_url: str
) -> None:
    assert (await client.post(FORM, json=form_body(services, phone=PHONE))).status_code == 202
    copy = (await _database_copy(database_url)).lower()
    assert b"web" in copy  # the plaintext source is there: the search sees the data
    for value in (FIRST, LAST, EMAIL, COMPANY, MESSAGE, "7946 0777", "79460777"):
        assert value.lower().encode() not in copy, f"{value!r} readable in the {ENGINE} copy"


async def test_subject_export_and_lookup_cover_leads(services: Services) -> None:
    gw = services.gateway
    lead = await gw.create(ADMIN, "lead", lead_values(), purpose="customer_relationship")
    found = await gw.locate(COMPLIANCE, "lead", "email", EMAIL.upper(), purpose="compliance")
    assert found == [(lead.id, lead.subject_id)]

    bundle = await build_export(services, lead.subject_id, requested_by="user:1")
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert "leads.csv" in files
    (exported,) = json.loads(files["data.json"])["records"]["lead"]
    assert (exported["first_name"], exported["message"]) == (FIRST, MESSAGE)

    # After conversion the person's export holds both the lead and the contact.
    await gw.convert_lead(ADMIN, lead.id, purpose="customer_relationship")
    bundle = await build_export(services, lead.subject_id, requested_by="user:1")
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        records = json.loads(archive.read("data.json"))["records"]
    assert len(records["lead"]) == 1
    assert len(records["contact"]) == 1


async def test_erasing_a_leads_person(services: Services, database_url: str) -> None:
    gw = services.gateway
    lead = await gw.create(ADMIN, "lead", lead_values(), purpose="customer_relationship")
    result = await services.erasure.erase(lead.subject_id, by="user:1")
    assert result.complete
    assert result.erased == {"lead": 1}
    assert await gw.locate(COMPLIANCE, "lead", "email", EMAIL, purpose="compliance") == []
    record = await gw.read(ADMIN, "lead", lead.id, purpose="compliance")
    assert record.erased
    assert record.values["first_name"] is None
    assert record.values["source"] == "event"  # classification stays for the totals
    assert await gw.vault.keys_for([lead.subject_id]) == {}
    (row,) = await raw_sql(database_url, "SELECT * FROM lead WHERE id = ?", lead.id)
    assert all(not (isinstance(v, str) and v.startswith("cs1.")) for v in row.values())
    with pytest.raises(Conflict):
        await gw.convert_lead(ADMIN, lead.id, purpose="customer_relationship")


# --- admin pages ----------------------------------------------------------------------------


async def test_admin_convert_button(staff: Staff, services: Services) -> None:
    rep = await staff.create("sales")
    lead = await services.gateway.create(
        ADMIN, "lead", lead_values(), owner_id=rep.user_id, team=rep.team
    )
    browser = await web_login(staff, rep)
    page = await browser.get(f"/leads/{lead.id}")
    assert page.status_code == 200
    assert f'href="/leads/{lead.id}/convert"' in page.text
    form = await browser.get(f"/leads/{lead.id}/convert")
    assert form.status_code == 200
    response = await browser.post(
        f"/leads/{lead.id}/convert",
        data={
            "_csrf_token": csrf_of(form),
            "create_organization": "on",
            "deal_title": "Forty bellows",
            "deal_amount": "4800",
            "deal_currency": "GBP",
        },
    )
    target = location(response)
    assert target.startswith("/contacts/")
    contact = await browser.get(target)
    assert FIRST in text_of(contact)
    converted = await browser.get(f"/leads/{lead.id}")
    assert "Converted" in text_of(converted)
    assert f'href="/leads/{lead.id}/convert"' not in converted.text
    again = await browser.get(f"/leads/{lead.id}/convert")
    assert again.status_code == 409
    # Deleting the converted lead would leave the contact's key alone, and the page says so.
    delete_page = text_of(await browser.get(f"/leads/{lead.id}/delete"))
    assert "The person it was about is not affected." in delete_page
    assert "encryption key is destroyed" not in delete_page


# --- policy specifics (the matrices are in tests/policy/test_policy.py) ---------------------------


def test_lead_field_rules(services: Services) -> None:
    policy = services.policy

    def fields(role: str, action: str, purpose: str) -> frozenset[str] | None:
        decision = services.gateway.decide(Actor.staff(1, role, "north"), LEAD, action, purpose)
        return decision.fields if decision.allowed else None

    assert fields("marketing", "list", "marketing") == {"status", "source", "campaign_id"}
    assert fields("sales", "convert", "customer_relationship") is not None
    assert fields("admin", "convert", "customer_relationship") is not None
    for role in ("support", "marketing", "compliance"):
        assert not policy.allows(role, "lead", "convert")
    for role in ("admin", "sales"):
        writable = fields(role, "update", "customer_relationship") or frozenset()
        assert "status" in writable
        assert not writable & {"converted_contact_id", "converted_deal_id"}
    located = fields("compliance", "locate", "compliance")
    assert located == {"email", "phone"}


async def test_compliance_console_finds_a_leads_person(staff: Staff, services: Services) -> None:
    lead = await services.gateway.create(
        ADMIN, "lead", lead_values(), purpose="customer_relationship"
    )
    _, client = await officer_client(staff)
    found = await submit(client, "/compliance/subjects", "/compliance/subjects", {"contact": EMAIL})
    assert parse_qs(urlsplit(location(found)).query)["subject"] == [lead.subject_id]
