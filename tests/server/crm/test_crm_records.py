"""Deals, interactions and cases: records about one person, through the gateway.

Each is sealed under its contact's data key (``subject_from``), so deleting one leaves the
person untouched, deleting the person first needs them gone, and a subject export finds
them. Policy: sales own their deals and interactions, support its team's cases and
interactions, marketing sees pipeline numbers only, compliance metadata only.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from typing import Any

import jsonschema
import pytest
from httpx import AsyncClient, Response

from audit.tables import AuditRecord
from server.demo import seed_demo_data
from server.dsr.export import build_export
from server.gateway import Actor, InvalidInput
from server.pipelines.tables import DEFAULT_PIPELINE_ID
from server.services import Services
from server.vault.tables import SubjectKey
from tests.admin_ui.test_admin_ui import csrf_of, location, submit, text_of, web_login
from tests.conftest import ENGINE, Staff, contact_values
from tests.server.dsr.test_dsr_export import SCHEMA_FILE
from tests.server.vault.test_at_rest import _database_copy

API = "/api/v1"
PATHS = {
    "contact": f"{API}/contacts",
    "deal": f"{API}/deals",
    "interaction": f"{API}/interactions",
    "case": f"{API}/cases",
}
DEAL_TITLE = "Quarterly cask renewal for Perpetua Fotheringay"
DEAL_NOTES = "Wants the oak barrels delivered before the Lochinvarrow festival"
SUMMARY = "Barnabus rang about the late cooperage invoice"
PARTICIPANTS = "Hortensia Blenkinsop (his assistant) and our cellar master"
CASE_TITLE = "Leaking hogshead returned by Quillfeather"
CASE_DESCRIPTION = "The third barrel from the Snoddington batch weeps at the chime"


def sales_contact(**overrides: Any) -> dict[str, Any]:
    values = contact_values(**overrides)
    values.pop("birth_date")  # sales may not set birth dates
    return values


def deal_values(contact_id: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": DEAL_TITLE,
        "amount": 1_250_000,
        "currency": "GBP",
        "stage": "proposal",
        "probability": 40,
        "expected_close": "2027-01-31",
        "contact_id": contact_id,
        "notes": DEAL_NOTES,
    }
    values.update(overrides)
    return values


def interaction_values(contact_id: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "channel": "phone_call",
        "direction": "inbound",
        "occurred_at": "2026-11-30T10:15:00+01:00",
        "summary": SUMMARY,
        "participants": PARTICIPANTS,
        "contact_id": contact_id,
    }
    values.update(overrides)
    return values


def case_values(contact_id: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": CASE_TITLE,
        "description": CASE_DESCRIPTION,
        "kind": "product_return",
        "priority": "high",
        "due_at": "2030-12-02T17:00:00Z",  # years ahead: no test breaches it by running late
        "contact_id": contact_id,
    }
    values.update(overrides)
    return values


async def post(client: AsyncClient, resource: str, values: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(PATHS[resource], json=values)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def error_fields(response: Response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


async def seller_with_contact(staff: Staff) -> tuple[AsyncClient, dict[str, Any]]:
    seller = await staff.login(await staff.create("sales"))
    return seller, await post(seller, "contact", sales_contact())


# --- CRUD per type, with the roles that own it -----------------------------------------------


async def test_sales_deal_round_trip_keeps_the_person(staff: Staff) -> None:
    seller, contact = await seller_with_contact(staff)
    deal = await post(seller, "deal", deal_values(contact["id"]))
    assert deal["title"] == DEAL_TITLE
    assert deal["amount"] == 1_250_000
    assert deal["expected_close"] == "2027-01-31"
    # About the contact: their subject, sealed under their key.
    assert deal["subject_id"] == contact["subject_id"]

    read = (await seller.get(f"{PATHS['deal']}/{deal['id']}")).json()
    assert read["notes"] == DEAL_NOTES
    assert read["contact_id"] == contact["id"]
    assert read["expected_close"] == "2027-01-31"

    listed = (await seller.get(PATHS["deal"], params={"stage": "proposal"})).json()
    assert [d["id"] for d in listed["items"]] == [deal["id"]]
    assert (await seller.get(PATHS["deal"], params={"stage": "won"})).json()["total"] == 0
    by_person = await seller.get(PATHS["deal"], params={"contact_id": contact["id"]})
    assert by_person.json()["total"] == 1

    changed = await seller.patch(
        f"{PATHS['deal']}/{deal['id']}", json={"stage": "lost", "lost_reason": "price"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["stage"] == "lost"
    assert changed.json()["title"] == DEAL_TITLE

    assert (await seller.delete(f"{PATHS['deal']}/{deal['id']}")).status_code == 204
    assert (await seller.get(f"{PATHS['deal']}/{deal['id']}")).status_code == 404
    # Deleting the deal shredded nothing: the person is still fully readable.
    person = (await seller.get(f"{PATHS['contact']}/{contact['id']}")).json()
    assert person["first_name"] == contact["first_name"]
    assert await SubjectKey.count().where(SubjectKey.subject_id == uuid.UUID(contact["subject_id"]))


async def test_stage_defaults_and_validation(staff: Staff) -> None:
    seller, contact = await seller_with_contact(staff)
    deal = await post(seller, "deal", {"title": "Small order", "contact_id": contact["id"]})
    assert deal["stage"] == "qualification"
    bad = await seller.post(
        PATHS["deal"],
        json=deal_values(contact["id"], probability=101, amount=-5, currency="XXX", stage="x"),
    )
    assert bad.status_code == 400
    assert error_fields(bad) == {"probability", "amount", "currency", "stage"}
    assert DEAL_TITLE not in bad.text
    missing = await seller.post(PATHS["deal"], json={"amount": 5})
    assert missing.status_code == 400
    assert error_fields(missing) == {"title", "contact_id"}


async def test_support_interaction_and_case_round_trip(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    contact = await post(admin, "contact", contact_values())
    agent_identity = await staff.create("support", team="north")
    agent = await staff.login(agent_identity)
    await admin.patch(f"{PATHS['contact']}/{contact['id']}", json={"team": "north"})

    touch = await post(agent, "interaction", interaction_values(contact["id"]))
    # Any offset is stored as the same moment in UTC.
    assert touch["occurred_at"] == "2026-11-30T09:15:00+00:00"
    assert touch["subject_id"] == contact["subject_id"]
    read = (await agent.get(f"{PATHS['interaction']}/{touch['id']}")).json()
    assert read["summary"] == SUMMARY
    assert read["participants"] == PARTICIPANTS
    assert read["occurred_at"] == "2026-11-30T09:15:00+00:00"
    bad_time = await agent.post(
        PATHS["interaction"], json=interaction_values(contact["id"], occurred_at="yesterday")
    )
    assert bad_time.status_code == 400
    assert error_fields(bad_time) == {"occurred_at"}
    crowd = await agent.post(
        PATHS["interaction"], json=interaction_values(contact["id"], participants="x" * 1001)
    )
    assert crowd.status_code == 400
    assert error_fields(crowd) == {"participants"}
    assert "x" * 20 not in crowd.text  # the message names the rule, not the value

    case = await post(agent, "case", case_values(contact["id"]))
    assert case["status"] == "open"
    assert case["due_at"] == "2030-12-02T17:00:00+00:00"
    closed = await agent.patch(f"{PATHS['case']}/{case['id']}", json={"status": "resolved"})
    assert closed.status_code == 200, closed.text
    assert (await agent.get(PATHS["case"], params={"status": "resolved"})).json()["total"] == 1
    assert (await agent.get(PATHS["case"], params={"status": "open"})).json()["total"] == 0

    assert (await agent.delete(f"{PATHS['interaction']}/{touch['id']}")).status_code == 204
    assert (await agent.delete(f"{PATHS['case']}/{case['id']}")).status_code == 204
    person = (await admin.get(f"{PATHS['contact']}/{contact['id']}")).json()
    assert person["first_name"] == contact["first_name"]


# --- scope and roles --------------------------------------------------------------------------


async def test_a_sales_rep_sees_only_their_own_deals(staff: Staff) -> None:
    alice, alice_contact = await seller_with_contact(staff)
    bob, bob_contact = await seller_with_contact(staff)
    for _ in range(2):
        await post(alice, "deal", deal_values(alice_contact["id"]))
    bobs = await post(bob, "deal", deal_values(bob_contact["id"]))

    assert (await alice.get(PATHS["deal"])).json()["total"] == 2
    assert (await bob.get(PATHS["deal"])).json()["total"] == 1
    for method in ("get", "patch", "delete"):
        kwargs: dict[str, Any] = {"json": {"stage": "won"}} if method == "patch" else {}
        response = await getattr(alice, method)(f"{PATHS['deal']}/{bobs['id']}", **kwargs)
        assert response.status_code == 404, (method, response.text)
    # Nor can Alice hang her deal on Bob's customer: the same answer as a missing one.
    theirs = await alice.post(PATHS["deal"], json=deal_values(bob_contact["id"]))
    assert theirs.status_code == 400
    assert "no such contact" in theirs.text


async def test_bad_references_are_refused(staff: Staff) -> None:
    seller, contact = await seller_with_contact(staff)
    nobody = str(uuid.uuid4())
    response = await seller.post(PATHS["deal"], json=deal_values(nobody))
    assert response.status_code == 400
    assert "contact_id: no such contact" in response.text
    org = await seller.post(
        PATHS["deal"], json=deal_values(contact["id"], organization_id=str(uuid.uuid4()))
    )
    assert org.status_code == 400
    assert "organization_id: no such organization" in org.text
    touch = await seller.post(
        PATHS["interaction"], json=interaction_values(contact["id"], deal_id=nobody)
    )
    assert touch.status_code == 400
    assert "deal_id: no such deal" in touch.text
    assert (await seller.get(PATHS["deal"])).json()["total"] == 0


async def test_the_person_of_a_record_cannot_be_changed(staff: Staff) -> None:
    seller, contact = await seller_with_contact(staff)
    other = await post(seller, "contact", sales_contact())
    deal = await post(seller, "deal", deal_values(contact["id"]))
    moved = await seller.patch(f"{PATHS['deal']}/{deal['id']}", json={"contact_id": other["id"]})
    assert moved.status_code == 400
    assert "contact_id: cannot be changed" in moved.text
    same = await seller.patch(
        f"{PATHS['deal']}/{deal['id']}", json={"contact_id": contact["id"], "probability": 60}
    )
    assert same.status_code == 200, same.text
    assert same.json()["subject_id"] == contact["subject_id"]


async def test_a_contact_with_records_cannot_be_deleted(staff: Staff) -> None:
    seller, contact = await seller_with_contact(staff)
    deals = [await post(seller, "deal", deal_values(contact["id"])) for _ in range(2)]
    touch = await post(seller, "interaction", interaction_values(contact["id"]))
    refused = await seller.delete(f"{PATHS['contact']}/{contact['id']}")
    assert refused.status_code == 409
    assert "2 deal(s), 1 interaction(s)" in refused.text
    for deal in deals:
        assert (await seller.delete(f"{PATHS['deal']}/{deal['id']}")).status_code == 204
    assert (await seller.delete(f"{PATHS['interaction']}/{touch['id']}")).status_code == 204
    assert (await seller.delete(f"{PATHS['contact']}/{contact['id']}")).status_code == 204
    # Only now is the person's key gone.
    assert not await SubjectKey.count().where(
        SubjectKey.subject_id == uuid.UUID(contact["subject_id"])
    )


async def test_role_matrix_for_the_new_types(staff: Staff) -> None:
    seller, contact = await seller_with_contact(staff)
    deal = await post(seller, "deal", deal_values(contact["id"]))

    marketer = await staff.login(await staff.create("marketing"))
    seen = await marketer.get(PATHS["deal"], headers={"X-Consentry-Purpose": "marketing"})
    assert seen.status_code == 200, seen.text
    (item,) = [d for d in seen.json()["items"] if d["id"] == deal["id"]]
    assert {"stage", "amount", "currency"} <= set(item)
    assert "title" not in item
    assert "notes" not in item
    assert "contact_id" not in item
    assert (await marketer.get(PATHS["case"])).status_code == 403
    assert (await marketer.post(PATHS["deal"], json=deal_values(contact["id"]))).status_code == 403

    support = await staff.login(await staff.create("support"))
    assert (await support.get(PATHS["deal"])).status_code == 403
    assert (await support.get(f"{PATHS['deal']}/{deal['id']}")).status_code == 404

    officer = await staff.login(await staff.create("compliance"))
    meta = await officer.get(f"{PATHS['deal']}/{deal['id']}")
    assert meta.status_code == 200, meta.text
    assert "title" not in meta.json()
    assert "amount" not in meta.json()
    assert "title" in meta.json()["restricted_fields"]
    assert (await officer.post(PATHS["case"], json=case_values(contact["id"]))).status_code == 403

    # Sales may read their team's cases, never write them.
    assert (await seller.get(PATHS["case"])).status_code == 200
    assert (await seller.post(PATHS["case"], json=case_values(contact["id"]))).status_code == 403


async def test_writes_are_audited_without_values(staff: Staff) -> None:
    seller, contact = await seller_with_contact(staff)
    deal = await post(seller, "deal", deal_values(contact["id"]))
    rows = await AuditRecord.select().where(AuditRecord.resource_type == "deal")
    created = [r for r in rows if r["action"] == "create"]
    assert created
    assert created[0]["resource_id"] == deal["id"]
    dump = json.dumps(rows, default=str)
    for value in (DEAL_TITLE, DEAL_NOTES, contact["email"]):
        assert value not in dump


async def test_erasing_a_person_scrubs_them_from_other_peoples_participants(
    services: Services, staff: Staff
) -> None:
    """Participants are free text: erasing someone named there (a customer's assistant
    who is a contact too) replaces their name in everybody else's interactions."""
    system = Actor.system("test-erasure")
    rep = await staff.create("sales")
    seller = staff.actor(rep)
    gateway = services.gateway
    assistant = await gateway.create(
        seller, "contact", sales_contact(first_name="Hortensia", last_name="Blenkinsop")
    )
    customer = await gateway.create(seller, "contact", sales_contact(first_name="Barnabus"))
    touch = await gateway.create(seller, "interaction", interaction_values(customer.id))
    scrub = await gateway.erase_mentions(system, assistant.subject_id)
    assert scrub.changed >= 1
    after = await gateway.read(seller, "interaction", touch.id)
    assert "Blenkinsop" not in after.values["participants"]
    assert "Hortensia" not in after.values["participants"]
    assert "[erased]" in after.values["participants"]
    assert after.values["summary"] == SUMMARY  # no mention there: left as it was


