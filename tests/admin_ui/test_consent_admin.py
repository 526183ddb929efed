"""The staff consent pages (admin_ui/pages/consent.py) over HTTP, on both engines.

A compliance officer or an admin keeps the purposes registry and the privacy notices, sees
a person's consent on their contact page, records consent a person gave by phone, and
downloads the proof; the dashboard counts how consent moves. Other roles see the consent
state on contacts they may read, and nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from httpx import AsyncClient

from audit.tables import AuditRecord
from server.consent.tables import ConsentEvent
from server.gateway import Record
from server.services import Services
from tests.admin_ui.test_admin_ui import (
    csrf_of,
    location,
    sales_contact,
    submit,
    text_of,
    web_login,
)
from tests.conftest import Staff

PAGES = (
    "/compliance/consent",
    "/compliance/consent/purposes",
    "/compliance/consent/purposes/marketing_email",
    "/compliance/consent/notices",
)


async def audit_rows(action: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await AuditRecord.select().where(AuditRecord.action == action).order_by(AuditRecord.seq)
    )
    return rows


async def signed_in(staff: Staff, role: str) -> tuple[str, AsyncClient]:
    identity = await staff.create(role)
    return identity.actor_id, await web_login(staff, identity)


async def customer(services: Services, staff: Staff) -> tuple[Record, AsyncClient]:
    """A contact created by a sales rep, and the rep's signed-in client."""
    rep = await staff.create("sales")
    record = await services.gateway.create(staff.actor(rep), "contact", sales_contact())
    return record, await web_login(staff, rep)


async def publish(services: Services, text: str = "We use your e-mail address for news.") -> int:
    notice = await services.consent.publish_notice("Privacy notice", text, by="user:1")
    return notice.version


@pytest.mark.parametrize("role", ["compliance", "admin"])
async def test_a_registry_edit_is_audited_and_shown(staff: Staff, role: str) -> None:
    actor_id, client = await signed_in(staff, role)
    listing = await client.get("/compliance/consent/purposes")
    assert listing.status_code == 200
    assert "marketing_email" in listing.text
    assert "Consent (Art. 6(1)(a))" in text_of(listing)

    form = await client.get("/compliance/consent/purposes/marketing_email")
    assert form.status_code == 200
    saved = await client.post(
        "/compliance/consent/purposes/marketing_email",
        data={
            "legal_basis": "consent",
            "description": "Our monthly newsletter by e-mail",
            "channels": ["email"],
            "retention": "Until withdrawn",
            "direct_marketing": "1",
            "active": "1",
            "_csrf_token": csrf_of(form),
        },
    )
    assert location(saved) == "/compliance/consent/purposes"
    after = text_of(await client.get("/compliance/consent/purposes"))
    assert "Our monthly newsletter by e-mail" in after
    assert "Purpose marketing_email saved (description, retention)" in after
    [event] = await audit_rows("consent.purpose_update")
    assert event["actor_id"] == actor_id
    assert event["resource_id"] == "marketing_email"
    assert json.loads(event["fields"]) == ["description", "retention"]


async def test_bad_registry_input_gets_a_400_with_messages(staff: Staff) -> None:
    _, client = await signed_in(staff, "compliance")
    form = await client.get("/compliance/consent/purposes/profiling")
    bad = await client.post(
        "/compliance/consent/purposes/profiling",
        data={
            "legal_basis": "because",
            "description": "",
            "channels": ["pigeon"],
            "retention": "x",
            "active": "1",
            "_csrf_token": csrf_of(form),
        },
    )
    assert bad.status_code == 400
    text = text_of(bad)
    assert "Legal basis: choose one from the list." in text
    assert "Description is required." in text
    assert "Channels: choose from the list." in text
    assert await audit_rows("consent.purpose_update") == []
    assert (await client.get("/compliance/consent/purposes/nonsense")).status_code == 404


