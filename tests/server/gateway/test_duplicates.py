"""Duplicate contacts and merges (server.gateway.duplicates), on SQLite and PostgreSQL.

Pairs are found by a shared blind index (the same e-mail or phone however it was typed) or
a similar name, inside the actor's scope, and reported as ids and reasons only. A merge
moves every record about the merged contact to the survivor, sealed under the survivor's
key, hides the merged contact, and can be undone exactly until it is confirmed; confirming
erases the merged contact (tombstone and shredded key), after which undo is a 409.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import zipfile
from typing import Any

import pytest
from httpx import AsyncClient

from audit.tables import AuditRecord
from server.dsr.export import build_export
from server.gateway import Actor, Conflict, NotFound
from server.services import Services
from tests.admin_ui.test_admin_ui import location, submit, text_of, web_login
from tests.conftest import Staff, contact_values
from tests.dbutil import raw_sql

API = "/api/v1"
ADMIN = Actor.system("test-admin")
PURPOSE = "customer_relationship"
SURVIVOR_EMAIL = "jon.smith@example.org"
MERGED_EMAIL = "j.smith.home@example.net"


async def add(services: Services, **values: Any) -> Any:
    return await services.gateway.create(
        ADMIN, "contact", contact_values(**values), purpose=PURPOSE
    )


def pairs_of(scan: Any) -> dict[frozenset[str], dict[str, int]]:
    return {
        frozenset((p.first_id, p.second_id)): {r.kind: r.score for r in p.reasons}
        for p in scan.pairs
    }


def api_pairs(body: dict[str, Any]) -> dict[frozenset[str], set[str]]:
    return {frozenset(p["contact_ids"]): {r["kind"] for r in p["reasons"]} for p in body["pairs"]}


async def merge_events() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await AuditRecord.select().where(
        AuditRecord.action.is_in(
            [
                "merge",
                "merge_move",
                "merge_undo",
                "merge_move_back",
                "merge_confirm",
                "duplicates_scan",
            ]
        )
    )
    return rows


# --- detection --------------------------------------------------------------------------------


async def test_finds_same_email_phone_and_similar_names_but_not_strangers(
    services: Services,
) -> None:
    gw = services.gateway
    jon = await add(
        services,
        first_name="Jon",
        last_name="Smith",
        email="Jon.Smith@Example.org",
        phone="+44 20 7946 0101",
    )
    john = await add(
        services,
        first_name="John",
        last_name="Smith",
        email="  jon.smith@EXAMPLE.org ",
        phone="+44 20 7946 0102",
    )
    ada = await add(
        services,
        first_name="Ada",
        last_name="Lovelace",
        email="ada@example.org",
        phone="+44 20 7946 0200",
    )
    augusta = await add(
        services,
        first_name="Augusta",
        last_name="King",
        email="augusta@example.org",
        phone="020 7946 0200",
    )
    alan = await add(
        services,
        first_name="Alan",
        last_name="Turing",
        email="alan@example.org",
        phone="+44 20 7946 0300",
    )
    mary = await add(
        services,
        first_name="Mary",
        last_name="Jones",
        email="mary@example.org",
        phone="+44 20 7946 0400",
    )

    scan = await gw.find_duplicates(ADMIN, purpose=PURPOSE)
    found = pairs_of(scan)
    assert set(found) == {frozenset((jon.id, john.id)), frozenset((ada.id, augusta.id))}
    assert set(found[frozenset((jon.id, john.id))]) == {"email", "name"}
    assert 91 <= found[frozenset((jon.id, john.id))]["name"] < 100
    assert found[frozenset((ada.id, augusta.id))] == {"phone": 100}
    assert not any(alan.id in pair or mary.id in pair for pair in found)
    assert scan.names_compared == 6
    assert not scan.names_capped

    # Reading names and addresses to compare them is audited, by subject, without values.
    scans = [e for e in await merge_events() if e["action"] == "duplicates_scan"]
    assert scans
    read = {s for e in scans for s in json.loads(e["subject_ids"])}
    assert {jon.subject_id, john.subject_id, alan.subject_id} <= read
    dump = json.dumps(scans, default=str).lower()
    for value in ("jon.smith", "smith", "lovelace", "2079460200"):
        assert value not in dump


async def test_sales_rep_sees_own_pairs_only_and_cannot_merge_anothers(staff: Staff) -> None:
    first, second = await staff.create("sales"), await staff.create("sales")
    rep, other = await staff.login(first), await staff.login(second)

    async def contact(client: AsyncClient, **values: Any) -> str:
        values = {k: v for k, v in contact_values(**values).items() if k != "birth_date"}
        response = await client.post(f"{API}/contacts", json=values)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    mine = await contact(rep, email="twin@example.org", phone="+44 20 7946 0501")
    mine_too = await contact(rep, email="TWIN@example.org", phone="+44 20 7946 0502")
    theirs = await contact(other, email="twin@example.org", phone="+44 20 7946 0503")

    body = (await rep.get(f"{API}/contacts/duplicates")).json()
    assert api_pairs(body) == {frozenset((mine, mine_too)): {"email", "name"}}
    assert "twin@" not in json.dumps(body)
    body = (await other.get(f"{API}/contacts/duplicates")).json()
    assert body["pairs"] == []

    # Another rep's contact does not exist for them, whichever side it is on.
    for survivor, merged in ((theirs, mine), (mine, theirs)):
        refused = await other.post(
            f"{API}/contacts/merge", json={"survivor_id": survivor, "merged_id": merged}
        )
        assert refused.status_code == 404, refused.text

    # Bad input names what is wrong.
    bad = await rep.post(
        f"{API}/contacts/merge",
        json={"survivor_id": mine, "merged_id": mine_too, "keep": {"email": "both"}},
    )
    assert bad.status_code == 400
    assert "email" in bad.json()["detail"]
    same = await rep.post(f"{API}/contacts/merge", json={"survivor_id": mine, "merged_id": mine})
    assert same.status_code == 400

    merged = await rep.post(
        f"{API}/contacts/merge", json={"survivor_id": mine, "merged_id": mine_too}
    )
    assert merged.status_code == 201, merged.text
    merge = merged.json()
    assert merge["state"] == "pending"
    listed = (await rep.get(f"{API}/merges")).json()["items"]
    assert [m["id"] for m in listed] == [merge["id"]]
    assert (await other.get(f"{API}/merges")).json()["items"] == []
    assert (await other.post(f"{API}/merges/{merge['id']}/undo")).status_code == 404
    assert (await rep.get(f"{API}/contacts/{mine_too}")).status_code == 404
    assert (await rep.get(f"{API}/contacts")).json()["total"] == 1

    undone = await rep.post(f"{API}/merges/{merge['id']}/undo")
    assert undone.status_code == 200, undone.text
    assert undone.json()["state"] == "undone"
    assert (await rep.get(f"{API}/contacts")).json()["total"] == 2
    again = await rep.post(f"{API}/merges/{merge['id']}/confirm")
    assert again.status_code == 409
    assert "undone" in again.json()["detail"]


# --- merge, undo, confirm ---------------------------------------------------------------------


async def _people(services: Services) -> dict[str, Any]:
    """A survivor without an e-mail, and a duplicate (converted from a lead) with a deal,
    an interaction, a case, a task on the deal and notes on the contact and the deal."""
    gw = services.gateway
    survivor = await add(
        services,
        first_name="Jon",
        last_name="Smith",
        email=None,
        job_title="Engineer",
        phone="+44 20 7946 0601",
    )
    lead = await gw.create(
        ADMIN,
        "lead",
        {"first_name": "John", "last_name": "Smith", "email": MERGED_EMAIL, "source": "event"},
        purpose=PURPOSE,
    )
    conversion = await gw.convert_lead(ADMIN, lead.id, purpose=PURPOSE)
    merged_id = conversion.contact_id
    await gw.update(
        ADMIN,
        "contact",
        merged_id,
        {"job_title": "Chief engineer", "phone": "+44 20 7946 0602"},
        purpose=PURPOSE,
    )
    deal = await gw.create(
        ADMIN, "deal", {"title": "Forty brass bellows", "contact_id": merged_id}, purpose=PURPOSE
    )
    records = {
        "lead": lead.id,
        "deal": deal.id,
        "interaction": (
            await gw.create(
                ADMIN,
                "interaction",
                {
                    "channel": "phone_call",
                    "occurred_at": "2026-11-01T10:00:00+00:00",
                    "summary": "Asked about bellows",
                    "contact_id": merged_id,
                    "deal_id": deal.id,
                },
                purpose=PURPOSE,
            )
        ).id,
        "case": (
            await gw.create(
                ADMIN,
                "case",
                {"title": "Squeaky bellows", "kind": "complaint", "contact_id": merged_id},
                purpose=PURPOSE,
            )
        ).id,
        "task": (
            await gw.create(
                ADMIN,
                "task",
                {
                    "title": "Send the quote",
                    "due_at": "2026-12-01T09:00:00+00:00",
                    "contact_id": merged_id,
                    "deal_id": deal.id,
                },
                purpose=PURPOSE,
            )
        ).id,
        "note": (
            await gw.create(
                ADMIN,
                "note",
                {"body": "Call after lunch", "record_type": "contact", "record_id": merged_id},
                purpose=PURPOSE,
            )
        ).id,
    }
    return {"survivor": survivor, "merged": await gw.read(ADMIN, "contact", merged_id), **records}


async def _state(services: Services, people: dict[str, Any]) -> dict[str, Any]:
    """Every record's values and subject as the gateway shows them."""
    gw = services.gateway
    state = {}
    for resource in ("lead", "deal", "interaction", "case", "task", "note"):
        record = await gw.read(ADMIN, resource, people[resource], purpose=PURPOSE)
        state[resource] = (record.subject_id, record.values)
    return state


