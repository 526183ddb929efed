"""Issue 6's acceptance, end to end, as a customer and a compliance officer live it.

A customer with a contact record, a deal, interactions, a case and a consent asks for
their data in the portal, gets the sign-in link by e-mail (real SMTP), downloads the ZIP
(valid against the published schema, every record about them, and the staff who read
them); then asks for erasure, which compliance approves. Afterwards nothing of theirs can
be read or looked up anywhere in the database, the portal no longer knows them, pipeline
and case figures still add up, and the audit trail still verifies. Old links are refused
with the same page an unknown one gets.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import jsonschema
from httpx import AsyncClient

from server.gateway import Actor, Record
from server.services import Services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import sales_contact, text_of
from tests.conftest import Staff
from tests.dbutil import raw_sql
from tests.server.portal.test_portal import (
    INVALID_TEXT,
    SCHEMA,
    SENT_TEXT,
    ask_for_link,
    enter,
    last_link,
    logs,
    portal_app,
    portal_services,
    press,
    smtp,
    web,
)
from tests.server.test_logging import Captured
from tests.server.test_mail import LocalSmtp

__all__ = ["logs", "portal_app", "portal_services", "smtp", "web"]  # fixtures, used by name

NAME = {"first_name": "Ottoline", "last_name": "Featherstonehaugh"}
EMAIL = "ottoline.f@example.org"
PHONE = "+44 20 7946 0958"
NOTE = "Prefers calls after 4pm; allergic to lilies"
SECRETS = (*NAME.values(), EMAIL, "2079460958", NOTE, "lilies")
COMPLIANCE = Actor.system("test-compliance")


async def customer(services: Services, staff: Staff) -> dict[str, Any]:
    """The customer, their records in every record type, a consent, and a rep's reads."""
    gw = services.gateway
    rep = await staff.create("sales")
    actor = staff.actor(rep)
    person = await gw.create(
        actor,
        "contact",
        sales_contact(**NAME, email=EMAIL, phone=PHONE, notes=NOTE),
        owner_id=rep.user_id,
        team=rep.team,
    )
    deal = await gw.create(
        actor,
        "deal",
        {"title": "Ottoline's renewal", "contact_id": person.id, "amount": 250_000,
         "currency": "EUR", "stage": "won"},
    )  # fmt: skip
    calls = [
        await gw.create(
            actor,
            "interaction",
            {
                "contact_id": person.id,
                "channel": channel,
                "direction": "inbound",
                "occurred_at": "2026-11-20T10:00:00Z",
                "summary": f"{NAME['first_name']} {what}",
            },
        )
        for channel, what in (("phone_call", "called about lilies"), ("email", "wrote back"))
    ]
    case = await gw.create(
        Actor.system("test-seed"),
        "case",
        {"contact_id": person.id, "title": "Broken vase", "description": NOTE,
         "kind": "product_return"},
    )  # fmt: skip
    notice = await services.consent.publish_notice("Newsletter", "Monthly news.", by="user:1")
    await services.consent.grant(
        person.subject_id, "marketing_email", "email", source="staff",
        notice_version=notice.version, actor_id=actor.id,
    )  # fmt: skip
    await gw.read(actor, "contact", person.id)  # a staff access the person will see
    return {"person": person, "deal": deal, "calls": calls, "case": case, "rep": rep}


async def figures(services: Services) -> dict[str, Any]:
    """What pipeline and service reports are computed from."""
    gw = services.gateway
    deals = await gw.list(COMPLIANCE, "deal", page_size=100, purpose="compliance")
    return {
        **{
            r: await gw.count(COMPLIANCE, r, purpose="compliance")
            for r in ("contact", "deal", "interaction", "case")
        },
        "pipeline": sum(int(d.values.get("amount") or 0) for d in deals.items),
    }