async def test_publishing_a_notice(staff: Staff) -> None:
    actor_id, client = await signed_in(staff, "admin")
    page = await client.get("/compliance/consent/notices")
    assert "No privacy notice has been published yet" in text_of(page)
    empty = await client.post(
        "/compliance/consent/notices",
        data={"title": " ", "text": "", "_csrf_token": csrf_of(page)},
    )
    assert empty.status_code == 400
    assert "Title is required." in text_of(empty)
    assert "Notice text is required." in text_of(empty)

    published = await client.post(
        "/compliance/consent/notices",
        data={
            "title": "Privacy notice 2025",
            "text": "We keep your data safe.\nAsk us anything.",
            "_csrf_token": csrf_of(page),
        },
    )
    assert location(published) == "/compliance/consent/notices/1"
    shown = await client.get("/compliance/consent/notices/1")
    assert "Privacy notice version 1 published" in text_of(shown)
    assert "We keep your data safe." in shown.text
    listing = text_of(await client.get("/compliance/consent/notices"))
    assert "Version 1 (current)" in listing
    [event] = await audit_rows("consent.notice_publish")
    assert event["actor_id"] == actor_id
    assert (await client.get("/compliance/consent/notices/2")).status_code == 404


async def test_the_contact_page_shows_consent_and_only_managers_may_act(
    services: Services, staff: Staff
) -> None:
    record, rep_client = await customer(services, staff)
    version = await publish(services)
    await services.consent.grant(
        record.subject_id,
        "marketing_email",
        "email",
        source="web_form",
        notice_version=version,
        actor_id="subject",
    )
    page = await rep_client.get(f"/contacts/{record.id}")
    assert page.status_code == 200
    text = text_of(page)
    assert "Consent" in text
    assert "Granted" in text
    assert "E-mail" in text
    assert "/compliance/consent/proof/" not in page.text
    assert "Record consent given by phone" not in text
    assert (
        await rep_client.get(f"/compliance/consent/proof/{record.subject_id}")
    ).status_code == 404

    _, officer = await signed_in(staff, "compliance")
    seen = await officer.get(f"/contacts/{record.id}")
    assert seen.status_code == 200
    assert f'action="/compliance/consent/proof/{record.subject_id}"' in seen.text
    assert "Record consent given by phone or letter" in text_of(seen)


async def test_recording_consent_given_by_phone(services: Services, staff: Staff) -> None:
    record, _ = await customer(services, staff)
    version = await publish(services, "Calls about our offers, at most monthly.")
    actor_id, client = await signed_in(staff, "compliance")
    contact_page = f"/contacts/{record.id}"
    action = f"/compliance/consent/contacts/{record.id}"

    recorded = await submit(
        client,
        contact_page,
        action,
        {
            "target": "marketing_phone/phone",
            "action": "grant",
            "source": "phone",
            "notice_version": str(version),
            "reference": "CALL-2025-0042",
        },
    )
    assert location(recorded) == contact_page
    [event] = await ConsentEvent.select().where(ConsentEvent.subject_id == record.subject_id)
    assert (event["purpose"], event["channel"], event["kind"]) == (
        "marketing_phone",
        "phone",
        "granted",
    )
    assert (event["source"], event["actor_id"], event["notice_version"]) == (
        "phone",
        actor_id,
        version,
    )
    # Free text in the append-only ledger is kept encrypted under the person's key.
    stored = json.loads(event["evidence"])
    assert set(stored) == {"reference"}
    assert stored["reference"]["sealed"].startswith("cs1.")
    assert "CALL-2025-0042" not in event["evidence"]
    readable = await services.consent.readable_evidence(record.subject_id, stored)
    assert readable == {"reference": "CALL-2025-0042"}
    assert (await services.consent.has_basis(record.subject_id, "marketing_phone", "phone")).ok
    assert "Consent recorded" in text_of(await client.get(contact_page))

    withdrawn = await submit(
        client,
        contact_page,
        action,
        {"target": "marketing_phone/phone", "action": "withdraw", "source": "staff"},
    )
    assert location(withdrawn) == contact_page
    assert not (await services.consent.has_basis(record.subject_id, "marketing_phone", "phone"))

    proof_path = f"/compliance/consent/proof/{record.subject_id}"
    # A link (from any site) and a forged POST without the CSRF token export nothing.
    assert (await client.get(proof_path)).status_code == 405
    assert (await client.post(proof_path)).status_code == 403
    assert await audit_rows("consent.export") == []
    proof = await submit(client, contact_page, proof_path)
    assert proof.status_code == 200
    assert proof.headers["content-type"].startswith("application/json")
    assert "attachment" in proof.headers["content-disposition"]
    bundle = proof.json()
    assert [e["kind"] for e in bundle["events"]] == ["granted", "withdrawn"]
    assert bundle["events"][0]["notice"]["text"] == "Calls about our offers, at most monthly."
    assert bundle["events"][1]["actor"] == actor_id
    [export] = await audit_rows("consent.export")
    assert export["actor_id"] == actor_id


