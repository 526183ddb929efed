"""Subject exports protect other people and show every mention of the person (issue 25).

Grace's interaction names Judith, another customer, in its participants and summary; an
interaction on Judith's record says "Judith met Grace Auditwoman". Grace's export must
hold no trace of Judith (name, e-mail, phone) in any file, say that other people were
withheld and why, and show Judith's interaction as an excerpt with Judith withheld and
without its record id; erasing Grace then scrubs exactly the mentions her export showed.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from httpx import AsyncClient

from audit.signing import TreeHeadVerifier
from audit.tables import AuditRecord
from server import db
from server import settings as settings_module
from server.dsr.export import build_export, review_redactions
from server.dsr.export_format import MENTIONS_FILE, verify_export
from server.dsr.third_parties import excerpt
from server.gateway import Actor
from server.gateway.mentions import Identity, Matcher
from server.services import Services, build_services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, location, text_of, web_login
from tests.conftest import PASSWORD, Staff, contact_values
from tests.server.cli.test_cli import Install, consentry, forget_process_state, install
from tests.server.portal.test_portal import portal_app, portal_services, press, signed_in, web
from tests.server.test_mail import LocalSmtp, smtp

# Fixtures, requested by name.
__all__ = ["install", "portal_app", "portal_services", "smtp", "web"]

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "docs" / "dsr-export.schema.json").read_text())
SEED = Actor.system("test-seed")
ADMIN = Actor.system("test-admin")
GRACE = {"first_name": "Grace", "last_name": "Auditwoman", "email": "grace.a@example.org"}
JUDITH = {
    "first_name": "Judith",
    "last_name": "Hydeford",
    "email": "judith.hydeford@example.net",
    "phone": "+44 20 7946 0777",
}
JUDITH_TRACES = (b"Judith", b"Hydeford", b"judith.hydeford", b"7946 0777", b"79460777")


def unzip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


async def two_customers(services: Services, staff: Staff) -> dict[str, Any]:
    gw = services.gateway
    rep = await staff.create("sales")
    await services.accounts.create_user(
        "sam.s@staff.example.com", "support", team="north", password=PASSWORD,
        display_name="Samuel Staffordson",
    )  # fmt: skip
    grace = await gw.create(
        SEED, "contact", contact_values(**GRACE, phone="+44 20 7946 0001", notes="Likes tea.")
    )
    judith = await gw.create(SEED, "contact", contact_values(**JUDITH, notes="Met at a fair."))
    mine = await gw.create(
        SEED,
        "interaction",
        {
            "contact_id": grace.id,
            "channel": "meeting",
            "occurred_at": "2026-11-30T10:00:00+00:00",
            "participants": f"Grace's assistant Harriet Helper; Judith Hydeford; {rep.email}",
            "summary": "Discussed the renewal with judith hydeford (call her on "
            "020 7946 0777 or judith.hydeford@example.net). Grace will decide by Friday. "
            "Samuel Staffordson sends the offer.",
        },
    )
    theirs = await gw.create(
        SEED,
        "interaction",
        {
            "contact_id": judith.id,
            "channel": "phone_call",
            "occurred_at": "2026-12-01T09:00:00+00:00",
            "summary": "Judith asked about prices. Judith met Grace Auditwoman at the fair "
            "last week. Wants a call back.",
        },
    )
    return {"rep": rep, "grace": grace, "judith": judith, "mine": mine, "theirs": theirs}


async def test_export_withholds_other_people_and_shows_mentions_of_the_person(
    services: Services, staff: Staff
) -> None:
    w = await two_customers(services, staff)
    grace, judith, rep = w["grace"], w["judith"], w["rep"]
    bundle = await build_export(services, grace.subject_id, requested_by="system:test")
    files = unzip(bundle.zip_bytes)
    assert MENTIONS_FILE in files

    # No trace of Judith (name, e-mail, phone, record or subject id) in any file.
    for name, content in files.items():
        for trace in (*JUDITH_TRACES, judith.id.encode(), judith.subject_id.encode()):
            assert trace.lower() not in content.lower(), (name, trace)
        assert rep.email.encode() not in content, name  # staff: pseudonyms only
        assert b"Staffordson" not in content, name
        assert w["theirs"].id.encode() not in content, name  # the other record's id

    data = json.loads(files["data.json"])
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    (interaction,) = data["records"]["interaction"]
    assert interaction["participants"].startswith(
        "Grace's assistant Harriet Helper; [another person]; sales #"
    )
    assert re.fullmatch(
        re.escape(
            "Discussed the renewal with [another person] (call her on [another person] or "
            "[another person]). Grace will decide by Friday. support #"
        )
        + "[0-9a-f]{10} sends the offer.",
        interaction["summary"],
    )
    (contact,) = data["records"]["contact"]
    assert contact["first_name"] == "Grace"  # their own name stays

    # The Art. 15 section: withheld, why, and one record of one type.
    withheld = data["withheld"]
    assert "Art. 15(4)" in withheld["reason"]
    assert withheld["record_types"] == [
        {
            "record_type": "interaction",
            "label": "Interaction",
            "records": 1,
            "fields": ["Participants", "Summary"],
        }
    ]
    assert withheld["total"] == 1
    assert bundle.withheld == {"interaction": 1}
    html = files["index.html"].decode()
    assert "Other people&#39;s data we left out" in html or "Other people's data" in html
    assert "Interaction: other people withheld from 1 record (Participants, Summary)" in html

    # Judith's interaction mentions Grace: an excerpt, Judith withheld, no id.
    assert data["mentions"] == [
        {
            "record_type": "interaction",
            "label": "Interaction",
            "field": "summary",
            "field_label": "Summary",
            "date": data["mentions"][0]["date"],
            "excerpt": "[another person] met Grace Auditwoman at the fair last week.",
        }
    ]
    assert withheld["mentions"] == 1
    assert "[another person] met Grace Auditwoman at the fair last week." in html
    assert b"met Grace Auditwoman" in files[MENTIONS_FILE]

    report = verify_export(
        bundle.zip_bytes, TreeHeadVerifier([services.audit_trail.signer.public_key])
    )
    assert report.ok, report.problems

    # Audited: who was withheld and whose records were read, never a value.
    rows = await AuditRecord.select().where(
        AuditRecord.action.is_in(["withhold_third_party", "export_mention"])
    )
    assert {r["action"] for r in rows} == {"withhold_third_party", "export_mention"}
    for row in rows:
        assert judith.subject_id in row["subject_ids"]
        dumped = json.dumps(dict(row), default=str)
        assert "Judith" not in dumped
        assert "Grace" not in dumped


async def test_erasing_the_person_scrubs_exactly_the_mentions_their_export_showed(
    services: Services, staff: Staff
) -> None:
    w = await two_customers(services, staff)
    extra = await services.gateway.create(
        SEED,
        "case",
        {
            "contact_id": w["judith"].id,
            "kind": "complaint",
            "title": "Complaint",
            "description": "Nothing about anyone else. Call grace.a@example.org first!",
        },
    )
    bundle = await build_export(services, w["grace"].subject_id, requested_by="system:test")
    shown = json.loads(unzip(bundle.zip_bytes)["data.json"])["mentions"]
    assert sorted((m["record_type"], m["field"]) for m in shown) == [
        ("case", "description"),
        ("interaction", "summary"),
    ]
    assert [m["excerpt"] for m in shown if m["record_type"] == "case"] == [
        "Call grace.a@example.org first!"
    ]

    result = await services.erasure.erase(w["grace"].subject_id, by="system:test")
    assert result.complete
    assert result.mentions == len(shown) == 2
    erased = await AuditRecord.select().where(AuditRecord.action == "erase_mention")
    scrubbed = sorted((r["resource_type"], json.loads(r["fields"])[0]) for r in erased)
    assert scrubbed == sorted((m["record_type"], m["field"]) for m in shown)
    gw = services.gateway
    theirs = await gw.read(ADMIN, "interaction", w["theirs"].id, purpose="compliance")
    assert theirs.values["summary"] == (
        "Judith asked about prices. Judith met [erased] at the fair last week. Wants a call back."
    )
    case = await gw.read(ADMIN, "case", extra.id, purpose="compliance")
    assert case.values["description"] == "Nothing about anyone else. Call [erased] first!"


async def test_compliance_review_counts_withheld_data_without_values(
    services: Services, staff: Staff
) -> None:
    w = await two_customers(services, staff)
    summary = await review_redactions(
        services, w["grace"].subject_id, requested_by="user:1", requested_role="compliance"
    )
    assert [(t.record_type, t.records, t.fields) for t in summary.withheld] == [
        ("interaction", 1, ("Participants", "Summary"))
    ]
    assert (summary.mentions, summary.mentions_withheld) == (1, 1)
    assert dict(summary.mention_types) == {"interaction": 1}
    assert "Judith" not in repr(summary)
    (event,) = await AuditRecord.select().where(AuditRecord.action == "dsr.export_review")
    assert event["actor_id"] == "user:1"
    assert json.loads(event["detail"]) == {"withheld": 1, "mentions": 1}


def test_an_excerpt_is_the_sentences_that_mention_the_person() -> None:
    text = "First line. Judith met Grace here. Another one!\nGrace again\nlast"
    first = (text.index("Grace"), text.index("Grace") + 5)
    last = (text.rindex("Grace"), text.rindex("Grace") + 5)
    assert excerpt(text, [first]) == "Judith met Grace here."
    assert excerpt(text, [first, last]) == "Judith met Grace here. … Grace again"
    assert excerpt("a. b Grace c. d", [(5, 10)]) == "b Grace c."


@pytest.fixture
def settings(settings: Settings, smtp: LocalSmtp) -> Settings:
    """This module's services send mail (a release e-mails the person their link)."""
    return smtp.settings(settings)