# --- at rest, export, bulk ------------------------------------------------------------------


async def test_free_text_is_ciphertext_at_rest(staff: Staff, database_url: str) -> None:
    admin = await staff.login(await staff.create("admin"))
    contact = await post(admin, "contact", contact_values())
    await post(admin, "deal", deal_values(contact["id"]))
    await post(admin, "interaction", interaction_values(contact["id"]))
    await post(admin, "case", case_values(contact["id"]))
    copy = (await _database_copy(database_url)).lower()
    assert b"proposal" in copy
    assert b"product_return" in copy
    for value in (DEAL_TITLE, DEAL_NOTES, SUMMARY, PARTICIPANTS, CASE_TITLE, CASE_DESCRIPTION):
        assert value.lower().encode() not in copy, f"{value!r} readable in the {ENGINE} copy"


async def test_subject_export_includes_the_persons_records(
    services: Services, staff: Staff
) -> None:
    admin = await staff.login(await staff.create("admin"))
    contact = await post(admin, "contact", contact_values())
    deal = await post(admin, "deal", deal_values(contact["id"]))
    await post(admin, "interaction", interaction_values(contact["id"], deal_id=deal["id"]))
    await post(admin, "case", case_values(contact["id"]))
    bundle = await build_export(services, contact["subject_id"], requested_by="user:1")
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert {"deals.csv", "interactions.csv", "cases.csv"} <= set(files)
    data = json.loads(files["data.json"])
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(data)
    (exported_deal,) = data["records"]["deal"]
    assert exported_deal["title"] == DEAL_TITLE
    assert exported_deal["notes"] == DEAL_NOTES
    assert data["records"]["interaction"][0]["summary"] == SUMMARY
    assert data["records"]["interaction"][0]["participants"] == PARTICIPANTS
    assert data["records"]["interaction"][0]["deal_id"] == deal["id"]
    assert data["records"]["case"][0]["description"] == CASE_DESCRIPTION