async def test_bad_recording_input_gets_a_400_with_a_message(
    services: Services, staff: Staff
) -> None:
    record, _ = await customer(services, staff)
    _, client = await signed_in(staff, "admin")
    contact_page = f"/contacts/{record.id}"
    action = f"/compliance/consent/contacts/{record.id}"
    no_notice = await submit(
        client,
        contact_page,
        action,
        {"target": "marketing_email/email", "action": "grant", "source": "phone"},
    )
    assert no_notice.status_code == 400
    assert "No privacy notice has been published" in text_of(no_notice)

    version = await publish(services)
    bad = await submit(
        client,
        contact_page,
        action,
        {
            "target": "marketing_email/pigeon",
            "action": "grant",
            "source": "telepathy",
            "notice_version": str(version),
            "reference": "Jane Doe, 1 High St",
        },
    )
    assert bad.status_code == 400
    text = text_of(bad)
    assert "Purpose and channel: choose one from the list." in text
    assert "How it was given: choose one." in text
    assert "Reference must be a short code" in text
    assert await ConsentEvent.count() == 0


async def test_the_dashboard_renders_counts_and_is_audited(
    services: Services, staff: Staff
) -> None:
    version = await publish(services)
    consent = services.consent
    subjects = []
    for _ in range(3):
        record, _ = await customer(services, staff)
        subjects.append(record.subject_id)
        await consent.grant(
            record.subject_id,
            "marketing_email",
            "email",
            source="web_form",
            notice_version=version,
            actor_id="subject",
        )
    await consent.withdraw(
        subjects[0], "marketing_email", "email", source="email_link", actor_id="subject"
    )
    await consent.object(subjects[1], source="portal", actor_id="subject")

    actor_id, client = await signed_in(staff, "compliance")
    page = await client.get("/compliance/consent")
    assert page.status_code == 200
    table = page.text.split("Where each purpose stands now")[1].split("</table>")[0]
    row = next(r for r in table.split("<tr>") if "<strong>Marketing email</strong>" in r)
    cells = [c.split("</td>")[0] for c in row.split('<td class="numeric">')[1:]]
    assert cells == ["2", "1", "0", "0", "3", "1", "0"]  # in force, withdrawn, ..., 90 days
    objections = next(r for r in table.split("<tr>") if "<strong>Direct marketing</strong>" in r)
    assert [c.split("</td>")[0] for c in objections.split('<td class="numeric">')[1:]][3] == "1"
    assert "<code>marketing_email</code>" not in table  # purposes by name, not by code
    data = json.loads(page.text.split('id="consent-data">')[1].split("</script>")[0])
    granted = next(s for s in data["series"] if s["label"] == "Granted")
    assert sum(granted["data"]) == 3
    assert len(data["labels"]) == 90
    assert 'href="/compliance/consent"' in page.text  # the console navigation

    one = await client.get("/compliance/consent?purpose=marketing_email")
    assert "3 granted, 1 withdrawn, 0 expired, 0 objected" in text_of(one)
    bad = await client.get("/compliance/consent?purpose=nonsense")
    assert bad.status_code == 400
    assert "Purpose: choose one from the list." in text_of(bad)
    views = await audit_rows("consent.report")
    assert [v["actor_id"] for v in views] == [actor_id] * 3
    assert [v["outcome"] for v in views] == ["allowed", "allowed", "error"]