async def test_officer_reviews_what_is_withheld_before_releasing_an_access_request(
    services: Services, staff: Staff, smtp: LocalSmtp
) -> None:
    w = await two_customers(services, staff)
    officer = await staff.create("compliance", email="olga.officer@staff.example.com")
    by = f"user:{officer.user_id}"
    logged = await services.requests.log(
        w["grace"].subject_id,
        "access",
        "phone",
        verification="phone_callback",
        by=by,
        contact_id=w["grace"].id,
    )
    request_id = logged.request.id
    for state in ("in_review", "approved"):
        await services.requests.transition(request_id, state, by=by)
    client = await web_login(staff, officer)

    detail = await client.get(f"/compliance/requests/{request_id}")
    assert "Review and release" in text_of(detail)
    assert "Mark fulfilled" not in text_of(detail)
    # The one-click route leads to the review instead of releasing.
    sneaky = await client.post(
        f"/compliance/requests/{request_id}/transition",
        data={"to_state": "fulfilled", "_csrf_token": csrf_of(detail)},
    )
    assert location(sneaky) == f"/compliance/requests/{request_id}/release"
    assert (await services.requests.get(request_id)).state == "approved"

    page = await client.get(f"/compliance/requests/{request_id}/release")
    assert page.status_code == 200
    shown = text_of(page)
    assert "Interaction 1 Participants, Summary" in shown
    assert "In all 1" in shown
    assert "The export includes 1 excerpt (Interaction: 1)" in shown
    assert "Other people are withheld from 1 of them." in shown
    for secret in ("Judith", "Hydeford", "judith.hydeford", "0777", "Auditwoman"):
        assert secret not in page.text

    # Other roles do not see the page at all.
    seller = await web_login(staff, w["rep"])
    assert (await seller.get(f"/compliance/requests/{request_id}/release")).status_code == 404

    released = await client.post(
        f"/compliance/requests/{request_id}/release",
        data={"_csrf_token": csrf_of(page)},
    )
    assert location(released) == f"/compliance/requests/{request_id}"
    assert (await services.requests.get(request_id)).state == "fulfilled"
    subjects = [m.message["Subject"] for m in smtp.received]
    assert "Your data is ready to download" in subjects