async def everything_in_the_database(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    if settings.database_url.startswith("sqlite"):
        names = [
            str(r["name"])
            for r in await raw_sql(
                settings.database_url,
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
        ]
    else:
        names = [
            str(r["table_name"])
            for r in await raw_sql(
                settings.database_url,
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
            )
        ]
    return [
        (name, row)
        for name in names
        for row in await raw_sql(settings.database_url, f'SELECT * FROM "{name}"')
    ]


async def test_portal_export_then_approved_erasure_leaves_nothing_of_the_person(
    web: AsyncClient,
    smtp: LocalSmtp,
    portal_services: Services,
    settings: Settings,
    staff: Staff,
    logs: Captured,
) -> None:
    services = portal_services
    world = await customer(services, staff)
    person: Record = world["person"]
    before = await figures(services)

    # --- the customer asks for their data in the portal ---------------------------------
    assert SENT_TEXT in text_of(await ask_for_link(web, EMAIL))
    sign_in_link = last_link(smtp)
    assert smtp.received[-1].recipients == [EMAIL]
    assert (await enter(web, sign_in_link)).headers["location"] == "/portal/home"
    download = await press(web, "/portal/home", "/portal/download")
    assert download.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as bundle:
        data = json.loads(bundle.read("data.json"))
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    records = data["records"]
    assert [r["id"] for r in records["contact"]] == [person.id]
    assert records["contact"][0]["email"] == EMAIL
    assert [r["id"] for r in records["deal"]] == [world["deal"].id]
    assert {r["id"] for r in records["interaction"]} == {c.id for c in world["calls"]}
    assert [r["id"] for r in records["case"]] == [world["case"].id]
    assert records["case"][0]["description"] == NOTE
    assert [e["kind"] for e in data["consents"]["events"]] == ["granted"]
    staff_reads = [a for a in data["access_log"] if a["action"] == "read"]
    assert staff_reads
    assert staff_reads[0]["staff"].startswith("sales #")

    # --- they ask for erasure; compliance approves it -----------------------------------
    asked = await press(
        web, "/portal/home", "/portal/requests", kind="erasure", confirmed="yes"
    )  # the confirmation step answered, as the person's second click does
    assert asked.status_code == 200
    (request,) = await services.requests.queue(open_only=True)
    assert request.kind == "erasure"
    for state in ("in_review", "approved", "fulfilled"):
        await services.requests.transition(request.id, state, by="user:1", by_role="compliance")
    job = await services.erasure.job_for_request(request.id)
    assert job is not None
    assert job.complete
    told = smtp.received[-1]
    assert told.recipients == [EMAIL]  # read before the erasure, so they are still told
    assert "fulfilled" in told.text

    # --- nothing of them can be read or looked up anywhere ------------------------------
    assert await services.gateway.vault.keys_for([person.subject_id]) == {}
    rows = await everything_in_the_database(settings)
    subject_rows = [(t, r) for t, r in rows if str(r.get("subject_id")) == person.subject_id]
    assert {t for t, _ in subject_rows} >= {"contact", "deal", "interaction", "support_case"}
    for table, row in subject_rows:
        for column, value in row.items():
            if column.endswith("_bidx"):
                assert value is None, f"{table}.{column}"
            assert not (isinstance(value, str) and value.startswith("cs1.")), f"{table}.{column}"
    dump = " ".join(str(v) for _, row in rows for v in row.values()).casefold()
    for secret in SECRETS:
        assert secret.casefold() not in dump, secret
    assert await services.gateway.search(COMPLIANCE, "contact", "email", EMAIL) == []
    assert (
        await services.gateway.locate(COMPLIANCE, "contact", "email", EMAIL, purpose="compliance")
        == []
    )

    # --- the portal no longer knows them, and old links are refused ---------------------
    mails = len(smtp.received)
    assert SENT_TEXT in text_of(await ask_for_link(web, EMAIL))
    assert len(smtp.received) == mails
    reused = await web.get(sign_in_link)
    assert reused.status_code == 410
    assert INVALID_TEXT in text_of(reused)
    forged = await web.get(sign_in_link[:-4] + "AAAA")
    assert (forged.status_code, text_of(forged)) == (reused.status_code, text_of(reused))

    # --- reports still add up, the log holds none of their values, and it verifies ------
    # Pipeline and service figures add up as before; the erased person leaves the
    # contact count (an erased contact never looks like a living record).
    assert await figures(services) == {**before, "contact": before["contact"] - 1}
    for secret in SECRETS:
        assert secret.casefold() not in logs.text.casefold(), secret
    await services.audit_trail.seal_all()
    assert (await services.audit_trail.verify()).ok