async def test_bulk_creation_and_demo_activity(services: Services, staff: Staff) -> None:
    owner = await staff.create("sales")
    system = Actor.system("test-seed")
    contact = await services.gateway.create(
        system, "contact", contact_values(), owner_id=owner.user_id, team=owner.team
    )
    # A missing person refuses the whole batch, as a missing organization does.
    with pytest.raises(InvalidInput, match="no such contact"):
        await services.gateway.create_many(
            system, "deal", [deal_values(contact.id), deal_values(str(uuid.uuid4()))]
        )
    assert (await services.gateway.list(system, "deal")).total == 0
    ok = await services.gateway.create_many(
        system, "deal", [deal_values(contact.id), {"title": "x"}], owner_id=owner.user_id
    )
    assert len(ok.created) == 1
    assert set(ok.rejected) == {1}
    deal = await services.gateway.read(system, "deal", ok.created[0])
    assert deal.subject_id == contact.subject_id

    agent = await staff.create("support")
    made = await seed_demo_data(services.gateway, [owner, agent], contacts=12, organizations=2)
    assert made > 14  # the contacts and organizations, and some activity about them
    page = await services.gateway.list(system, "deal", page=1, page_size=100)
    for item in page.items:
        person = await services.gateway.read(system, "contact", item.values["contact_id"])
        assert person.subject_id == item.subject_id