def test_the_review_step_can_be_switched_off() -> None:
    assert Settings.from_env({}).export_review is True
    assert Settings.from_env({"CONSENTRY_EXPORT_REVIEW": "false"}).export_review is False


def test_cli_export_withholds_and_verifies(
    install: Install,
    tmp_path: Path,
) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    forget_process_state()

    async def seed() -> str:
        await db.start()
        try:
            services = build_services(settings_module.get_settings())
            grace = await services.gateway.create(SEED, "contact", contact_values(**GRACE))
            judith = await services.gateway.create(SEED, "contact", contact_values(**JUDITH))
            for person, summary in (
                (grace, "Call with Judith Hydeford on 020 7946 0777."),
                (judith, "Judith met Grace Auditwoman."),
            ):
                await services.gateway.create(
                    SEED,
                    "interaction",
                    {
                        "contact_id": person.id,
                        "channel": "phone_call",
                        "occurred_at": "2026-12-01T09:00:00+00:00",
                        "summary": summary,
                    },
                )
            return grace.subject_id
        finally:
            await db.stop()

    subject = asyncio.run(seed())
    output = tmp_path / "export.zip"
    exported = consentry("dsr", "export", subject, "-o", str(output))
    assert exported.exit_code == 0, exported.output
    assert "other people withheld from: 1 interaction;" in exported.stdout
    assert "1 mention(s) of the person" in exported.stdout
    for name, content in unzip(output.read_bytes()).items():
        for trace in JUDITH_TRACES:
            assert trace.lower() not in content.lower(), (name, trace)
    verified = consentry("dsr", "verify-export", str(output))
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("export verifies: 5 files")


