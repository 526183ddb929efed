"""The consent engine: double opt-in over real SMTP, one-click withdrawal, objections,
expiry, proof, and the ledger's guarantees at the database level."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from httpx import AsyncClient
from litestar import Litestar

from server.app import create_app
from server.consent.model import ConsentError, LinkInvalid
from server.consent.service import ConsentEngine, content_hash
from server.gateway import Actor
from server.gateway.tables import Contact
from server.services import Services, build_services
from server.settings import Settings
from tests.conftest import ENGINE, contact_values, http_client, owner_url
from tests.dbutil import raw_sql
from tests.server.test_mail import LocalSmtp, local_smtp

DATABASE_ERRORS = (sqlite3.DatabaseError, asyncpg.PostgresError)
PERSON = {
    "first_name": "Philippa",
    "last_name": "Quernmoor",
    "email": "philippa.quernmoor@example.net",
}
CLIENT_IP = "203.0.113.77"
NOTICE_TEXT = "We send our newsletter monthly. You can unsubscribe at any time."
CONSENT_TABLES = ("consent_purpose", "privacy_notice", "consent_event", "consent_state")
LINK = re.compile(r"http://testserver(/consent/(?:confirm|withdraw)/\S+)")
SYSTEM = Actor.system("test")


@pytest.fixture
def smtp() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture
def consent_services(settings: Settings, smtp: LocalSmtp) -> Services:
    """Services whose mailer talks to the local SMTP server; links point at the test app."""
    return build_services(smtp.settings(settings, public_url="http://testserver"))


@pytest.fixture
def consent_app(consent_services: Services) -> Litestar:
    return create_app(consent_services.settings, consent_services)


@pytest.fixture
async def web(consent_app: Litestar) -> AsyncIterator[AsyncClient]:
    async with http_client(consent_app) as client:
        yield client


@pytest.fixture
def consent(consent_services: Services) -> ConsentEngine:
    return consent_services.consent


async def new_subject(services: Services, **values: Any) -> str:
    record = await services.gateway.create(SYSTEM, "contact", contact_values(**values))
    return record.subject_id


async def why(consent: ConsentEngine, *args: Any, **kw: Any) -> tuple[bool, str]:
    """``has_basis`` as (ok, reason), for comparing."""
    basis = await consent.has_basis(*args, **kw)
    return basis.ok, basis.reason


async def publish(consent: ConsentEngine) -> int:
    notice = await consent.publish_notice("Newsletter notice", NOTICE_TEXT, by="user:1")
    return notice.version


async def grant(consent: ConsentEngine, subject: str, purpose: str, **kw: Any) -> None:
    notice = await consent.current_notice()
    assert notice is not None
    await consent.grant(
        subject, purpose, source="staff", notice_version=notice.version, actor_id="user:1", **kw
    )


async def test_double_opt_in_then_one_click_withdrawal_with_proof(
    consent_services: Services,
    consent: ConsentEngine,
    smtp: LocalSmtp,
    web: AsyncClient,
    database_url: str,
) -> None:
    subject = await new_subject(consent_services, **PERSON)
    version = await publish(consent)

    result = await consent.request_double_opt_in(
        subject,
        PERSON["email"],
        "marketing_email",
        notice_version=version,
        source="web_form",
        evidence={"form_id": "footer-newsletter", "ip": CLIENT_IP, "user_agent": "Mozilla/5.0"},
    )
    assert result.mail_status == "sent"
    [mail] = smtp.received
    assert mail.recipients == [PERSON["email"]]
    confirm_path, withdraw_path = LINK.findall(mail.text)
    assert confirm_path.startswith("/consent/confirm/")
    assert withdraw_path.startswith("/consent/withdraw/")
    assert await why(consent, subject, "marketing_email") == (False, "no_consent")

    # A mail scanner fetching the link confirms nothing: the page asks for a button press.
    page = await web.get(confirm_path)
    assert page.status_code == 200
    assert '<form method="post">' in page.text
    assert "set-cookie" not in page.headers  # no CSRF cookie: the token is the credential
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert not (await consent.has_basis(subject, "marketing_email")).ok

    done = await web.post(confirm_path)
    assert done.status_code == 200
    assert "Your consent is confirmed" in done.text
    basis = await consent.has_basis(subject, "marketing_email", "email")
    assert basis.ok
    assert basis.reason == "consent_granted"
    audience = await consent.subjects_with_basis("marketing_email")
    assert await audience.admits(subject)
    assert await consent.audience_size("marketing_email") == 1
    # The gateway filters its own tables with the same sub-select.
    assert await Contact.count().where(audience.where(Contact.subject_id)) == 1

    # One click, as a mail client's RFC 8058 unsubscribe does it (no cookie, no CSRF token).
    unsubscribe = await web.post(
        withdraw_path,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert unsubscribe.status_code == 200
    assert "Consent withdrawn" in unsubscribe.text
    assert await why(consent, subject, "marketing_email") == (False, "withdrawn")
    audience = await consent.subjects_with_basis("marketing_email")
    assert not await audience.admits(subject)
    assert await Contact.count().where(audience.where(Contact.subject_id)) == 0
    # ... idempotent: a second click records nothing more.
    assert (await web.post(withdraw_path)).status_code == 200

    proof = await consent.proof(subject, actor_id="user:1")
    assert [e["kind"] for e in proof["events"]] == ["granted", "withdrawn"]
    granted, withdrawn = proof["events"]
    assert granted["notice_version"] == version
    assert granted["notice"]["text"] == NOTICE_TEXT
    assert granted["notice"]["content_hash"] == content_hash(NOTICE_TEXT)
    assert granted["evidence"]["double_opt_in"] is True
    assert granted["evidence"]["form_id"] == "footer-newsletter"
    assert granted["evidence"]["ip_hash"] == consent.ip_hash(CLIENT_IP)
    assert granted["source"] == "web_form"
    assert granted["actor"] == "subject"
    assert withdrawn["source"] == "email_link"
    assert proof["state"] == [
        {
            "purpose": "marketing_email",
            "channel": "email",
            "state": "withdrawn",
            "since": withdrawn["occurred_at"],
            "expires_at": None,
        }
    ]

    # Every ledger write has its audit event, naming the subject and purpose (no values).
    ledger = await raw_sql(database_url, "SELECT id, kind FROM consent_event ORDER BY id")
    audit = await raw_sql(
        database_url,
        "SELECT action, resource_id, subject_ids, purpose FROM audit "
        "WHERE resource_type = 'consent' ORDER BY seq",
    )
    writes = [a for a in audit if a["action"] in {"consent.grant", "consent.withdraw"}]
    assert [(a["action"], a["resource_id"]) for a in writes] == [
        ("consent.grant", str(ledger[0]["id"])),
        ("consent.withdraw", str(ledger[1]["id"])),
    ]
    assert all(a["subject_ids"] == f'["{subject}"]' for a in writes)
    assert all(a["purpose"] == "marketing_email" for a in writes)
    assert [a["action"] for a in audit] == [
        "consent.optin_request",
        "consent.grant",
        "consent.withdraw",
        "consent.export",
    ]

    # No name, address or IP in any consent table, the token table or the audit log.
    dumped = ""
    for table in (*CONSENT_TABLES, "consent_token", "audit"):
        dumped += repr(await raw_sql(database_url, f"SELECT * FROM {table}"))
    for value in [*PERSON.values(), CLIENT_IP]:
        assert value not in dumped
    assert confirm_path.rsplit("/", 1)[1] not in dumped  # the token is stored hashed


async def test_an_objection_to_direct_marketing_beats_every_older_grant(
    consent_services: Services, consent: ConsentEngine
) -> None:
    objector = await new_subject(consent_services)
    other = await new_subject(consent_services)
    await publish(consent)
    for subject in (objector, other):
        await grant(consent, subject, "marketing_email")
        await grant(consent, subject, "marketing_phone", channel="phone")
        await grant(consent, subject, "profiling")
        await grant(consent, subject, "third_party_sharing")

    await consent.object(objector, source="phone", actor_id="user:1")

    for purpose in ("marketing_email", "marketing_phone", "profiling", "third_party_sharing"):
        assert await why(consent, objector, purpose) == (False, "objected")
        assert (await consent.has_basis(other, purpose)).ok
        audience = await consent.subjects_with_basis(purpose)
        assert await audience.subject_ids() == {other}
    # Service messages rest on the contract, which a marketing objection does not touch.
    assert await why(consent, objector, "service_communication") == (True, "contract")
    # A new grant after the objection does not lift it either.
    await grant(consent, objector, "marketing_email")
    assert await why(consent, objector, "marketing_email") == (False, "objected")


async def test_objection_to_legitimate_interest_processing_is_enforced(
    consent_services: Services, consent: ConsentEngine, database_url: str
) -> None:
    await consent.update_purpose(
        "profiling", {"legal_basis": "legitimate_interests"}, by="user:7", by_role="compliance"
    )
    objector = await new_subject(consent_services)
    other = await new_subject(consent_services)
    assert await why(consent, objector, "profiling") == (True, "legitimate_interests")

    await consent.object(objector, "profiling", source="portal", actor_id="subject")

    assert await why(consent, objector, "profiling") == (False, "objected")
    assert await why(consent, other, "profiling") == (True, "legitimate_interests")
    audience = await consent.subjects_with_basis("profiling")
    assert not audience.include  # everyone except the objectors
    assert await Contact.count().where(audience.where(Contact.subject_id)) == 1
    [change] = await raw_sql(
        database_url, "SELECT * FROM audit WHERE action = 'consent.purpose_update'"
    )
    assert (change["actor_id"], change["resource_id"]) == ("user:7", "profiling")
    assert change["fields"] == '["legal_basis"]'
    # Consent-based purposes are withdrawn from, not objected to.
    with pytest.raises(ConsentError, match="withdraw consent instead"):
        await consent.object(objector, "marketing_email", source="portal", actor_id="subject")


async def test_grants_expire_and_can_be_renewed(
    consent_services: Services, consent: ConsentEngine, database_url: str
) -> None:
    subject = await new_subject(consent_services)
    await publish(consent)
    now = dt.datetime.now(dt.UTC)
    await grant(consent, subject, "marketing_email", expires_at=now + dt.timedelta(hours=1))
    later = now + dt.timedelta(hours=2)

    assert (await consent.has_basis(subject, "marketing_email", now=now)).ok
    # Past its expiry a grant is no basis, even before the expiry job has run.
    assert await why(consent, subject, "marketing_email", now=later) == (False, "expired")
    assert not await (await consent.subjects_with_basis("marketing_email", now=later)).admits(
        subject
    )

    assert await consent.expire_due(later) == 1
    assert await consent.expire_due(later) == 0
    [status] = await consent.state(subject)
    assert status.state == "expired"
    events = await raw_sql(database_url, "SELECT kind, actor_id FROM consent_event ORDER BY id")
    assert events[-1] == {"kind": "expired", "actor_id": "system:consent-expiry"}
    assert await raw_sql(
        database_url, "SELECT action FROM audit WHERE action = 'consent.expire'"
    ) == [{"action": "consent.expire"}]

    await grant(consent, subject, "marketing_email")  # renewed, without expiry
    assert (await consent.has_basis(subject, "marketing_email", now=later)).ok


async def test_bad_links_are_refused_alike(
    consent_services: Services,
    consent: ConsentEngine,
    smtp: LocalSmtp,
    web: AsyncClient,
    database_url: str,
) -> None:
    subject = await new_subject(consent_services)
    version = await publish(consent)
    for _ in range(2):
        await consent.request_double_opt_in(
            subject, "x@example.net", "marketing_email", notice_version=version, source="web_form"
        )
    (used, withdraw), (stale, _) = (LINK.findall(m.text) for m in smtp.received)
    assert (await web.post(used)).status_code == 200  # the first use works
    await raw_sql(
        database_url,
        "UPDATE consent_token SET expires_at = ? WHERE used_at IS NULL",
        dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        if ENGINE == "postgres"
        else "2020-01-01T00:00:00+00:00",
    )
    token = withdraw.rsplit("/", 1)[1]
    other = await new_subject(consent_services)
    other_link = consent.withdrawal_link(other, "marketing_email", "email")
    repointed = other_link.rsplit("/", 1)[1].rsplit(".", 1)[0]  # their payload, our mac
    bad = [
        used,  # reused
        stale,  # expired
        "/consent/confirm/" + "A" * 43,  # forged
        "/consent/withdraw/" + token[:-2] + "AA",  # signature altered
        "/consent/withdraw/" + repointed + "." + token.rsplit(".", 1)[1],  # other subject
        "/consent/withdraw/nonsense",
    ]
    answers = []
    for path in bad:
        for method in (web.get, web.post):
            response = await method(path)
            assert response.status_code == 404, path
            answers.append(response.text)
    assert len(set(answers)) == 1
    assert "invalid, has expired or has already been used" in answers[0]
    with pytest.raises(LinkInvalid) as refused:
        await consent.confirm(used.rsplit("/", 1)[1])
    assert str(refused.value) == "this link is invalid, has expired or has already been used"
    assert await raw_sql(database_url, "SELECT kind FROM consent_event") == [{"kind": "granted"}]


async def test_invalid_input_is_refused_without_echoing_it(
    consent_services: Services, consent: ConsentEngine
) -> None:
    subject = await new_subject(consent_services)
    version = await publish(consent)
    secret = "philippa.quernmoor@example.net"
    cases: list[tuple[str, dict[str, Any]]] = [
        ("unknown_purpose", {"purpose": secret}),
        ("unknown_channel", {"channel": secret}),
        ("unknown_source", {"source": secret}),
        ("unknown_notice", {"notice_version": version + 1}),
        ("unknown_evidence", {"evidence": {secret: "x"}}),
        ("invalid_evidence", {"evidence": {"form_id": secret + " "}}),
        ("reserved_evidence", {"evidence": {"double_opt_in": True}}),
        ("consent_not_basis", {"purpose": "service_communication"}),
        ("invalid_subject", {"subject_id": secret}),
    ]
    for code, override in cases:
        args: dict[str, Any] = {
            "subject_id": subject,
            "purpose": "marketing_email",
            "channel": "email",
            "source": "web_form",
            "notice_version": version,
            "actor_id": "user:1",
        }
        args.update(override)
        with pytest.raises(ConsentError) as refused:
            await consent.grant(**args)
        assert refused.value.code == code
        assert secret not in str(refused.value)
    assert await consent.state(subject) == []


@pytest.mark.parametrize("table", ["consent_event", "privacy_notice"])
@pytest.mark.parametrize("statement", ["UPDATE {table} SET id = id", "DELETE FROM {table}"])
async def test_the_database_rejects_rewriting_consent_evidence(
    consent_services: Services,
    consent: ConsentEngine,
    database_url: str,
    table: str,
    statement: str,
) -> None:
    subject = await new_subject(consent_services)
    await publish(consent)
    await grant(consent, subject, "marketing_email")
    before = await raw_sql(database_url, f"SELECT * FROM {table}")
    with pytest.raises(DATABASE_ERRORS, match="append-only"):
        await raw_sql(owner_url(database_url), statement.format(table=table))
    if ENGINE == "postgres":
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await raw_sql(owner_url(database_url), f"TRUNCATE {table}")
    assert await raw_sql(database_url, f"SELECT * FROM {table}") == before


async def test_the_application_role_cannot_rewrite_consent_evidence(
    consent_services: Services, consent: ConsentEngine, database_url: str
) -> None:
    if ENGINE != "postgres":
        pytest.skip("SQLite has no roles; its triggers are the guard")
    subject = await new_subject(consent_services)
    await publish(consent)
    await grant(consent, subject, "marketing_email")
    owner = owner_url(database_url)
    for table in ("consent_event", "privacy_notice"):
        await raw_sql(owner, f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for statement in (
            f"UPDATE {table} SET id = id",
            f"DELETE FROM {table}",
            f"TRUNCATE {table}",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await raw_sql(database_url, statement)
    # ... while the engine goes on working as that role.
    await consent.withdraw(subject, "marketing_email", source="staff", actor_id="user:1")
    assert await why(consent, subject, "marketing_email") == (False, "withdrawn")