async def _survivor_columns(database_url: str, survivor_id: str) -> dict[str, Any]:
    (row,) = await raw_sql(database_url, "SELECT * FROM contact WHERE id = ?", survivor_id)
    return {k: str(v) for k, v in row.items() if k != "updated_at"}


async def test_merge_moves_every_record_and_undo_restores_exactly(
    services: Services, database_url: str
) -> None:
    gw = services.gateway
    people = await _people(services)
    survivor, merged = people["survivor"], people["merged"]
    before = await _state(services, people)
    columns_before = await _survivor_columns(database_url, survivor.id)
    total_before = await gw.count(ADMIN, "contact", purpose=PURPOSE)

    preview = await gw.merge_preview(ADMIN, survivor.id, merged.id, purpose=PURPOSE)
    assert preview.blockers == []
    assert preview.related[merged.id] == {
        "lead": 1,
        "deal": 1,
        "interaction": 1,
        "case": 1,
        "task": 1,
        "note": 1,
    }

    merge = await gw.merge_contacts(
        ADMIN, survivor.id, merged.id, keep={"job_title": "merged"}, purpose=PURPOSE
    )
    assert merge.moved == {
        "lead": 1,
        "deal": 1,
        "interaction": 1,
        "case": 1,
        "task": 1,
        "note": 1,
    }
    # The survivor's empty e-mail was filled from the duplicate; job title as chosen; the
    # survivor's own phone kept (default: the survivor's value where it has one).
    kept = (await gw.read(ADMIN, "contact", survivor.id, purpose=PURPOSE)).values
    assert kept["email"] == MERGED_EMAIL
    assert kept["job_title"] == "Chief engineer"
    assert kept["phone"] == "+442079460601"
    assert set(merge.fields) == {"email", "job_title"}
    # ... and the survivor is found by the e-mail it took over.
    found = await gw.search(ADMIN, "contact", "email", MERGED_EMAIL, purpose=PURPOSE)
    assert [r.id for r in found] == [survivor.id]

    # Every record moved: the survivor's subject, the survivor as contact, still readable.
    after = await _state(services, people)
    for resource, (subject, values) in after.items():
        assert subject == survivor.subject_id, resource
        assert values == {
            **before[resource][1],
            **{
                k: survivor.id
                for k in ("contact_id", "converted_contact_id", "record_id")
                if k in values and before[resource][1][k] == merged.id
            },
        }, resource
    assert after["deal"][1]["title"] == "Forty brass bellows"
    assert after["note"][1]["body"] == "Call after lunch"
    listed = await gw.list(
        ADMIN, "interaction", filters={"contact_id": survivor.id}, purpose=PURPOSE
    )
    assert [i.id for i in listed.items] == [people["interaction"]]

    # The duplicate is hidden from lists, counts, searches and reads - but kept intact.
    assert await gw.count(ADMIN, "contact", purpose=PURPOSE) == total_before - 1
    page = await gw.list(ADMIN, "contact", purpose=PURPOSE, page_size=100)
    assert merged.id not in {r.id for r in page.items}
    with pytest.raises(NotFound):
        await gw.read(ADMIN, "contact", merged.id, purpose=PURPOSE)
    (row,) = await raw_sql(database_url, "SELECT email FROM contact WHERE id = ?", merged.id)
    assert row["email"]
    assert merged.subject_id in await gw.vault.keys_for([merged.subject_id])

    # The survivor's subject export now holds the moved records.
    bundle = await build_export(services, survivor.subject_id, requested_by="user:1")
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        exported = json.loads(archive.read("data.json"))["records"]
    assert [d["title"] for d in exported["deal"]] == ["Forty brass bellows"]
    assert len(exported["interaction"]) == len(exported["note"]) == 1

    # Undo: everything back, exactly.
    undone = await gw.undo_merge(ADMIN, merge.id, purpose=PURPOSE)
    assert undone.state == "undone"
    assert await _state(services, people) == before
    assert await _survivor_columns(database_url, survivor.id) == columns_before
    assert await gw.count(ADMIN, "contact", purpose=PURPOSE) == total_before
    back = await gw.read(ADMIN, "contact", merged.id, purpose=PURPOSE)
    assert back.values == merged.values
    with pytest.raises(Conflict):
        await gw.undo_merge(ADMIN, merge.id, purpose=PURPOSE)

    # Audited: both subjects, field names and counts; no value anywhere.
    events = await merge_events()
    (merge_event,) = [e for e in events if e["action"] == "merge"]
    assert set(json.loads(merge_event["subject_ids"])) == {survivor.subject_id, merged.subject_id}
    assert set(json.loads(merge_event["fields"])) == {"email", "job_title"}
    assert {e["resource_type"] for e in events if e["action"] == "merge_move"} == {
        "lead",
        "deal",
        "interaction",
        "case",
        "task",
        "note",
    }
    assert [e for e in events if e["action"] == "merge_undo"]
    dump = json.dumps([e for e in events if e["action"] != "duplicates_scan"], default=str)
    for value in (MERGED_EMAIL, "Chief engineer", "bellows", "Smith", "2079460602"):
        assert value not in dump
    assert (await services.audit_trail.verify()).ok


