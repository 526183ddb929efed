"""The customer 360 page: one person's organization, deals, interactions, cases and
consent on one timeline, newest first - read through the gateway as the signed-in user,
so their policy hides fields and whole record types, and every read is audited."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from httpx import Response

from audit.tables import AuditRecord
from server.services import Services
from tests.admin_ui.test_admin_ui import text_of, web_login
from tests.conftest import Staff
from tests.server.crm.test_crm_records import (
    PARTICIPANTS,
    case_values,
    deal_values,
    interaction_values,
    sales_contact,
)

NOW = dt.datetime.now(dt.UTC)
DEAL_TITLE = "Oak barrel renewal for Perpetua"
CASE_TITLE = "Weeping hogshead returned"
EMAIL_SUMMARY = "Asked for the cooperage price list"
CALL_SUMMARY = "Rang about the festival delivery"
OTHER_DEAL = "Snoddington cider press for Barnabus"
OTHER_CALL = "Barnabus complained about the noise"


async def world(services: Services, staff: Staff) -> dict[str, Any]:
    gw = services.gateway
    rep = await staff.create("sales")
    agent = await staff.create("support")
    a, s = staff.actor(rep), staff.actor(agent)
    org = await gw.create(a, "organization", {"name": "Lochinvarrow Distillers"})
    person = await gw.create(
        a, "contact", sales_contact(first_name="Perpetua", organization_id=org.id)
    )
    other = await gw.create(a, "contact", sales_contact(first_name="Barnabus"))
    day = dt.timedelta(days=1)
    await gw.create(
        a,
        "interaction",
        interaction_values(
            person.id,
            channel="email",
            occurred_at=(NOW - 3 * day).isoformat(),
            summary=EMAIL_SUMMARY,
        ),
    )
    await gw.create(
        a,
        "interaction",
        interaction_values(person.id, occurred_at=(NOW - day).isoformat(), summary=CALL_SUMMARY),
    )
    notice = await services.consent.publish_notice("Privacy notice", "News by e-mail.", by="user:1")
    await services.consent.grant(
        person.subject_id,
        "marketing_email",
        "email",
        source="web_form",
        notice_version=notice.version,
        actor_id="subject",
    )
    close = (NOW + 30 * day).date().isoformat()
    deal = await gw.create(
        a, "deal", deal_values(person.id, title=DEAL_TITLE, amount=1_250_050, expected_close=close)
    )
    case = await gw.create(
        s,
        "case",
        case_values(person.id, title=CASE_TITLE, due_at=(NOW - dt.timedelta(hours=1)).isoformat()),
    )
    # Someone else's records, which must never show on Perpetua's page.
    await gw.create(a, "deal", deal_values(other.id, title=OTHER_DEAL))
    await gw.create(a, "interaction", interaction_values(other.id, summary=OTHER_CALL))
    return {
        "rep": rep,
        "agent": agent,
        "org": org,
        "person": person,
        "other": other,
        "deal": deal,
        "case": case,
    }


def timeline_of(page: Response) -> list[str]:
    """The timeline entries' visible texts, in page order."""
    match = re.search(r"<ol[^>]*data-timeline[^>]*>(.*?)</ol>", page.text, re.S)
    assert match, "no timeline"
    entries = re.findall(
        r"<li class=\"timeline-entry[^\"]*\"[^>]*>(.*?)</li>\s*(?=<li class=\"timeline-entry|$)",
        match.group(1),
        re.S,
    )
    return [" ".join(re.sub(r"<[^>]+>", " ", e).split()) for e in entries]