async def test_portal_download_withholds_other_people_too(
    web: AsyncClient, smtp: LocalSmtp, portal_services: Services
) -> None:
    gw = portal_services.gateway
    grace = await gw.create(SEED, "contact", contact_values(**GRACE))
    await gw.create(SEED, "contact", contact_values(**JUDITH))
    await gw.create(
        SEED,
        "interaction",
        {
            "contact_id": grace.id,
            "channel": "email",
            "occurred_at": "2026-12-01T09:00:00+00:00",
            "participants": "Judith Hydeford",
            "summary": "Judith Hydeford (judith.hydeford@example.net) forwarded the quote.",
        },
    )
    await signed_in(web, smtp, grace)
    response = await press(web, "/portal/home", "/portal/download")
    assert response.status_code == 200
    files = unzip(response.content)
    for name, content in files.items():
        for trace in JUDITH_TRACES:
            assert trace.lower() not in content.lower(), (name, trace)
    data = json.loads(files["data.json"])
    assert data["records"]["interaction"][0]["summary"] == (
        "[another person] ([another person]) forwarded the quote."
    )
    assert data["withheld"]["total"] == 1


def test_the_shared_matcher_finds_names_addresses_and_numbers_in_any_notation() -> None:
    judith = Identity(
        ("Judith Hydeford", "judith.h@example.net", "Judith"), frozenset({"+442079460777"})
    )
    matcher = Matcher([judith], "GB")
    text = "JUDITH  hydeford, 020-7946-0777, (020) 7946 0777, judith.h@example.net; Judithson."
    redacted, count = matcher.replace(text, "[x]")
    assert redacted == "[x], [x], [x], [x]; Judithson."
    assert count == 4
    # A text whose digits hold no known number is never handed to the phone matcher.
    assert matcher.spans("Order 2026-12-01, ref 7946") == []


def test_the_matcher_finds_names_written_without_their_accents() -> None:
    jose = Identity(("José Núñez", "José", "Núñez", "Siobhán O'Brien"), frozenset())
    matcher = Matcher([jose], "GB")
    text = "Met JOSE NUNEZ, jose, Jose\u0301 and nunez's wife; O\u2019Brien? "
    text += "Siobhan O\u2019Brien. Josef."
    redacted, count = matcher.replace(text, "[x]")
    assert redacted == "Met [x], [x], [x] and [x]'s wife; O\u2019Brien? [x]. Josef."
    assert count == 5
    # And the other way round: a name stored without accents, typed with them.
    assert Matcher([Identity(("Zoe Angstrom",))], "GB").replace("Zoë  Ångström.", "[x]") == (
        "[x].",
        1,
    )


