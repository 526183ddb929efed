"""Name search over encrypted names (server.gateway.search, docs/search.md).

The acceptance cases of issue 16: prefixes, whole words, two words in either order, an
initial, accents either way; record scope (a sales rep never sees another rep's contact,
not even as a count); no plaintext name and no untruncated token at rest; erasure,
deletion, renames and merges keep the tokens in step; deals, cases and interactions are
found by their person's name and by their title.
"""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from audit.tables import AuditRecord
from server.datamap import CONTACT
from server.gateway import Actor, Forbidden, InvalidInput
from server.gateway.tables import SearchToken
from server.services import Services
from server.vault.blind_index import index_width
from tests.conftest import Staff
from tests.server.vault.test_at_rest import _database_copy


def person_values(first_name: str, last_name: str, **more: str | None) -> dict[str, str | None]:
    email = f"{uuid.uuid4().hex[:10]}@example.org"
    return {"first_name": first_name, "last_name": last_name, "email": email, **more}


PEOPLE = [
    ("Sharon", "Todd"),
    ("Todd", "Williams"),
    ("Toddrick", "Barnes"),
    ("Tom", "Oddie"),
    ("Sharon", "Williams"),
    ("José", "Álvarez"),
    ("Jose", "Smith"),
    ("Li", "Wu"),
]


async def _people(services: Services, actor: Actor) -> dict[str, str]:
    ids = {}
    for first, last in PEOPLE:
        record = await services.gateway.create(
            actor,
            "contact",
            person_values(first_name=first, last_name=last),
        )
        ids[f"{first} {last}"] = record.id
    return ids


async def _names(
    services: Services, actor: Actor, term: str, resource: str = "contact"
) -> list[str]:
    hits = await services.gateway.search_names(actor, resource, term)
    rt_fields = ("first_name", "last_name") if resource in ("contact", "lead") else ("title",)
    return [" ".join(str(h.values[f]) for f in rt_fields) for h in hits.items]


async def test_prefix_word_initial_and_accents_find_the_right_people(
    services: Services, staff: Staff
) -> None:
    actor = staff.actor(await staff.create("sales"))
    await _people(services, actor)

    tod = await _names(services, actor, "tod")
    assert set(tod) == {"Sharon Todd", "Todd Williams", "Toddrick Barnes"}
    todd = await _names(services, actor, "Todd")
    assert set(todd[:2]) == {"Sharon Todd", "Todd Williams"}  # whole words before prefixes
    assert todd[2:] == ["Toddrick Barnes"]
    assert (await _names(services, actor, "todd sharon"))[0] == "Sharon Todd"
    assert await _names(services, actor, "todd sharon") == ["Sharon Todd"]
    assert await _names(services, actor, "Sharon T") == ["Sharon Todd"]
    assert set(await _names(services, actor, "José")) == {"José Álvarez", "Jose Smith"}
    assert set(await _names(services, actor, "jose")) == {"José Álvarez", "Jose Smith"}
    assert await _names(services, actor, "alvarez") == ["José Álvarez"]
    assert await _names(services, actor, "Li") == ["Li Wu"]
    # A misspelling still finds them, after the exact matches would have
    assert set(await _names(services, actor, "Tood")) >= {"Sharon Todd", "Todd Williams"}
    assert await _names(services, actor, "Zebedee") == []


async def test_results_are_capped_and_paginated(services: Services, staff: Staff) -> None:
    actor = staff.actor(await staff.create("sales"))
    await services.gateway.create_many(
        actor,
        "contact",
        [person_values(first_name="Sharon", last_name=f"Number{i}") for i in range(7)],
    )
    first = await services.gateway.search_names(actor, "contact", "sharon", page_size=5)
    second = await services.gateway.search_names(actor, "contact", "sharon", page=2, page_size=5)
    assert first.total == second.total == 7
    assert len(first.items) == 5
    assert len(second.items) == 2
    assert not {r.id for r in first.items} & {r.id for r in second.items}
    with pytest.raises(InvalidInput):
        await services.gateway.search_names(actor, "contact", "   ")
    with pytest.raises(InvalidInput):
        await services.gateway.search_names(actor, "contact", "sharon", page_size=500)


async def test_a_sales_rep_never_sees_another_reps_contact(
    services: Services, staff: Staff
) -> None:
    mine = staff.actor(await staff.create("sales", team="north"))
    theirs = staff.actor(await staff.create("sales", team="south"))
    await services.gateway.create(
        mine, "contact", person_values(first_name="Sharon", last_name="Todd")
    )
    other = await services.gateway.create(
        theirs, "contact", person_values(first_name="Sharon", last_name="Toddington")
    )
    hits = await services.gateway.search_names(mine, "contact", "sharon tod")
    assert [r.values["last_name"] for r in hits.items] == ["Todd"]
    assert hits.total == 1
    assert hits.candidates == 1
    everything = await services.gateway.search_everything(mine, "toddington")
    assert all(group.total == 0 for group in everything)
    assert other.id not in json.dumps([[r.id for r in g.items] for g in everything])