async def test_the_page_merges_the_persons_records_newest_first(
    services: Services, staff: Staff
) -> None:
    w = await world(services, staff)
    client = await web_login(staff, w["rep"])
    contact_page = await client.get(f"/contacts/{w['person'].id}")
    assert f'href="/contacts/{w["person"].id}/360"' in contact_page.text
    page = await client.get(f"/contacts/{w['person'].id}/360")
    assert page.status_code == 200
    text = text_of(page)
    assert "Perpetua Hopper" in text
    assert "Lochinvarrow Distillers" in text
    assert "Deals: 1" in text
    assert "Interactions: 2" in text
    assert "Cases: 1" in text
    entries = timeline_of(page)
    assert len(entries) == 6
    expected = [
        "Expected to close: " + DEAL_TITLE,  # a month ahead: upcoming
        "Case opened: " + CASE_TITLE,
        "Deal created: " + DEAL_TITLE,
        "Consent granted",
        "Phone call",
        "Email",
    ]
    for entry, start in zip(entries, expected, strict=True):
        assert start in entry, (start, entry)
    assert "Upcoming" in entries[0]
    assert "12,500.50 GBP" in entries[2]  # minor units shown with two decimals
    assert "SLA breached" in entries[1]
    assert CALL_SUMMARY in entries[4]
    assert f"Participants: {PARTICIPANTS}" in entries[4]  # who else took part
    assert EMAIL_SUMMARY in entries[5]
    # Nobody else's data.
    assert "Barnabus" not in text
    assert OTHER_DEAL not in text
    assert OTHER_CALL not in text
    assert "Granted" in text  # the consent table
    # It works without JavaScript: no script at all on this page beyond the layout's.
    assert "chart" not in page.text


async def test_the_reads_are_audited_as_the_signed_in_user(
    services: Services, staff: Staff
) -> None:
    w = await world(services, staff)
    client = await web_login(staff, w["rep"])
    first = await AuditRecord.count()
    assert (await client.get(f"/contacts/{w['person'].id}/360")).status_code == 200
    rows = await AuditRecord.select().where(AuditRecord.seq > first).order_by(AuditRecord.seq)
    reads = {
        (r["action"], r["resource_type"])
        for r in rows
        if r["actor_id"] == f"user:{w['rep'].user_id}" and r["outcome"] == "allowed"
    }
    assert {
        ("read", "contact"),
        ("read", "organization"),
        ("list", "deal"),
        ("list", "interaction"),
        ("list", "case"),
    } <= reads
    subject = w["person"].subject_id
    for r in rows:
        if r["action"] == "list" and r["resource_type"] in {"deal", "interaction", "case"}:
            assert json.loads(r["subject_ids"]) == [subject]
        assert "Perpetua" not in str(r)


async def test_what_the_role_may_not_see_is_restricted_or_left_out(
    services: Services, staff: Staff
) -> None:
    w = await world(services, staff)
    # Support: the team's cases and interactions; deals are none of its business.
    agent = await web_login(staff, w["agent"])
    page = await agent.get(f"/contacts/{w['person'].id}/360")
    assert page.status_code == 200
    text = text_of(page)
    assert "Your role may not see deals: they are left out." in text
    assert DEAL_TITLE not in text
    assert CASE_TITLE in text
    assert CALL_SUMMARY in text
    # Compliance: metadata only - the person's fields are restricted, and their deals,
    # interactions and cases are listed by subject id with no field: type, dates, owner.
    compliance = await staff.create("compliance")
    officer = await web_login(staff, compliance)
    page = await officer.get(f"/contacts/{w['person'].id}/360")
    assert page.status_code == 200
    text = text_of(page)
    for secret in (
        "Perpetua",
        DEAL_TITLE,
        CASE_TITLE,
        CALL_SUMMARY,
        EMAIL_SUMMARY,
        PARTICIPANTS,
        "12,500.50",
    ):
        assert secret not in text
    assert re.search(r"E-mail address</dt><dd><span class=\"restricted\"", page.text)
    for kind, count in (("Deals", 1), ("Interactions", 2), ("Cases", 1)):
        assert f"{kind}: {count} (metadata only: type, dates and owner, no contents)" in text
    for kind in ("deals", "interactions", "cases"):
        assert f"Your role may not see {kind}" not in text
    titles = sorted(e.split(" UTC ")[1].split(":")[0].split(" Last")[0] for e in timeline_of(page))
    assert titles == [
        "Case created",
        "Consent granted",
        "Deal created",
        "Interaction created",
        "Interaction created",
    ]
    assert f"Owner: staff {w['rep'].user_id}" in text
    assert f"Owner: staff {w['agent'].user_id}" in text
    # Listed by subject id through the gateway, audited, and no field was read.
    lists = await AuditRecord.select().where(
        (AuditRecord.actor_id == f"user:{compliance.user_id}") & (AuditRecord.action == "list")
    )
    assert {r["resource_type"] for r in lists} == {"deal", "interaction", "case"}
    assert all(json.loads(r["fields"]) == [] for r in lists)
    assert all(json.loads(r["subject_ids"]) == [w["person"].subject_id] for r in lists)
    # An admin may read the records (and, by its wildcard, metadata too): contents win.
    admin = await web_login(staff, await staff.create("admin"))
    full = text_of(await admin.get(f"/contacts/{w['person'].id}/360"))
    assert DEAL_TITLE in full
    assert "metadata only" not in full