async def test_confirm_erases_the_duplicate_and_undo_is_then_refused(
    services: Services, database_url: str
) -> None:
    gw = services.gateway
    people = await _people(services)
    survivor, merged = people["survivor"], people["merged"]
    merge = await gw.merge_contacts(ADMIN, survivor.id, merged.id, purpose=PURPOSE)

    confirmed = await gw.confirm_merge(ADMIN, merge.id, purpose=PURPOSE)
    assert confirmed.state == "confirmed"
    assert await gw.vault.keys_for([merged.subject_id]) == {}
    (row,) = await raw_sql(
        database_url, "SELECT email, email_bidx, first_name FROM contact WHERE id = ?", merged.id
    )
    assert not row["email"]
    assert row["email_bidx"] is None
    assert not row["first_name"]
    # The moved records stay with the survivor, readable under the survivor's key.
    deal = await gw.read(ADMIN, "deal", people["deal"], purpose=PURPOSE)
    assert (deal.subject_id, deal.values["title"]) == (survivor.subject_id, "Forty brass bellows")
    with pytest.raises(NotFound):
        await gw.read(ADMIN, "contact", merged.id, purpose=PURPOSE)

    with pytest.raises(Conflict) as refused:
        await gw.undo_merge(ADMIN, merge.id, purpose=PURPOSE)
    assert refused.value.status_code == 409
    assert "confirmed" in refused.value.message
    assert [m.state for m in await gw.list_merges(ADMIN, purpose=PURPOSE)] == ["confirmed"]
    actions = {e["action"] for e in await AuditRecord.select(AuditRecord.action)}
    assert {"merge_confirm", "erase", "shred"} <= actions
    assert (await services.audit_trail.verify()).ok


