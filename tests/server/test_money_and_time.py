"""Money typed and shown in major units, times in the user's zone, and the list pages
(sort, columns, pagination, bulk actions) as a person using the admin notices them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from typing import Any

import pytest
from httpx import AsyncClient

from audit.tables import AuditRecord
from server.auth.tables import StaffUser
from server.dsr.export import build_export
from server.money import AmountError, format_money, parse_major
from server.services import Services
from tests.admin_ui.test_admin_ui import csrf_of, location, submit, text_of, web_login
from tests.conftest import PASSWORD, Staff, http_client
from tests.server.crm.test_crm_records import deal_values, sales_contact
from tests.server.csvio.test_import_export import export_csv

DEAL = "Cooperage retainer for Philippa"


async def new_deal(client: AsyncClient, contact_id: str, **fields: str) -> Any:
    page = await client.get(f"/deals/new?contact_id={contact_id}")
    assert page.status_code == 200, page.text[:300]
    data = {"title": DEAL, "contact_id": contact_id, "_csrf_token": csrf_of(page), **fields}
    return await client.post("/deals/new", data=data)


def test_amounts_parse_and_print_with_the_currencys_own_decimals() -> None:
    assert parse_major("12500", "EUR") == 1_250_000
    assert parse_major("12,500.00", "EUR") == 1_250_000
    assert parse_major("12,500", "JPY") == 12_500
    assert format_money(1_250_000, "EUR") == "12,500.00 EUR"
    assert format_money(12_500, "JPY") == "12,500 JPY"
    for bad, currency in [("12,50,0", "EUR"), ("-5", "EUR"), ("1.234", "EUR"), ("1.5", "JPY")]:
        with pytest.raises(AmountError):
            parse_major(bad, currency)


async def test_a_deal_of_12500_eur_reads_12500_eur_everywhere(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    contact = await services.gateway.create(
        staff.actor(identity), "contact", sales_contact(first_name="Philippa")
    )
    form = await seller.get(f"/deals/new?contact_id={contact.id}")
    assert "minor units" not in text_of(form)
    assert '<textarea id="field-title"' not in form.text  # a title is one line

    made = await new_deal(seller, contact.id, amount="12,500", currency="EUR")
    deal_path = location(made)
    deal_id = deal_path.rsplit("/", 1)[1]
    stored = await services.gateway.read(staff.actor(identity), "deal", deal_id)
    assert stored.values["amount"] == 1_250_000  # minor units in the database, as ever

    assert "12,500.00 EUR" in text_of(await seller.get(deal_path))
    listing = text_of(await seller.get("/deals"))
    assert "12,500.00 EUR" in listing
    assert "Philippa" in listing  # the person, by name, in the deals list
    assert "12,500.00 EUR" in text_of(await seller.get(f"/contacts/{contact.id}"))
    assert "12,500.00 EUR" in text_of(await seller.get(f"/contacts/{contact.id}/360"))
    edit = await seller.get(f"{deal_path}/edit")
    assert 'value="12500.00"' in edit.text  # the edit form shows major units too

    exported = await export_csv(seller, "deals", reason="reporting")
    (row,) = list(csv.DictReader(io.StringIO(exported.text)))
    assert (row["amount"], row["currency"]) == ("12500.00", "EUR")

    bundle = await build_export(services, contact.subject_id, requested_by="system:test")
    files = zipfile.ZipFile(io.BytesIO(bundle.zip_bytes))
    (deal,) = json.loads(files.read("data.json"))["records"]["deal"]
    assert deal["amount"] == "12500.00"
    assert "12,500.00 EUR" in files.read("index.html").decode()


async def test_yen_has_no_decimals_and_bad_amounts_come_back_with_a_reason(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    contact = await services.gateway.create(staff.actor(identity), "contact", sales_contact())
    cases = {
        "12,50,0": "Amount: enter the amount as a number",
        "-10": "Amount must not be negative.",
        "10.505": "EUR has at most 2 decimals",
    }
    for typed, message in cases.items():
        refused = await new_deal(seller, contact.id, amount=typed, currency="EUR")
        assert refused.status_code == 400, typed
        assert message in text_of(refused), (typed, text_of(refused)[:600])
        assert f'value="{typed}"' in refused.text  # nothing typed is lost
    refused = await new_deal(seller, contact.id, amount="100.5", currency="JPY")
    assert "JPY has no decimals" in text_of(refused)
    made = await new_deal(seller, contact.id, amount="12500", currency="JPY")
    assert "12,500 JPY" in text_of(await seller.get(location(made)))


async def test_converting_a_lead_with_12500_eur_makes_a_12500_eur_deal(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    lead = await services.gateway.create(
        staff.actor(identity),
        "lead",
        {"first_name": "Ottilie", "last_name": "Marsh", "email": "ottilie@example.org"},
    )
    converted = await submit(
        seller,
        f"/leads/{lead.id}/convert",
        f"/leads/{lead.id}/convert",
        {"deal_title": DEAL, "deal_amount": "12500", "deal_currency": "EUR"},
    )
    assert converted.status_code == 303, text_of(converted)[:800]
    deals = await services.gateway.list(staff.actor(identity), "deal")
    assert [d.values["amount"] for d in deals.items] == [1_250_000]


async def test_a_time_typed_in_berlin_is_stored_in_utc_and_shown_in_berlin(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    saved = await submit(seller, "/account", "/account/time-zone", {"time_zone": "Europe/Berlin"})
    assert location(saved) == "/account"
    assert 'value="Europe/Berlin" selected' in (await seller.get("/account")).text
    contact = await services.gateway.create(staff.actor(identity), "contact", sales_contact())
    page = await seller.get(f"/tasks/new?contact_id={contact.id}")
    assert 'type="datetime-local"' in page.text
    made = await seller.post(
        "/tasks/new",
        data={
            "title": "Ring about the casks",
            "contact_id": contact.id,
            "due_at": "2026-12-03T10:00",
            "_csrf_token": csrf_of(page),
        },
    )
    task_path = location(made)
    task = await services.gateway.read(staff.actor(identity), "task", task_path.rsplit("/", 1)[1])
    assert task.values["due_at"].startswith("2026-12-03T09:00:00+00:00")  # CET is UTC+1
    assert "2026-12-03 10:00 CET" in text_of(await seller.get(task_path))
    assert 'value="2026-12-03T10:00"' in (await seller.get(f"{task_path}/edit")).text

    unknown = await submit(seller, "/account", "/account/time-zone", {"time_zone": "Mars/Olympus"})
    assert unknown.status_code == 400
    assert "Choose a time zone from the list." in text_of(unknown)
    (row,) = await StaffUser.select(StaffUser.time_zone).where(StaffUser.id == identity.user_id)
    assert row["time_zone"] == "Europe/Berlin"


# --- lists: sort, columns, pages, bulk actions, exports ------------------------------------


async def deals_for(
    services: Services, staff: Staff, identity: Any, amounts: list[int]
) -> list[str]:
    gw, actor = services.gateway, staff.actor(identity)
    person = await gw.create(actor, "contact", sales_contact(first_name="Philippa"))
    made = []
    for i, amount in enumerate(amounts):
        deal = await gw.create(
            actor,
            "deal",
            deal_values(person.id, title=f"Deal number {i}", amount=amount, currency="EUR"),
        )
        made.append(deal.id)
    return made


def shown_amounts(page_text: str) -> list[str]:
    return re.findall(r"([0-9,]+\.[0-9]{2}) EUR", page_text)


async def test_deals_sort_by_amount_both_ways_and_unknown_keys_fall_back(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    await deals_for(services, staff, identity, [30_000, 10_000, 20_000])
    listing = await seller.get("/deals")
    assert 'href="/deals?sort=amount"' in listing.text  # the heading sorts
    for header in ("Contact", "Organization", "Owner", "Stage", "Amount", "Expected close"):
        assert f">{header}" in listing.text, header
    up = await seller.get("/deals", params={"sort": "amount"})
    assert shown_amounts(text_of(up)) == ["100.00", "200.00", "300.00"]
    assert 'aria-sort="ascending"' in up.text
    assert '<input type="hidden" name="sort" value="amount">' in up.text  # filtering keeps it
    down = await seller.get("/deals", params={"sort": "-amount"})
    assert shown_amounts(text_of(down)) == ["300.00", "200.00", "100.00"]
    # An encrypted field (the title) or nonsense is not a sort key: the default order.
    for key in ("title", "-title", "'; drop table deal; --"):
        fallback = await seller.get("/deals", params={"sort": key})
        assert fallback.status_code == 200, key
        assert len(shown_amounts(text_of(fallback))) == 3
    api = await staff.login(identity)
    refused = await api.get("/api/v1/deals", params={"sort": "title"})
    assert refused.status_code == 400
    assert "can be sorted by" in refused.json()["detail"]
    ok = await api.get("/api/v1/deals", params={"sort": "-amount"})
    assert [d["amount"] for d in ok.json()["items"]] == [30_000, 20_000, 10_000]


async def test_a_page_past_the_end_shows_the_last_page(services: Services, staff: Staff) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    await deals_for(services, staff, identity, [100, 200, 300, 400, 500])
    page = await seller.get("/deals", params={"page": "50", "page_size": "2"})
    assert page.status_code == 200
    assert "Page 3 of 3" in text_of(page)
    assert "Page 50" not in text_of(page)
    assert len(shown_amounts(text_of(page))) == 1


async def test_bulk_stage_change_audits_each_deal_and_refuses_ones_out_of_scope(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    other = await staff.create("sales")
    seller = await web_login(staff, identity)
    mine = await deals_for(services, staff, identity, [100, 200])
    (theirs,) = await deals_for(services, staff, other, [300])
    listing = await seller.get("/deals")
    assert 'name="id"' in listing.text
    assert 'action="/deals/bulk"' in listing.text
    picked = [*mine, theirs]
    review = await seller.post(
        "/deals/bulk",
        data={"action": "stage", "stage": "won", "id": picked, "_csrf_token": csrf_of(listing)},
    )
    assert review.status_code == 200
    assert "Move 3 deals to the stage Won." in text_of(review)
    forged = await seller.post(
        "/deals/bulk/apply", data={"action": "stage", "stage": "won", "id": picked}
    )
    assert forged.status_code == 403  # no CSRF token: nothing changes
    before = await AuditRecord.count().where(AuditRecord.action == "update")
    applied = await seller.post(
        "/deals/bulk/apply",
        data={"action": "stage", "stage": "won", "id": picked, "_csrf_token": csrf_of(review)},
    )
    assert location(applied) == "/deals"
    assert "2 of 3 deals moved. 1 could not be changed" in text_of(await seller.get("/deals"))
    updates = await AuditRecord.select().where(
        (AuditRecord.action == "update") & (AuditRecord.resource_type == "deal")
    )
    allowed = [u for u in updates if u["outcome"] == "allowed"]
    assert sorted(u["resource_id"] for u in allowed) == sorted(mine)  # one event per deal
    assert len(updates) - before == 3  # and the refusal of the other rep's deal is audited
    rival = await services.gateway.read(staff.actor(other), "deal", theirs)
    assert rival.values["stage"] != "won"


async def test_bulk_owner_change_goes_through_the_ownership_rules(
    services: Services, staff: Staff
) -> None:
    admin = await staff.create("admin")
    rep = await staff.create("sales", team="north")
    client = await web_login(staff, admin)
    deals = await deals_for(services, staff, admin, [100, 200])
    listing = await client.get("/deals")
    assert 'id="bulk-owner"' in listing.text
    review = await client.post(
        "/deals/bulk",
        data={
            "action": "owner",
            "owner_id": str(rep.user_id),
            "id": deals,
            "_csrf_token": csrf_of(listing),
        },
    )
    assert "Give 2 deals to" in text_of(review)
    applied = await client.post(
        "/deals/bulk/apply",
        data={
            "action": "owner",
            "owner_id": str(rep.user_id),
            "id": deals,
            "_csrf_token": csrf_of(review),
        },
    )
    assert location(applied) == "/deals"
    for deal_id in deals:
        record = await services.gateway.read(staff.actor(rep), "deal", deal_id)
        assert record.owner_id == rep.user_id
    events = await AuditRecord.select().where(
        (AuditRecord.action == "update") & AuditRecord.resource_id.is_in(deals)
    )
    assert len(events) == 2
    # A sales rep may only give records to themselves: no owner action is offered, and a
    # hand-made request for it is refused before anything changes.
    seller = await web_login(staff, rep)
    theirs = await seller.get("/deals")
    assert 'id="bulk-owner"' not in theirs.text
    refused = await seller.post(
        "/deals/bulk",
        data={
            "action": "owner",
            "owner_id": str(admin.user_id),
            "id": deals,
            "_csrf_token": csrf_of(theirs),
        },
    )
    assert refused.status_code == 400


async def test_export_selected_and_the_tasks_export(services: Services, staff: Staff) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    deals = await deals_for(services, staff, identity, [100, 200, 300])
    listing = await seller.get("/deals")
    page = await seller.post(
        "/deals/bulk", data={"action": "export", "id": deals[:2], "_csrf_token": csrf_of(listing)}
    )
    assert "2 selected records" in text_of(page)
    exported = await seller.post(
        "/export/deals", data={"reason": "reporting", "id": deals[:2], "_csrf_token": csrf_of(page)}
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["id"] for r in rows) == sorted(deals[:2])

    person = await services.gateway.create(staff.actor(identity), "contact", sales_contact())
    await services.gateway.create(
        staff.actor(identity),
        "task",
        {"title": "Send the price list", "contact_id": person.id, "due_at": "2026-12-03T09:00"},
    )
    tasks = await seller.get("/tasks")
    assert 'href="/export/tasks?"' in tasks.text
    assert (await seller.get("/export/tasks")).status_code == 200
    csv_file = await export_csv(seller, "tasks", reason="reporting")
    assert csv_file.headers["content-type"].startswith("text/csv")
    (task,) = list(csv.DictReader(io.StringIO(csv_file.text)))
    assert task["title"] == "Send the price list"


async def test_my_day_names_the_person_a_task_is_about(services: Services, staff: Staff) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    person = await services.gateway.create(
        staff.actor(identity), "contact", sales_contact(first_name="Hortensia")
    )
    due = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    await services.gateway.create(
        staff.actor(identity),
        "task",
        {"title": "Ring Hortensia", "contact_id": person.id, "due_at": due},
    )
    day = await seller.get("/my-day")
    about = day.text.split('data-task="', 1)[1].split("</tr>", 1)[0]
    assert f'<a href="/contacts/{person.id}">Hortensia' in about
    assert ">Open<" not in about


async def test_sign_in_takes_the_browsers_zone_once_and_never_overrides_a_choice(
    staff: Staff,
) -> None:
    identity = await staff.create("sales")

    async def sign_in_from(zone: str) -> AsyncClient:
        client = http_client(staff.app)
        staff.clients.append(client)
        form = {"email": identity.email, "password": PASSWORD, "next": "/", "time_zone": zone}
        assert location(await submit(client, "/login", "/login", form)) == "/"
        return client

    async def stored() -> str:
        (row,) = await StaffUser.select(StaffUser.time_zone).where(StaffUser.id == identity.user_id)
        return str(row["time_zone"])

    await sign_in_from("Not/AZone")
    assert await stored() == ""  # nonsense from a browser changes nothing
    client = await sign_in_from("America/New_York")
    assert await stored() == "America/New_York"
    assert 'value="America/New_York" selected' in (await client.get("/account")).text
    await submit(client, "/account", "/account/time-zone", {"time_zone": "Asia/Tokyo"})
    await sign_in_from("Europe/Lisbon")  # a laptop on holiday: the choice stays
    assert await stored() == "Asia/Tokyo"


async def test_bulk_delete_confirms_the_count_and_audits_each_record(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    seller = await web_login(staff, identity)
    deals = await deals_for(services, staff, identity, [100, 200, 300])
    listing = await seller.get("/deals")
    nothing = await seller.post(
        "/deals/bulk", data={"action": "delete", "_csrf_token": csrf_of(listing)}
    )
    assert nothing.status_code == 400
    assert "Tick at least one record first." in text_of(nothing)
    review = await seller.post(
        "/deals/bulk", data={"action": "delete", "id": deals[:2], "_csrf_token": csrf_of(listing)}
    )
    assert "Delete 2 deals. This cannot be undone." in text_of(review)
    assert (await services.gateway.list(staff.actor(identity), "deal")).total == 3  # not yet
    done = await seller.post(
        "/deals/bulk/apply",
        data={"action": "delete", "id": deals[:2], "_csrf_token": csrf_of(review)},
    )
    assert location(done) == "/deals"
    left = await services.gateway.list(staff.actor(identity), "deal")
    assert [d.id for d in left.items] == [deals[2]]
    events = await AuditRecord.select().where(
        (AuditRecord.action == "delete") & AuditRecord.resource_id.is_in(deals[:2])
    )
    assert sorted(e["resource_id"] for e in events) == sorted(deals[:2])