async def test_a_won_deal_is_flagged_in_any_pipeline_and_no_longer_expected_to_close(
    services: Services, staff: Staff
) -> None:
    """Won is a stage *kind*: a configured pipeline's "Contract signed" counts too."""
    w = await world(services, staff)
    admin = staff.actor(await staff.create("admin"))
    wholesale = await services.pipelines.create_pipeline(admin, "Wholesale")
    await services.pipelines.add_stage(admin, wholesale.id, "Contract signed", "won")
    rep = staff.actor(w["rep"])
    await services.gateway.update(
        rep, "deal", w["deal"].id, {"pipeline_id": wholesale.id, "stage": "contract_signed"}
    )
    client = await web_login(staff, w["rep"])
    entries = timeline_of(await client.get(f"/contacts/{w['person'].id}/360"))
    assert not [e for e in entries if "Expected to close" in e]
    (created,) = [e for e in entries if f"Deal created: {DEAL_TITLE}" in e]
    assert "Won" in created.split(DEAL_TITLE, 1)[1]
    assert "Stage: Contract signed" in created


async def test_another_reps_customer_is_not_found(services: Services, staff: Staff) -> None:
    w = await world(services, staff)
    stranger = await web_login(staff, await staff.create("sales"))
    page = await stranger.get(f"/contacts/{w['person'].id}/360")
    assert page.status_code == 404
    assert "Perpetua" not in page.text
    assert (await stranger.get("/contacts/not-a-uuid/360")).status_code == 404
    denied = await AuditRecord.select().where(
        (AuditRecord.action == "read") & (AuditRecord.outcome == "denied")
    )
    assert any(json.loads(r["subject_ids"]) == [w["person"].subject_id] for r in denied)


async def test_the_persons_tasks_are_on_the_timeline_and_overdue_ones_flagged(
    services: Services, staff: Staff
) -> None:
    w = await world(services, staff)
    rep = staff.actor(w["rep"])
    gw = services.gateway
    await gw.create(
        rep,
        "task",
        {
            "title": "Send the tasting notes",
            "contact_id": w["person"].id,
            "due_at": (NOW - dt.timedelta(days=2)).isoformat(),
        },
    )
    await gw.create(
        rep,
        "task",
        {
            "title": "Book the cellar visit",
            "contact_id": w["person"].id,
            "due_at": (NOW + dt.timedelta(days=60)).isoformat(),
        },
    )
    client = await web_login(staff, w["rep"])
    page = await client.get(f"/contacts/{w['person'].id}/360")

    assert "Tasks: 2" in text_of(page)
    entries = timeline_of(page)
    (late,) = [e for e in entries if "Send the tasting notes" in e]
    (ahead,) = [e for e in entries if "Book the cellar visit" in e]
    assert "Task: Send the tasting notes" in late
    assert "Overdue" in late
    assert "Overdue" not in ahead
    assert entries[0] == ahead  # due in two months: the newest moment on the timeline


async def test_the_consent_ledger_shows_every_change_newest_first(
    services: Services, staff: Staff
) -> None:
    w = await world(services, staff)
    subject = w["person"].subject_id
    consent = services.consent
    await consent.withdraw(subject, "marketing_email", "email", source="staff", actor_id="user:1")
    await consent.object(subject, source="pref_center", actor_id="subject")
    await consent.lift_objection(subject, source="pref_center", actor_id="subject")
    client = await web_login(staff, w["rep"])
    page = await client.get(f"/contacts/{w['person'].id}/360")
    assert page.status_code == 200
    match = re.search(r"<table[^>]*data-consent-ledger[^>]*>(.*?)</table>", page.text, re.S)
    assert match, "no consent ledger"
    kinds = re.findall(r'<td data-label="What">(.*?)</td>', match.group(1))
    assert kinds == ["Objection lifted", "Objected", "Withdrawn", "Granted"]
    assert "the person" in match.group(1)
    [read] = await AuditRecord.select().where(AuditRecord.action == "consent.ledger_read")
    assert read["actor_id"] == f"user:{w['rep'].user_id}"
    assert json.loads(read["subject_ids"]) == [subject]