async def test_names_typed_without_accents_are_withheld_shown_and_erased_alike(
    services: Services,
) -> None:
    gw = services.gateway
    zoe = await gw.create(
        SEED,
        "contact",
        contact_values(first_name="Zoë", last_name="Ångström", phone="+44 20 7946 0101"),
    )
    jose = await gw.create(
        SEED,
        "contact",
        contact_values(first_name="José", last_name="Núñez", phone="+44 20 7946 0102"),
    )
    for person, summary in (
        (zoe, "Lunch with Jose Nunez. He pays."),
        (jose, "Asked for a discount. NUNEZ met Zoe Angstrom on Monday."),
    ):
        await gw.create(
            SEED,
            "interaction",
            {
                "contact_id": person.id,
                "channel": "meeting",
                "occurred_at": "2026-12-01T09:00:00+00:00",
                "summary": summary,
            },
        )
    bundle = await build_export(services, zoe.subject_id, requested_by="system:test")
    files = unzip(bundle.zip_bytes)
    for name, content in files.items():
        for trace in ("Jose", "Nunez", "José", "Núñez"):
            assert trace.lower().encode() not in content.lower(), (name, trace)
    data = json.loads(files["data.json"])
    assert data["records"]["interaction"][0]["summary"] == "Lunch with [another person]. He pays."
    assert [m["excerpt"] for m in data["mentions"]] == [
        "[another person] met Zoe Angstrom on Monday."
    ]

    result = await services.erasure.erase(zoe.subject_id, by="system:test")
    assert result.mentions == 1
    (theirs,) = [
        r for r in await gw.export_subject(ADMIN, jose.subject_id, purpose="compliance")
        if r.resource == "interaction"
    ]  # fmt: skip
    assert theirs.values["summary"] == "Asked for a discount. NUNEZ met [erased] on Monday."


async def test_consent_evidence_typed_by_staff_withholds_other_people(
    services: Services, staff: Staff
) -> None:
    """A staff member recording a consent given by phone can type a call reference; the
    one they typed names the person's daughter, another customer."""
    gw = services.gateway
    grace = await gw.create(SEED, "contact", contact_values(**GRACE))
    await gw.create(SEED, "contact", contact_values(**JUDITH))
    notice = await services.consent.publish_notice("Newsletter", "We write.", by="user:1")
    await services.consent.grant(
        grace.subject_id,
        "marketing_email",
        "email",
        source="phone",
        notice_version=notice.version,
        actor_id="user:1",
        evidence={"reference": "call:Judith.Hydeford-2026-118"},
    )
    bundle = await build_export(services, grace.subject_id, requested_by="system:test")
    files = unzip(bundle.zip_bytes)
    for name, content in files.items():
        for trace in JUDITH_TRACES:
            assert trace.lower() not in content.lower(), (name, trace)
    data = json.loads(files["data.json"])
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    (event,) = data["consents"]["events"]
    assert event["evidence"]["reference"] == "call:[another person].[another person]-2026-118"
    assert data["withheld"]["total"] == 1
    assert [t["label"] for t in data["withheld"]["record_types"]] == ["Consent event"]


async def test_another_person_whose_names_are_all_short_is_withheld(services: Services) -> None:
    """Li Wu's first and last name are two letters each: no name-search prefix token, but
    their full name is what erasing them would scrub, so a copy must not show it."""
    gw = services.gateway
    grace = await gw.create(SEED, "contact", contact_values(**GRACE))
    await gw.create(
        SEED,
        "contact",
        contact_values(first_name="Li", last_name="Wu", email=None, phone="+44 20 7946 0103"),
    )
    await gw.create(
        SEED,
        "interaction",
        {
            "contact_id": grace.id,
            "channel": "meeting",
            "occurred_at": "2026-12-01T09:00:00+00:00",
            "summary": "Came with her business partner LI WU. Li is a nice name.",
        },
    )
    bundle = await build_export(services, grace.subject_id, requested_by="system:test")
    data = json.loads(unzip(bundle.zip_bytes)["data.json"])
    assert data["records"]["interaction"][0]["summary"] == (
        "Came with her business partner [another person]. Li is a nice name."
    )
    assert data["withheld"]["total"] == 1


def test_the_matcher_finds_numbers_without_prefix_glued_or_in_their_own_notation() -> None:
    matcher = Matcher([Identity((), frozenset({"+447911123456", "+12025550143"}))], "GB")
    text = (
        "Mob07911123456, 7911123456, 07911 123456x; US office (202) 555-0143, "
        "1-202-555-0143, 202.555.0143. Order 79111234567 and 2025550143999 are not them."
    )
    redacted, count = matcher.replace(text, "[x]")
    assert redacted == (
        "Mob[x], [x], [x]x; US office [x], [x], [x]. "
        "Order 79111234567 and 2025550143999 are not them."
    )
    assert count == 6