async def test_each_search_is_audited_with_ids_and_never_the_term(
    services: Services, staff: Staff
) -> None:
    actor = staff.actor(await staff.create("sales"))
    ids = await _people(services, actor)
    await services.gateway.search_names(actor, "contact", "Quixotic Sharon T")
    hits = await services.gateway.search_names(actor, "contact", "Sharon T")
    event = (
        await AuditRecord.select()
        .where(AuditRecord.action == "search")
        .order_by(AuditRecord.seq, ascending=False)
        .first()
    )
    assert event is not None
    detail = json.loads(event["detail"])
    assert detail["by"] == "name"
    assert detail["ids"] == ids["Sharon Todd"] == hits.items[0].id
    rows = await AuditRecord.select()
    assert "sharon" not in json.dumps(rows, default=str).casefold()
    assert "quixotic" not in json.dumps(rows, default=str).casefold()


async def test_roles_without_search_are_refused_and_types_they_cannot_search_left_out(
    services: Services, staff: Staff
) -> None:
    admin = staff.actor(await staff.create("admin"))
    await _people(services, admin)
    marketing = staff.actor(await staff.create("marketing"))
    with pytest.raises(Forbidden):
        await services.gateway.search_names(marketing, "contact", "todd")
    assert await services.gateway.search_everything(marketing, "todd") == []
    support = staff.actor(await staff.create("support"))
    kinds = [g.resource for g in await services.gateway.search_everything(support, "todd")]
    assert "deal" not in kinds
    assert "lead" not in kinds
    assert "contact" in kinds


def _full_hmac(services: Services, table: str, column: str, term: str) -> bytes:
    root = services.gateway.vault._keys.index_root_key()
    info = f"consentry/blind-index/v1|{table}|{column}#words".encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(root)
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(term.encode())
    return mac.finalize()


async def test_no_plaintext_name_and_no_untruncated_token_at_rest(
    services: Services, staff: Staff, database_url: str
) -> None:
    actor = staff.actor(await staff.create("sales"))
    await services.gateway.create(
        actor,
        "contact",
        person_values(first_name="Perpetua", last_name="Fotheringay", email=None),
    )
    tokens = await SearchToken.select()
    assert len(tokens) >= 2 * 3
    width = index_width(CONTACT.expected_rows)
    assert all(0 <= row["token"] < 2**width for row in tokens)
    blob = await _database_copy(database_url)
    for secret in ("Perpetua", "Fotheringay", "perpetua", "fotheringay", "p:perp"):
        assert secret.encode() not in blob
    full = _full_hmac(services, "contact", "first_name", "p:perpetua")
    assert full not in blob
    assert full.hex().encode() not in blob
    assert str(int.from_bytes(full[:4], "big")).encode() not in blob


async def test_erasure_removes_every_token_and_every_result(
    services: Services, staff: Staff
) -> None:
    actor = staff.actor(await staff.create("admin"))
    person = await services.gateway.create(
        actor, "contact", person_values(first_name="Sharon", last_name="Todd")
    )
    deal = await services.gateway.create(
        actor, "deal", {"title": "Sharon's renewal", "contact_id": person.id}
    )
    assert (await services.gateway.search_names(actor, "deal", "renewal")).total == 1
    await services.erasure.erase(person.subject_id, by="user:1")
    for term in ("Sharon", "todd", "Sharon Todd"):
        assert (await services.gateway.search_names(actor, "contact", term)).total == 0
    assert (await services.gateway.search_names(actor, "deal", "renewal")).total == 0
    left = await SearchToken.select().where(
        SearchToken.record_id.is_in([uuid.UUID(person.id), uuid.UUID(deal.id)])
    )
    assert left == []


