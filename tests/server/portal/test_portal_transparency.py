"""The person's side of the audit trail: "who looked at my data" with proofs, receipts.

Every proof and receipt a test downloads is checked with ``audit/standalone_verify.py``
(the auditor's own verifier, sharing no code with the server) and the public key served
by the portal, as the how-to page tells the person to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from litestar import Litestar

from audit import standalone_verify
from audit.tables import AuditRecord
from server.app import create_app
from server.dsr.third_parties import pseudonym_key, staff_pseudonym
from server.gateway import Actor, Record
from server.services import Services, build_services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, text_of
from tests.conftest import Staff, contact_values, http_client
from tests.server.consent.test_consent import publish
from tests.server.portal.test_portal import email_of, signed_in, staff_fulfilled_access
from tests.server.test_mail import LocalSmtp, local_smtp

RECEIPT_BLOCK = re.compile(
    r"-----BEGIN CONSENTRY RECEIPT-----\n(.*?)\n-----END CONSENTRY RECEIPT-----", re.S
)


@pytest.fixture
def smtp() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture
def portal_services(settings: Settings, smtp: LocalSmtp) -> Services:
    return build_services(smtp.settings(settings, public_url="http://testserver"))


@pytest.fixture
def portal_app(portal_services: Services) -> Litestar:
    return create_app(portal_services.settings, portal_services)


@pytest.fixture
async def web(portal_app: Litestar) -> AsyncIterator[AsyncClient]:
    async with http_client(portal_app) as client:
        yield client


@pytest.fixture
async def team(portal_services: Services, portal_app: Litestar) -> AsyncIterator[Staff]:
    helper = Staff(portal_services, portal_app)
    yield helper
    for client in helper.clients:
        await client.aclose()


async def new_person(services: Services, actor: Actor, **values: Any) -> Record:
    chosen = {k: v for k, v in contact_values(**values).items() if v is not None}
    return await services.gateway.create(actor, "contact", chosen)


async def download(web: AsyncClient, page: str, action: str) -> Any:
    """Press a download button of ``page``; the JSON document it serves."""
    opened = await web.get(page)
    assert opened.status_code == 200, opened.text[:300]
    response = await web.post(action, data={"_csrf_token": csrf_of(opened)})
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    return response.json()


async def standalone(web: AsyncClient, tmp_path: Path, document: Any) -> int:
    """Run the standalone verifier on ``document`` with the key the portal publishes."""
    key = await web.get("/portal/public-key")
    assert key.status_code == 200
    key_file, doc_file = tmp_path / "consentry-audit.pub", tmp_path / "proofs.json"
    key_file.write_bytes(key.content)
    doc_file.write_text(json.dumps(document))
    return standalone_verify.main(["--proofs", str(doc_file), "--public-key", str(key_file)])


async def test_a_sales_reps_read_is_listed_under_a_pseudonym_and_its_proof_verifies(
    web: AsyncClient,
    smtp: LocalSmtp,
    team: Staff,
    portal_services: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rep = await team.create("sales", email="rep.jones@staff.example.com")
    person = await new_person(
        portal_services, team.actor(rep), first_name="Philomena", birth_date=None
    )
    await signed_in(web, smtp, person)
    # The rep opens the person's record through the API, as the admin does.
    client = await team.login(rep)
    assert (await client.get(f"/api/v1/contacts/{person.id}")).status_code == 200
    [read] = await AuditRecord.select().where(
        (AuditRecord.action == "read") & (AuditRecord.actor_id == f"user:{rep.user_id}")
    )

    page = await web.get("/portal/access")  # the very next page load
    assert page.status_code == 200
    text = text_of(page)
    pseudonym = staff_pseudonym(pseudonym_key(portal_services.gateway.vault), f"user:{rep.user_id}")
    row = next(line for line in text.splitlines() if f"#{read['seq']} proof" in line)
    assert f"sales #{pseudonym}" in row
    assert "Looked at your record" in row
    assert "rep.jones" not in page.text
    assert f"user:{rep.user_id}" not in page.text
    # Reading the page is itself audited, under the person.
    [viewed] = await AuditRecord.select().where(AuditRecord.action == "portal.access_log")
    assert (viewed["actor_id"], viewed["actor_role"]) == ("subject", "data_subject")
    assert person.subject_id in viewed["subject_ids"]

    one = await download(web, "/portal/access", f"/portal/access/{read['seq']}/proof")
    assert [p["seq"] for p in one["proofs"]] == [read["seq"]]
    assert one["proofs"][0]["hash"] == read["hash"]
    assert "user:" not in json.dumps(one)  # staff appear by pseudonym only
    assert await standalone(web, tmp_path, one) == 0
    assert "verified: 1 events" in capsys.readouterr().out

    everything = await download(web, "/portal/access", "/portal/access/proofs")
    seqs = {p["seq"] for p in everything["proofs"]}
    assert read["seq"] in seqs
    assert viewed["seq"] in seqs
    assert everything["unsealed"] == []
    assert await standalone(web, tmp_path, everything) == 0
    capsys.readouterr()

    # A proof that does not lead to the signed head is caught.
    forged = json.loads(json.dumps(one))
    forged["proofs"][0]["hash"] = "0" * 64
    assert await standalone(web, tmp_path, forged) == 1
    assert "not in the signed log" in capsys.readouterr().out


async def test_a_proof_for_another_persons_event_cannot_be_obtained(
    web: AsyncClient, smtp: LocalSmtp, portal_services: Services
) -> None:
    seed = Actor.system("test-seed")
    me = await new_person(portal_services, seed)
    other = await new_person(portal_services, seed)
    await portal_services.gateway.read(Actor.system("test-reader"), "contact", other.id)
    [theirs] = await AuditRecord.select().where(
        (AuditRecord.action == "read") & (AuditRecord.resource_id == other.id)
    )
    newest = await AuditRecord.select(AuditRecord.seq).order_by(AuditRecord.seq, ascending=False)
    await signed_in(web, smtp, me)
    page = await web.get("/portal/access")
    assert f"/portal/access/{theirs['seq']}/proof" not in page.text
    token = csrf_of(page)
    refused = await web.post(f"/portal/access/{theirs['seq']}/proof", data={"_csrf_token": token})
    missing = await web.post(
        f"/portal/access/{newest[0]['seq'] + 1000}/proof", data={"_csrf_token": token}
    )
    assert refused.status_code == missing.status_code == 404
    assert text_of(refused) == text_of(missing)  # someone else's event does not exist
    for bad in ("0", "-3", str(2**70), "abc"):
        answer = await web.post(f"/portal/access/{bad}/proof", data={"_csrf_token": token})
        assert answer.status_code in (400, 404), bad
    assert (await web.get(f"/portal/access?before={2**70}")).status_code in (200, 400)
    assert (await web.get("/portal/access?before=x")).status_code == 400
    everything = await download(web, "/portal/access", "/portal/access/proofs")
    assert theirs["seq"] not in {p["seq"] for p in everything["proofs"]}
    # Signed out, nothing at all.
    web.cookies.clear()
    assert (await web.get("/portal/access")).status_code == 303


async def test_a_consent_change_and_an_answered_request_have_signed_receipts(
    web: AsyncClient,
    smtp: LocalSmtp,
    portal_services: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    consent = portal_services.consent
    version = await publish(consent)
    person = await new_person(portal_services, Actor.system("test-seed"))
    other = await new_person(portal_services, Actor.system("test-seed"))
    granted = await consent.grant(
        person.subject_id, "marketing_email", "email",
        source="web_form", notice_version=version, actor_id="subject",
    )  # fmt: skip
    theirs = await consent.grant(
        other.subject_id, "marketing_email", "email",
        source="web_form", notice_version=version, actor_id="subject",
    )  # fmt: skip
    request_id = await staff_fulfilled_access(portal_services, person)
    await signed_in(web, smtp, person)

    page = await web.get("/portal/receipts")
    assert page.status_code == 200
    assert f"/portal/receipts/consent/{granted.id}" in page.text
    assert f"/portal/receipts/consent/{theirs.id}" not in page.text
    assert f"/portal/receipts/request/{request_id}" in page.text

    receipt = await download(web, "/portal/receipts", f"/portal/receipts/consent/{granted.id}")
    assert receipt["format"] == "consentry-receipt/1"
    assert receipt["what"] == "Consent given: purpose marketing_email, channel email"
    assert receipt["subject_id"] == person.subject_id
    [event] = receipt["audit_events"]
    assert event["action"] == "consent.grant"
    assert await standalone(web, tmp_path, receipt) == 0
    assert "receipt (signature verified)" in capsys.readouterr().out
    # A receipt altered after signing fails, however plausible the change.
    altered = {**receipt, "what": "Consent withdrawn: purpose marketing_email, channel email"}
    assert await standalone(web, tmp_path, altered) == 1
    assert "signature does not verify" in capsys.readouterr().out

    answered = await download(web, "/portal/receipts", f"/portal/receipts/request/{request_id}")
    assert answered["request"] == request_id
    actions = [e["action"] for e in answered["audit_events"]]
    assert "dsr.log" in actions
    assert "dsr.fulfil" in actions
    assert await standalone(web, tmp_path, answered) == 0

    # Someone else's consent change or request: not found, like one that does not exist.
    token = csrf_of(page)
    for path in (
        f"/portal/receipts/consent/{theirs.id}",
        "/portal/receipts/consent/999999",
        "/portal/receipts/request/not-a-request",
    ):
        assert (await web.post(path, data={"_csrf_token": token})).status_code == 404
    downloads = await AuditRecord.select().where(AuditRecord.action == "portal.receipt")
    assert [(d["actor_id"], d["reason"]) for d in downloads] == [
        ("subject", "consent_receipt"),
        ("subject", "request_receipt"),
    ]


async def test_the_erasure_receipt_is_emailed_to_the_address_before_it_is_gone(
    web: AsyncClient,
    smtp: LocalSmtp,
    portal_services: Services,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    requests = portal_services.requests
    person = await new_person(portal_services, Actor.system("test-seed"))
    logged = await requests.log(
        person.subject_id, "erasure", "phone",
        verification="phone_callback", by="user:7", contact_id=person.id,
    )  # fmt: skip
    for state in ("in_review", "approved", "fulfilled"):
        await requests.transition(logged.request.id, state, by="user:7")
    mails = [m for m in smtp.received if "BEGIN CONSENTRY RECEIPT" in m.text]
    assert len(mails) == 1
    assert mails[0].recipients == [email_of(person)]
    match = RECEIPT_BLOCK.search(mails[0].text.replace("\r\n", "\n"))
    assert match
    receipt = json.loads(match.group(1))
    assert receipt["kind"] == "erasure"
    assert receipt["request"] == logged.request.id
    assert "dsr.erase" in [e["action"] for e in receipt["audit_events"]]
    assert await standalone(web, tmp_path, receipt) == 0
    assert "receipt (signature verified)" in capsys.readouterr().out
    # The erasure was finished before the receipt went out: the address is gone now.
    job = await portal_services.erasure.job_for_subject(person.subject_id)
    assert job is not None
    assert job.complete
    assert not await portal_services.gateway.vault.holds_key(person.subject_id)


async def test_the_access_page_is_paginated_newest_first(
    web: AsyncClient, smtp: LocalSmtp, portal_services: Services
) -> None:
    person = await new_person(portal_services, Actor.system("test-seed"))
    reader = Actor.system("test-reader")
    for _ in range(30):
        await portal_services.gateway.read(reader, "contact", person.id)
    await signed_in(web, smtp, person)
    first = await web.get("/portal/access")
    seqs = [int(s) for s in re.findall(r"/portal/access/(\d+)/proof", first.text)]
    assert len(seqs) == 25
    assert seqs == sorted(seqs, reverse=True)
    older = re.search(r'href="(/portal/access\?before=(\d+))"', first.text)
    assert older
    assert int(older.group(2)) == seqs[-1]
    second = await web.get(older.group(1))
    rest = [int(s) for s in re.findall(r"/portal/access/(\d+)/proof", second.text)]
    assert rest
    assert max(rest) < min(seqs)
    assert rest == sorted(rest, reverse=True)
    assert 'href="/portal/access"' in second.text  # back to the newest
    # Every event naming the person, over the two pages (plus the views themselves).
    about = await AuditRecord.count().where(
        AuditRecord.subject_ids.like(f'%"{person.subject_id}"%')
    )
    assert len(seqs) + len(rest) == about - 1  # the second view came after the first page


async def test_an_erasure_is_fulfilled_even_when_its_receipt_cannot_be_built(
    smtp: LocalSmtp, portal_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(seqs: Any) -> dict[str, Any]:
        raise OSError("the signing key went away")

    monkeypatch.setattr(portal_services.audit_trail, "inclusion_proofs", broken)
    requests = portal_services.requests
    person = await new_person(portal_services, Actor.system("test-seed"))
    logged = await requests.log(
        person.subject_id, "erasure", "phone",
        verification="phone_callback", by="user:7", contact_id=person.id,
    )  # fmt: skip
    for state in ("in_review", "approved", "fulfilled"):
        done = await requests.transition(logged.request.id, state, by="user:7")
    assert done.request.state == "fulfilled"
    [mail] = [m for m in smtp.received if "fulfilled" in m.text]
    assert "could not attach your signed receipt" in mail.text
    assert "BEGIN CONSENTRY RECEIPT" not in mail.text