# --- admin pages ----------------------------------------------------------------------------


async def test_admin_pages_for_deals_and_the_contact_page(staff: Staff) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    api = await staff.login(identity)
    contact = await post(api, "contact", sales_contact())

    new_page = await seller.get(f"/deals/new?contact_id={contact['id']}")
    assert new_page.status_code == 200, new_page.text
    assert f'value="{contact["id"]}" selected' in new_page.text
    created = await seller.post(
        "/deals/new",
        data={
            "title": DEAL_TITLE,
            "amount": "990000",
            "currency": "EUR",
            "stage": "negotiation",
            "contact_id": contact["id"],
            "_csrf_token": csrf_of(new_page),
        },
    )
    deal_path = location(created)
    detail = await seller.get(deal_path)
    assert detail.status_code == 200
    text = text_of(detail)
    assert DEAL_TITLE in text
    assert "Negotiation" in text
    # The reference is a link to the person, named by their name.
    assert f'href="/contacts/{contact["id"]}"' in detail.text
    assert contact["first_name"] in text

    listing = await seller.get("/deals")
    assert listing.status_code == 200
    assert DEAL_TITLE in listing.text
    edit = await seller.get(f"{deal_path}/edit")
    assert edit.status_code == 200
    assert 'name="contact_id"' not in edit.text  # the person of a deal cannot change
    changed = await submit(
        seller, f"{deal_path}/edit", f"{deal_path}/edit", {"title": DEAL_TITLE, "stage": "won"}
    )
    assert location(changed) == deal_path

    person = await seller.get(f"/contacts/{contact['id']}")
    assert person.status_code == 200
    person_text = text_of(person)
    assert "Deals (1)" in person_text
    assert DEAL_TITLE in person_text
    assert "Interactions (0)" in person_text
    assert "Cases (0)" in person_text
    assert f"/interactions/new?contact_id={contact['id']}" in person.text
    assert f"/cases/new?contact_id={contact['id']}" not in person.text  # sales: read only

    refused = await submit(
        seller, f"/contacts/{contact['id']}/delete", f"/contacts/{contact['id']}/delete"
    )
    assert location(refused) == f"/contacts/{contact['id']}"
    deleted = await submit(seller, f"{deal_path}/delete", f"{deal_path}/delete")
    assert location(deleted) == "/deals"