async def test_renames_deletes_and_merges_keep_tokens_in_step(
    services: Services, staff: Staff
) -> None:
    actor = staff.actor(await staff.create("sales"))
    record = await services.gateway.create(
        actor, "contact", person_values(first_name="Sharon", last_name="Todd")
    )
    await services.gateway.update(actor, "contact", record.id, {"last_name": "Quincey"})
    assert await _names(services, actor, "todd") == []
    assert await _names(services, actor, "quin") == ["Sharon Quincey"]
    assert await _names(services, actor, "sharon") == ["Sharon Quincey"]  # first name kept
    await services.gateway.delete(actor, "contact", record.id)
    assert await SearchToken.select().where(SearchToken.record_id == uuid.UUID(record.id)) == []

    survivor = await services.gateway.create(
        actor, "contact", person_values(first_name="Sharon", last_name="Todd")
    )
    merged = await services.gateway.create(
        actor, "contact", person_values(first_name="Shaz", last_name="Toddy")
    )
    merge = await services.gateway.merge_contacts(
        actor, survivor.id, merged.id, keep={"first_name": "merged"}
    )
    assert await _names(services, actor, "shaz") == ["Shaz Todd"]
    hidden = await services.gateway.search_names(actor, "contact", "shaz toddy")
    assert [r.id for r in hidden.items] == [survivor.id]  # the merged one, never while pending
    await services.gateway.undo_merge(actor, merge.id)
    assert set(await _names(services, actor, "tod")) == {"Sharon Todd", "Shaz Toddy"}
    merge = await services.gateway.merge_contacts(actor, survivor.id, merged.id)
    await services.gateway.confirm_merge(actor, merge.id)
    assert await SearchToken.select().where(SearchToken.record_id == uuid.UUID(merged.id)) == []


async def test_deals_cases_and_interactions_by_person_and_title(
    services: Services, staff: Staff
) -> None:
    actor = staff.actor(await staff.create("admin"))
    sharon = await services.gateway.create(
        actor, "contact", person_values(first_name="Sharon", last_name="Todd")
    )
    other = await services.gateway.create(
        actor, "contact", person_values(first_name="Brian", last_name="Eno")
    )
    org = await services.gateway.create(actor, "organization", {"name": "Acme Widgets"})
    renewal = await services.gateway.create(
        actor, "deal", {"title": "Annual renewal", "contact_id": sharon.id}
    )
    widgets = await services.gateway.create(
        actor,
        "deal",
        {"title": "Upsell", "contact_id": other.id, "organization_id": org.id},
    )
    case = await services.gateway.create(
        actor, "case", {"title": "Broken hinge", "kind": "complaint", "contact_id": other.id}
    )
    call = await services.gateway.create(
        actor,
        "interaction",
        {"channel": "phone_call", "occurred_at": "2026-11-30T10:00", "contact_id": sharon.id},
    )

    async def ids(resource: str, term: str) -> list[str]:
        return [r.id for r in (await services.gateway.search_names(actor, resource, term)).items]

    assert await ids("deal", "sharon todd") == [renewal.id]
    assert await ids("deal", "renew") == [renewal.id]
    assert await ids("deal", "acme") == [widgets.id]
    assert await ids("case", "hinge") == [case.id]
    assert await ids("case", "eno") == [case.id]
    assert await ids("interaction", "todd") == [call.id]
    groups = {g.resource: g for g in await services.gateway.search_everything(actor, "todd")}
    assert [r.id for r in groups["contact"].items] == [sharon.id]
    assert [r.id for r in groups["deal"].items] == [renewal.id]


async def test_leads_and_organizations_and_lead_conversion(
    services: Services, staff: Staff
) -> None:
    actor = staff.actor(await staff.create("admin"))
    lead = await services.gateway.create(
        actor, "lead", {"first_name": "Ottoline", "last_name": "Morrell", "source": "web"}
    )
    await services.gateway.create(actor, "organization", {"name": "Garsington Manor Ltd"})
    assert [r.id for r in (await services.gateway.search_names(actor, "lead", "otto")).items] == [
        lead.id
    ]
    orgs = await services.gateway.search_names(actor, "organization", "garsington")
    assert [r.values["name"] for r in orgs.items] == ["Garsington Manor Ltd"]
    conversion = await services.gateway.convert_lead(actor, lead.id)
    contacts = await services.gateway.search_names(actor, "contact", "morrell")
    assert [r.id for r in contacts.items] == [conversion.contact_id]


async def test_reindex_rebuilds_every_token(services: Services, staff: Staff) -> None:
    from server.gateway import name_index

    actor = staff.actor(await staff.create("sales"))
    await _people(services, actor)
    before = sorted((r["record_id"], r["field"], r["token"]) for r in await SearchToken.select())
    await SearchToken.delete(force=True)
    assert await _names(services, actor, "todd") == []
    total = 0
    for rt in name_index.indexed_types():
        total += await name_index.rebuild(services.gateway, rt, batch_size=3)
    after = sorted((r["record_id"], r["field"], r["token"]) for r in await SearchToken.select())
    assert after == before
    assert total >= len(PEOPLE)
    assert "Sharon Todd" in await _names(services, actor, "todd")