async def test_http_undo_after_confirm_is_409(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    ids = []
    for first in ("Jon", "John"):
        response = await admin.post(
            f"{API}/contacts", json=contact_values(first_name=first, last_name="Smith")
        )
        ids.append(response.json()["id"])
    merge = (
        await admin.post(f"{API}/contacts/merge", json={"survivor_id": ids[0], "merged_id": ids[1]})
    ).json()
    confirmed = await admin.post(f"{API}/merges/{merge['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    refused = await admin.post(f"{API}/merges/{merge['id']}/undo")
    assert refused.status_code == 409
    assert "can no longer be undone" in refused.json()["detail"]
    assert (await admin.get(f"{API}/merges", params={"state": "nope"})).status_code == 400


# --- refusals ---------------------------------------------------------------------------------


async def test_refuses_restricted_held_and_doubly_merged_contacts(services: Services) -> None:
    gw = services.gateway
    first, second, third = [await add(services, phone=f"+44 20 7946 07{n:02d}") for n in range(3)]
    await services.erasure.restrictions.restrict(
        first.subject_id, "accuracy_contested", by="user:1"
    )
    with pytest.raises(Conflict, match="restricted"):
        await gw.merge_contacts(ADMIN, second.id, first.id, purpose=PURPOSE)
    await services.erasure.holds.add(
        second.subject_id, "all", "litigation", dt.date.today() + dt.timedelta(days=30), by="user:1"
    )
    with pytest.raises(Conflict, match="legal hold"):
        await gw.merge_contacts(ADMIN, third.id, second.id, purpose=PURPOSE)

    fourth, fifth = await add(services), await add(services)
    pending = await gw.merge_contacts(ADMIN, third.id, fourth.id, purpose=PURPOSE)
    with pytest.raises(Conflict, match="awaiting confirmation"):
        await gw.merge_contacts(ADMIN, fifth.id, third.id, purpose=PURPOSE)
    with pytest.raises(NotFound):  # the merged one is hidden: it cannot be merged again
        await gw.merge_contacts(ADMIN, fifth.id, fourth.id, purpose=PURPOSE)
    await gw.confirm_merge(ADMIN, pending.id, purpose=PURPOSE)
    await gw.merge_contacts(ADMIN, fifth.id, third.id, purpose=PURPOSE)  # free again


async def test_undo_refused_when_records_were_added_to_moved_records(services: Services) -> None:
    gw = services.gateway
    people = await _people(services)
    survivor, merged = people["survivor"], people["merged"]
    merge = await gw.merge_contacts(ADMIN, survivor.id, merged.id, purpose=PURPOSE)
    await gw.create(
        ADMIN,
        "task",
        {
            "title": "Chase the bellows deal",
            "due_at": "2026-12-02T09:00:00+00:00",
            "contact_id": survivor.id,
            "deal_id": people["deal"],
        },
        purpose=PURPOSE,
    )
    with pytest.raises(Conflict, match="added since the merge"):
        await gw.undo_merge(ADMIN, merge.id, purpose=PURPOSE)
    # Nothing was changed by the refused undo.
    deal = await gw.read(ADMIN, "deal", people["deal"], purpose=PURPOSE)
    assert deal.subject_id == survivor.subject_id
    assert [m.state for m in await gw.list_merges(ADMIN, purpose=PURPOSE)] == ["pending"]


# --- the admin pages --------------------------------------------------------------------------


async def test_admin_pages_review_merge_and_undo(staff: Staff, services: Services) -> None:
    rep = await staff.create("sales")
    web = await web_login(staff, rep)
    gw = services.gateway
    actor = staff.actor(rep)
    values = {k: v for k, v in contact_values().items() if k != "birth_date"}
    org = await gw.create(actor, "organization", {"name": "Forge Works Ltd"})
    values["organization_id"] = org.id
    keep = await gw.create(actor, "contact", {**values, "first_name": "Jon", "email": None})
    dupe = await gw.create(
        actor, "contact", {**values, "first_name": "John", "job_title": "Bellows maker"}
    )
    await gw.create(
        actor,
        "interaction",
        {
            "channel": "meeting",
            "occurred_at": "2026-11-02T10:00:00+00:00",
            "summary": "Met at the forge",
            "contact_id": dupe.id,
        },
    )

    listing = await web.get("/contacts/duplicates")
    assert listing.status_code == 200, listing.text
    assert f"/contacts/duplicates/{min(keep.id, dupe.id)}/{max(keep.id, dupe.id)}" in listing.text
    assert "Similar name" in text_of(listing)

    review = f"/contacts/duplicates/{keep.id}/{dupe.id}"
    page = await web.get(review)
    assert page.status_code == 200, page.text
    assert "1 interaction" in text_of(page)
    assert "Birth date" not in text_of(page)  # a field sales may not read is not shown
    assert "Forge Works Ltd" in text_of(page)  # the organization by its name, not its id
    assert org.id not in text_of(page)
    assert "Lifecycle stage Customer Customer" in text_of(page)  # a stage by its label
    response = await submit(
        web,
        review,
        f"{review}/merge",
        {"survivor": keep.id, "keep_job_title": dupe.id, "keep_email": dupe.id},
    )
    merge_page = location(response)
    page = await web.get(merge_page)
    assert "Pending" in text_of(page)
    assert "Contacts merged" in text_of(page)
    kept = await gw.read(actor, "contact", keep.id)
    assert kept.values["job_title"] == "Bellows maker"
    assert kept.values["email"] == dupe.values["email"]
    timeline = await web.get(f"/contacts/{keep.id}/360")
    assert "Met at the forge" in timeline.text

    location(await submit(web, merge_page, f"{merge_page}/undo"))
    page = await web.get(merge_page)
    assert "Undone" in text_of(page)
    assert "Met at the forge" not in (await web.get(f"/contacts/{keep.id}/360")).text
    refused = await submit(web, "/merges", f"{merge_page}/confirm")
    assert refused.status_code == 409
    assert "undone" in text_of(refused)


async def test_two_merges_of_one_contact_at_once_one_wins_one_gets_409(
    services: Services,
) -> None:
    gw = services.gateway
    first, second, third = [await add(services, phone=f"+44 20 7946 08{n:02d}") for n in range(3)]
    results = await asyncio.gather(
        gw.merge_contacts(ADMIN, first.id, third.id, purpose=PURPOSE),
        gw.merge_contacts(ADMIN, second.id, third.id, purpose=PURPOSE),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1
    assert len(lost) == 1
    assert isinstance(lost[0], Conflict), lost[0]
    assert len(await gw.list_merges(ADMIN, purpose=PURPOSE)) == 1
    assert await gw.count(ADMIN, "contact", purpose=PURPOSE) == 2  # the third is hidden


def test_demo_phone_numbers_are_distinct_so_demo_people_are_not_duplicates() -> None:
    """The demo once drew 300 phone numbers from 1,000 with replacement: some 45 shared
    numbers, and the duplicates page listed ~60 "same phone" pairs of different people."""
    import itertools
    import random

    import phonenumbers

    from server.demo import demo_phones

    rng = random.Random(2026)  # noqa: S311 - the demo's own seeded generator, not security
    numbers = list(itertools.islice(demo_phones(rng), 2000))
    assert len(set(numbers)) == 2000
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(n)) for n in numbers[:50])


async def test_the_pairs_page_names_contacts_from_the_scan(
    staff: Staff, services: Services
) -> None:
    rep = await staff.create("sales")
    actor = staff.actor(rep)
    values = {k: v for k, v in contact_values().items() if k != "birth_date"}
    one = await services.gateway.create(actor, "contact", {**values, "first_name": "Jon"})
    two = await services.gateway.create(actor, "contact", {**values, "first_name": "John"})
    scan = await services.gateway.find_duplicates(actor)
    assert scan.names[one.id] == f"Jon {values['last_name']}"
    assert scan.names[two.id] == f"John {values['last_name']}"
    web = await web_login(staff, rep)
    listing = text_of(await web.get("/contacts/duplicates"))
    assert f"Jon {values['last_name']}" in listing
    assert f"John {values['last_name']}" in listing