async def test_the_deal_form_offers_pipelines_and_their_stages(
    services: Services, staff: Staff
) -> None:
    """Selects, not text boxes: the pipelines, and every pipeline's stages in a group of
    their own (complete without JavaScript); the record rule still checks the pair."""
    admin = staff.actor(await staff.create("admin"))
    wholesale = await services.pipelines.create_pipeline(admin, "Wholesale")
    await services.pipelines.add_stage(admin, wholesale.id, "Samples sent", "open", 30)
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    contact = await post(await staff.login(identity), "contact", sales_contact())

    form = await seller.get(f"/deals/new?contact_id={contact['id']}")
    assert form.status_code == 200
    assert '<select id="field-pipeline_id" name="pipeline_id"' in form.text
    assert f'<option value="{wholesale.id}">Wholesale</option>' in form.text
    assert '<input id="field-stage"' not in form.text
    assert 'data-depends-on="pipeline_id"' in form.text
    assert f'<optgroup label="Wholesale" data-group="{wholesale.id}">' in form.text
    assert f'data-group="{DEFAULT_PIPELINE_ID}"' in form.text
    assert '<option value="samples_sent">Samples sent</option>' in form.text
    assert "Left empty: the default pipeline." in text_of(form)
    assert 'src="/static/record-form.js"' in form.text

    fields = {"title": DEAL_TITLE, "contact_id": contact["id"], "_csrf_token": csrf_of(form)}
    wrong = await seller.post(
        "/deals/new", data={**fields, "pipeline_id": DEFAULT_PIPELINE_ID, "stage": "samples_sent"}
    )
    assert wrong.status_code == 400
    assert "Stage must be a stage of the pipeline" in text_of(wrong)
    assert '<select id="field-stage" name="stage"' in wrong.text  # the form comes back whole

    made = await seller.post(
        "/deals/new", data={**fields, "pipeline_id": wholesale.id, "stage": "samples_sent"}
    )
    deal_path = location(made)
    detail = text_of(await seller.get(deal_path))
    assert "Wholesale" in detail  # the pipeline by its name, not its id
    assert wholesale.id not in detail
    assert "Samples sent" in detail

    edit = (await seller.get(f"{deal_path}/edit")).text
    group = edit.split(f'data-group="{wholesale.id}">', 1)[1].split("</optgroup>", 1)[0]
    assert '<option value="samples_sent" selected>' in group
    assert f'<option value="{wholesale.id}" selected>' in edit
    listing = await seller.get("/deals", params={"pipeline_id": wholesale.id})
    assert listing.status_code == 200
    assert f'<option value="{wholesale.id}" selected>Wholesale</option>' in listing.text
    assert DEAL_TITLE in listing.text