async def test_admins_find_consent_in_the_navigation(staff: Staff) -> None:
    _, client = await signed_in(staff, "admin")
    home = await client.get("/")
    assert '<li><a href="/compliance/consent">Consent</a></li>' in home.text  # the sidebar
    assert (await client.get("/compliance/consent")).status_code == 200


@pytest.mark.parametrize("role", ["sales", "support", "marketing"])
async def test_consent_pages_do_not_exist_for_other_roles(
    services: Services, staff: Staff, role: str
) -> None:
    record, _ = await customer(services, staff)
    await publish(services)
    _, client = await signed_in(staff, role)
    for path in (
        *PAGES,
        "/compliance/consent/notices/1",
        f"/compliance/consent/proof/{record.subject_id}",
    ):
        assert (await client.get(path)).status_code == 404, path
    token = csrf_of(await client.get("/account"))
    for path, data in (
        ("/compliance/consent/purposes/marketing_email", {"description": "x"}),
        ("/compliance/consent/notices", {"title": "x", "text": "y"}),
        (
            f"/compliance/consent/contacts/{record.id}",
            {"target": "marketing_email/email", "action": "grant", "source": "phone"},
        ),
        (f"/compliance/consent/proof/{record.subject_id}", {}),
        (
            f"/compliance/consent/contacts/{record.id}/lift-objection",
            {"scope": "direct_marketing", "source": "phone", "note": "asked by phone"},
        ),
    ):
        response = await client.post(path, data={**data, "_csrf_token": token})
        assert response.status_code == 404, path
    assert await ConsentEvent.count() == 0
    notice = await services.consent.current_notice()
    assert notice is not None
    assert notice.version == 1


async def test_staff_lift_an_objection_with_evidence_from_the_contact_page(
    services: Services, staff: Staff
) -> None:
    record, _ = await customer(services, staff)
    await services.consent.object(record.subject_id, source="pref_center", actor_id="subject")
    actor_id, client = await signed_in(staff, "compliance")
    contact_page = f"/contacts/{record.id}"
    action = f"/compliance/consent/contacts/{record.id}/lift-objection"
    page = await client.get(contact_page)
    assert f'action="{action}"' in page.text
    assert "Lift this objection" in text_of(page)

    # No evidence: refused, nothing recorded.
    refused = await submit(
        client, contact_page, action, {"scope": "direct_marketing", "source": "phone"}
    )
    assert location(refused) == contact_page
    assert "evidence is required" in text_of(await client.get(contact_page))
    assert not await ConsentEvent.exists().where(ConsentEvent.kind == "lifted")

    lifted = await submit(
        client,
        contact_page,
        action,
        {"scope": "direct_marketing", "source": "phone", "note": "Call of 3 March, CALL-118"},
    )
    assert location(lifted) == contact_page
    after = await client.get(contact_page)
    assert "Objection lifted. It is in the ledger" in text_of(after)
    assert f'action="{action}"' not in after.text  # nothing left to lift
    [event] = await ConsentEvent.select().where(ConsentEvent.kind == "lifted")
    assert (event["purpose"], event["source"], event["actor_id"]) == (
        "direct_marketing",
        "phone",
        actor_id,
    )
    assert "CALL-118" not in event["evidence"]  # sealed under the person's key
    readable = await services.consent.readable_evidence(
        record.subject_id, json.loads(event["evidence"])
    )
    assert readable == {"note": "Call of 3 March, CALL-118"}
    [audited] = await audit_rows("consent.lift_objection")
    assert audited["actor_id"] == actor_id
    assert (await services.consent.has_basis(record.subject_id, "marketing_email")).reason != (
        "objected"
    )