async def test_numbers_in_other_notations_are_withheld(services: Services) -> None:
    gw = services.gateway
    grace = await gw.create(SEED, "contact", contact_values(**GRACE))
    await gw.create(SEED, "contact", contact_values(**JUDITH))
    await gw.create(
        SEED,
        "contact",
        contact_values(first_name="Ulysses", last_name="Smithfield", phone="+1 202 555 0143"),
    )
    await gw.create(
        SEED,
        "interaction",
        {
            "contact_id": grace.id,
            "channel": "meeting",
            "occurred_at": "2026-12-01T09:00:00+00:00",
            "summary": "Her daughter: tel.02079460777 or 2079460777. "
            "The US office: 1-202-555-0143, direct (202) 555-0143.",
        },
    )
    bundle = await build_export(services, grace.subject_id, requested_by="system:test")
    data = json.loads(unzip(bundle.zip_bytes)["data.json"])
    assert data["records"]["interaction"][0]["summary"] == (
        "Her daughter: tel.[another person] or [another person]. "
        "The US office: [another person], direct [another person]."
    )


async def test_other_peoples_record_and_subject_ids_in_text_are_withheld(
    services: Services,
) -> None:
    """Staff paste links to records into notes: a link to another person's record is
    their id, which neither the person's copy nor an excerpt may give."""
    gw = services.gateway
    grace = await gw.create(SEED, "contact", contact_values(**GRACE))
    judith = await gw.create(SEED, "contact", contact_values(**JUDITH))
    link = f"https://crm.example.com/contacts/{judith.id.upper()}"
    for person, summary in (
        (grace, f"Maybe the same family as {link}; her own page /contacts/{grace.id}."),
        (judith, f"See {link} (subject {judith.subject_id}): she met Grace Auditwoman."),
    ):
        await gw.create(
            SEED,
            "interaction",
            {
                "contact_id": person.id,
                "channel": "meeting",
                "occurred_at": "2026-12-01T09:00:00+00:00",
                "summary": summary,
            },
        )
    bundle = await build_export(services, grace.subject_id, requested_by="system:test")
    files = unzip(bundle.zip_bytes)
    for name, content in files.items():
        for trace in (judith.id, judith.subject_id):
            assert trace.encode() not in content.lower(), (name, trace)
    data = json.loads(files["data.json"])
    assert data["records"]["interaction"][0]["summary"] == (
        "Maybe the same family as https://crm.example.com/contacts/[another person]; "
        f"her own page /contacts/{grace.id}."
    )
    assert [m["excerpt"] for m in data["mentions"]] == [
        "See https://crm.example.com/contacts/[another person] (subject [another person]): "
        "she met Grace Auditwoman."
    ]
    assert data["withheld"]["total"] == 1


async def test_a_person_who_is_also_staff_keeps_their_own_name_in_their_copy(
    services: Services,
) -> None:
    """Grace works for us and buys from us: in her own copy her name is hers, not the
    pseudonym of a member of staff (withholding it would withhold her own data)."""
    await services.accounts.create_user(
        "grace.a@example.org", "sales", password=PASSWORD, display_name="Grace Auditwoman"
    )
    gw = services.gateway
    grace = await gw.create(SEED, "contact", contact_values(**GRACE))
    await gw.create(
        SEED,
        "interaction",
        {
            "contact_id": grace.id,
            "channel": "store_visit",
            "occurred_at": "2026-12-01T09:00:00+00:00",
            "summary": "Grace Auditwoman (grace.a@example.org) bought a kettle.",
        },
    )
    bundle = await build_export(services, grace.subject_id, requested_by="system:test")
    data = json.loads(unzip(bundle.zip_bytes)["data.json"])
    assert data["records"]["interaction"][0]["summary"] == (
        "Grace Auditwoman (grace.a@example.org) bought a kettle."
    )
    assert data["withheld"]["total"] == 0