async def test_the_interactions_csv_export_has_the_participants(staff: Staff) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    api = await staff.login(identity)
    contact = await post(api, "contact", sales_contact())
    await post(api, "interaction", interaction_values(contact["id"]))
    page = await seller.get("/export/interactions")
    exported = await seller.post(
        "/export/interactions", data={"reason": "backup", "_csrf_token": csrf_of(page)}
    )
    assert exported.status_code == 200
    (row,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert row["participants"] == PARTICIPANTS
    assert row["summary"] == SUMMARY


async def test_logging_a_talk_offers_only_that_persons_deals(staff: Staff) -> None:
    """From a contact's page, "New interaction" offers their deals, not everybody's (a
    hundred other people's deal titles would be read, audited and shown for nothing)."""
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    api = await staff.login(identity)
    mine = await post(api, "contact", sales_contact())
    other = await post(api, "contact", sales_contact(first_name="Barnabus"))
    await post(api, "deal", deal_values(mine["id"], title="Oak casks for the festival"))
    await post(api, "deal", deal_values(other["id"], title="Cider press for Barnabus"))

    form = await seller.get(f"/interactions/new?contact_id={mine['id']}")
    assert form.status_code == 200
    assert "Oak casks for the festival" in form.text
    assert "Cider press for Barnabus" not in form.text
    touch = await post(api, "interaction", interaction_values(mine["id"]))
    edit = await seller.get(f"/interactions/{touch['id']}/edit")
    assert "Oak casks for the festival" in edit.text
    assert "Cider press for Barnabus" not in edit.text
    anyone = await seller.get("/interactions/new")  # no person chosen yet: every deal
    assert "Cider press for Barnabus" in anyone.text


async def test_admin_pages_for_interactions_and_cases(staff: Staff) -> None:
    admin_identity = await staff.create("admin")
    admin = await web_login(staff, admin_identity)
    api = await staff.login(admin_identity)
    contact = await post(api, "contact", contact_values())
    touch = await post(api, "interaction", interaction_values(contact["id"]))
    case = await post(api, "case", case_values(contact["id"]))
    for path in (
        "/interactions",
        f"/interactions/{touch['id']}",
        f"/interactions/{touch['id']}/edit",
        "/interactions/new",
        "/cases",
        "/cases?status=open",
        f"/cases/{case['id']}",
        f"/cases/{case['id']}/edit",
        f"/cases/{case['id']}/delete",
    ):
        page = await admin.get(path)
        assert page.status_code == 200, (path, page.text[:300])
    assert "2026-11-30 09:15 UTC" in text_of(await admin.get(f"/interactions/{touch['id']}"))
    assert PARTICIPANTS in text_of(await admin.get(f"/interactions/{touch['id']}"))
    logging = text_of(await admin.get("/interactions/new"))
    assert "Participants" in logging
    assert "Other people who took part, e.g. colleagues, the customer's assistant." in logging
    assert CASE_TITLE in (await admin.get("/cases")).text
    form = await admin.get("/cases/new")
    bad = await admin.post(
        "/cases/new",
        data={
            "title": "",
            "kind": "complaint",
            "contact_id": contact["id"],
            "_csrf_token": csrf_of(form),
        },
    )
    assert bad.status_code == 400
    assert "Title is required" in text_of(bad) or "Title must not be empty" in text_of(bad)
