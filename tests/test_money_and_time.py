"""Money typed and shown in major units, times in the user's zone, and the list pages
(sort, columns, pagination, bulk actions) as a person using the admin notices them."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

import pytest
from httpx import AsyncClient

from server.auth.tables import StaffUser
from server.dsr.export import build_export
from server.money import AmountError, format_money, parse_major
from server.services import Services
from tests.conftest import Staff
from tests.test_admin_ui import csrf_of, location, submit, text_of, web_login
from tests.test_crm_records import sales_contact
from tests.test_import_export import export_csv

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