def test_the_matcher_finds_double_barrelled_names_with_any_dash_or_space() -> None:
    anna = Identity(("Anna Smith-Jones", "Smith-Jones", "Anna"), frozenset())
    text = "Smith Jones, SMITH\u2013JONES, Smith - Jones, Anna Smith\nJones; Smithjones; Jones."
    assert Matcher([anna], "GB").replace(text, "[x]") == (
        "[x], [x], [x], [x]; Smithjones; Jones.",
        4,
    )


async def test_a_double_barrelled_name_written_with_a_space_is_withheld(
    services: Services,
) -> None:
    gw = services.gateway
    grace = await gw.create(SEED, "contact", contact_values(**GRACE))
    await gw.create(
        SEED,
        "contact",
        contact_values(first_name="Anna", last_name="Smith-Jones", phone="+44 20 7946 0104"),
    )
    await gw.create(
        SEED,
        "interaction",
        {
            "contact_id": grace.id,
            "channel": "meeting",
            "occurred_at": "2026-12-01T09:00:00+00:00",
            "summary": "Mrs Smith Jones joined us.",
        },
    )
    bundle = await build_export(services, grace.subject_id, requested_by="system:test")
    data = json.loads(unzip(bundle.zip_bytes)["data.json"])
    assert data["records"]["interaction"][0]["summary"] == "Mrs [another person] joined us."


async def test_an_address_inside_another_address_is_no_mention(services: Services) -> None:
    """smith@ is not john.smith@: the other person's record is not the person's to see, and
    erasing the person must not cut the other person's address in half."""
    gw = services.gateway
    shared = await gw.create(
        SEED,
        "contact",
        contact_values(first_name="Petra", last_name="Quist", email="smith@acme.example"),
    )
    john = await gw.create(
        SEED,
        "contact",
        contact_values(first_name="John", last_name="Smithers", email="john.smith@acme.example"),
    )
    theirs = await gw.create(
        SEED,
        "interaction",
        {
            "contact_id": john.id,
            "channel": "email",
            "occurred_at": "2026-12-01T09:00:00+00:00",
            "summary": "Sent the contract to john.smith@acme.example and "
            "smith@acme.example.org; ill since May.",
        },
    )
    bundle = await build_export(services, shared.subject_id, requested_by="system:test")
    assert json.loads(unzip(bundle.zip_bytes)["data.json"])["mentions"] == []
    result = await services.erasure.erase(shared.subject_id, by="system:test")
    assert result.mentions == 0
    after = await gw.read(ADMIN, "interaction", theirs.id, purpose="compliance")
    assert after.values["summary"].startswith("Sent the contract to john.smith@acme.example and")


async def test_a_link_to_another_persons_record_is_withheld(services: Services) -> None:
    """A meeting with Grace about Judith's deal: the deal is Judith's, and its id is not
    Grace's to have (her organization is hers: it stays)."""
    gw = services.gateway
    org = await gw.create(SEED, "organization", {"name": "Acme Widgets"})
    grace = await gw.create(SEED, "contact", contact_values(**GRACE, organization_id=org.id))
    judith = await gw.create(SEED, "contact", contact_values(**JUDITH))
    deal = await gw.create(
        SEED,
        "deal",
        {"contact_id": judith.id, "title": "Fleet", "amount": 5, "currency": "EUR"},
    )
    await gw.create(
        SEED,
        "interaction",
        {
            "contact_id": grace.id,
            "channel": "meeting",
            "occurred_at": "2026-12-01T09:00:00+00:00",
            "deal_id": deal.id,
            "summary": "About the fleet.",
        },
    )
    bundle = await build_export(services, grace.subject_id, requested_by="system:test")
    files = unzip(bundle.zip_bytes)
    for name, content in files.items():
        assert deal.id.encode() not in content, name
    data = json.loads(files["data.json"])
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    assert data["records"]["interaction"][0]["deal_id"] == "[another person]"
    assert data["records"]["contact"][0]["organization_id"] == org.id
    assert "Acme Widgets" in files["index.html"].decode()
    assert data["withheld"]["record_types"] == [
        {"record_type": "interaction", "label": "Interaction", "records": 1, "fields": ["Deal"]}
    ]
