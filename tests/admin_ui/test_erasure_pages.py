"""The erasure confirmation page and what an erased contact looks like afterwards.

What a user would notice: the compliance officer sees what will be destroyed (counts by
record type), what a legal hold keeps and what is kept anyway, and nothing happens until
the request reference is typed; afterwards the contact is gone from lists and counts,
its page says "Erased" with the date and the reference and offers no action, and an edit
is refused with 409 and a sentence saying why.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from server.gateway import Actor
from server.services import Services
from tests.admin_ui.test_admin_ui import csrf_of, location, sales_contact, text_of, web_login
from tests.conftest import Staff

ADMIN = Actor.system("test-admin")


async def approved_erasure(services: Services, staff: Staff) -> dict[str, Any]:
    """A person with a deal and an interaction, and their approved erasure request."""
    gw = services.gateway
    rep = await staff.create("sales")
    actor = staff.actor(rep)
    person = await gw.create(
        actor,
        "contact",
        sales_contact(first_name="Ottoline", last_name="Quarrington", email="oq@example.org"),
    )
    await gw.create(ADMIN, "deal", {"title": "Renewal", "contact_id": person.id, "currency": "EUR"})
    await gw.create(ADMIN, "deal", {"title": "Upsell", "contact_id": person.id, "currency": "EUR"})
    officer = await staff.create("compliance", email="olga.officer@staff.example.com")
    logged = await services.requests.log(
        person.subject_id,
        "erasure",
        "phone",
        verification="phone_callback",
        by=f"user:{officer.user_id}",
        contact_id=person.id,
    )
    for state in ("in_review", "approved"):
        await services.requests.transition(logged.request.id, state, by=f"user:{officer.user_id}")
    return {"rep": rep, "actor": actor, "person": person, "officer": officer,
            "request_id": logged.request.id}  # fmt: skip


async def test_erasure_needs_the_typed_reference_and_shows_what_it_destroys(
    services: Services, staff: Staff
) -> None:
    w = await approved_erasure(services, staff)
    request_id, person = w["request_id"], w["person"]
    until = dt.date.today() + dt.timedelta(days=60)
    await services.erasure.holds.add(person.subject_id, "deal", "tax_records", until, by="user:1")
    client = await web_login(staff, w["officer"])

    detail = await client.get(f"/compliance/requests/{request_id}")
    assert "Mark fulfilled" not in text_of(detail)
    assert "Review and erase" in text_of(detail)
    # History names the officer, not "user:N".
    assert "olga.officer@staff.example.com" in text_of(detail)
    assert f"user:{w['officer'].user_id}" not in detail.text

    # The old one-click route no longer erases: it leads to the confirmation page.
    sneaky = await client.post(
        f"/compliance/requests/{request_id}/transition",
        data={"to_state": "fulfilled", "_csrf_token": csrf_of(detail)},
    )
    assert location(sneaky) == f"/compliance/requests/{request_id}/erase"
    assert (await services.requests.get(request_id)).state == "approved"

    page = await client.get(f"/compliance/requests/{request_id}/erase")
    assert page.status_code == 200
    shown = text_of(page)
    assert "Contacts 1 Destroyed" in shown
    assert "Deals 2 Kept under a legal hold: " in shown
    assert f"until {until.isoformat()}" in shown
    assert "In all 3" in shown
    assert "This request and its history" in shown
    assert f"type the request reference {request_id[:8]}" in shown
    assert "Ottoline" not in page.text
    assert "oq@example.org" not in page.text

    for typed in ("", "nonsense", request_id[:7]):
        refused = await client.post(
            f"/compliance/requests/{request_id}/erase",
            data={"reference": typed, "_csrf_token": csrf_of(page)},
        )
        assert refused.status_code == 400
        assert "Type the request reference shown above" in text_of(refused)
    assert (await services.requests.get(request_id)).state == "approved"
    assert await services.erasure.job_for_subject(person.subject_id) is None

    done = await client.post(
        f"/compliance/requests/{request_id}/erase",
        data={"reference": f"  {request_id[:8].upper()} ", "_csrf_token": csrf_of(page)},
    )
    # It runs in the background; the answer is its progress page.
    assert location(done) == f"/compliance/requests/{request_id}/erase/progress"
    assert services.erasure_runs is not None
    await services.erasure_runs.drain()
    after = await client.get(location(done))
    shown = text_of(after)
    assert "Partly erased: a legal hold keeps some records" in shown
    assert "✓ Mentions in other people's notes replaced by [erased]" in shown
    assert "… The person's encryption key shredded" in shown
    assert 'http-equiv="refresh"' not in after.text  # nothing left to watch
    assert (await services.requests.get(request_id)).state == "fulfilled"
    job = await services.erasure.job_for_subject(person.subject_id)
    assert job is not None
    assert job.erased == {"contact": 1}


async def test_an_erased_contact_never_looks_like_a_living_record(
    services: Services, staff: Staff
) -> None:
    w = await approved_erasure(services, staff)
    request_id, person, actor = w["request_id"], w["person"], w["actor"]
    gw = services.gateway
    before = await gw.count(actor, "contact")
    await services.requests.transition(request_id, "fulfilled", by="user:1")

    assert await gw.count(actor, "contact") == before - 1
    listed = await gw.list(actor, "contact", page_size=100)
    assert person.id not in {r.id for r in listed.items}
    assert listed.total == before - 1
    assert await gw.count(actor, "contact", include_erased=True) == before
    # Deals stay in the pipeline totals.
    assert await gw.count(ADMIN, "deal", filters={"contact_id": person.id}) == 2

    rep = await web_login(staff, w["rep"])
    contacts = await rep.get("/contacts")
    assert f"Contact {person.id[:8]}" not in text_of(contacts)
    assert person.id not in contacts.text

    page = await rep.get(f"/contacts/{person.id}")
    assert page.status_code == 200
    shown = text_of(page)
    assert "Erased contact" in shown
    assert f"Erased on {dt.datetime.now(dt.UTC):%Y-%m-%d}" in shown
    assert f"Request reference {request_id[:8]}" in shown
    for gone in ("Not set", "No consent has been recorded", "Edit", "Delete", "New deal",
                 "Record consent", "Add note"):  # fmt: skip
        assert gone not in shown, gone
    assert "Erased contact" in text_of(await rep.get(f"/contacts/{person.id}/360"))

    edit = await rep.get(f"/contacts/{person.id}/edit")
    assert edit.status_code == 409
    assert "An erased record cannot be edited" in text_of(edit)
    saved = await rep.post(
        f"/contacts/{person.id}/edit",
        data={"first_name": "Back", "_csrf_token": csrf_of(page)},
    )
    assert saved.status_code == 409
    assert "was erased" in text_of(saved)

    api = await staff.login(w["rep"])
    patched = await api.patch(f"/api/v1/contacts/{person.id}", json={"first_name": "Back"})
    assert patched.status_code == 409
    assert "has been erased and cannot be changed" in patched.text
