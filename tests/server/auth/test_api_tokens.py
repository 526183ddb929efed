"""API tokens (issue 19, item 1) and the REST families they reach (item 2: consent,
data-subject requests, audit), on whichever engine the suite runs on.

The acceptance: a token limited to ``marketing`` and the ``email`` field cannot read a
name and cannot act for another purpose, and stops working the moment it is revoked, in
every worker (two apps with their own services sharing the database); a website records a
consent grant with evidence through a service-account token and it shows in the person's
consent history and proof export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from typing import Any

import pytest
from httpx import AsyncClient
from litestar import Litestar

from server.app import create_app
from server.auth.service import StaffIdentity
from server.auth.tokens import TokenError, TokenKind
from server.dsr.export import build_export
from server.gateway import Actor, Record
from server.services import Services, build_services
from tests.conftest import Staff, contact_values, http_client
from tests.dbutil import audit_rows, last_seq, raw_sql

API = "/api/v1"
SYSTEM = Actor.system("test-tokens")
NOTICE_TEXT = "We send a monthly newsletter. Unsubscribe at any time."


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def person(services: Services, **overrides: Any) -> Record:
    return await services.gateway.create(SYSTEM, "contact", contact_values(**overrides))


async def marketing_email_only(services: Services, staff: Staff) -> tuple[StaffIdentity, str]:
    """A marketer's personal token: purpose ``marketing``, field ``email`` only."""
    marketer = await staff.create("marketing")
    made = await services.tokens.create(
        marketer,
        TokenKind.PERSONAL,
        name="Newsletter tool",
        role="marketing",
        purposes=["marketing"],
        fields=["email"],
    )
    return marketer, made.secret


async def test_a_marketing_email_token_reads_no_name_and_acts_for_no_other_purpose(
    services: Services, client: AsyncClient, staff: Staff, database_url: str
) -> None:
    grace = await person(services)
    _, secret = await marketing_email_only(services, staff)
    before = await last_seq(database_url)

    read = await client.get(f"{API}/contacts/{grace.id}", headers=bearer(secret))
    assert read.status_code == 200, read.text
    assert read.json()["email"] == grace.values["email"]
    assert "first_name" not in read.json()
    assert "last_name" not in read.json()
    assert "Grace" not in read.text
    assert "Hopper" not in read.text
    listed = await client.get(f"{API}/contacts", headers=bearer(secret))
    assert listed.status_code == 200, listed.text
    assert "Grace" not in listed.text
    assert grace.values["email"] in listed.text

    # Another purpose, even one the marketing role has: refused, and audited as such.
    other = {**bearer(secret), "X-Consentry-Purpose": "marketing_phone"}
    refused = await client.get(f"{API}/contacts/{grace.id}", headers=other)
    assert refused.status_code == 404, refused.text
    listing = await client.get(f"{API}/contacts", headers=other)
    assert listing.status_code in {403, 404}, listing.text
    assert "Grace" not in listing.text

    rows = await audit_rows(database_url, before)
    token_rows = [r for r in rows if str(r["actor_id"]).startswith("token:")]
    assert token_rows
    assert all(r["actor_id"] == token_rows[0]["actor_id"] for r in token_rows)
    assert not [r for r in rows if str(r["actor_id"]).startswith("user:")]
    allowed = [r for r in token_rows if r["outcome"] == "allowed" and r["action"] == "read"]
    assert allowed
    assert json.loads(allowed[0]["fields"]) == ["email"]
    denied = [r for r in token_rows if r["reason"] == "purpose_not_allowed_for_token"]
    assert denied
    assert denied[0]["purpose"] == "marketing_phone"
    assert grace.values["email"] not in json.dumps(rows, default=str)


async def test_a_token_asked_for_a_field_outside_its_allow_list_is_refused(
    services: Services, staff: Staff
) -> None:
    grace = await person(services)
    _, secret = await marketing_email_only(services, staff)
    identity = await services.tokens.resolve(secret)
    assert identity is not None
    assert identity.token is not None
    actor = Actor.staff(
        identity.user_id, identity.role, identity.team, actor_id=identity.actor_id,
        limits=identity.token,
    )  # fmt: skip
    from server.gateway import Forbidden

    with pytest.raises(Forbidden, match="first_name"):
        await services.gateway.read(actor, "contact", grace.id, fields=("first_name",))
    record = await services.gateway.read(actor, "contact", grace.id)
    assert set(record.values) == {"email"}


async def test_revocation_stops_the_token_at_once_in_every_worker(
    services: Services, settings: Any, staff: Staff, app: Litestar
) -> None:
    grace = await person(services)
    marketer, secret = await marketing_email_only(services, staff)
    # A second worker: its own app and services (no shared memory), the same database.
    other = create_app(settings, build_services(settings))
    url = f"{API}/contacts/{grace.id}"
    async with http_client(app) as first, http_client(other) as second:
        assert (await first.get(url, headers=bearer(secret))).status_code == 200
        assert (await second.get(url, headers=bearer(secret))).status_code == 200
        [info] = await services.tokens.list(marketer, TokenKind.PERSONAL)
        assert info.last_used_at is not None
        await services.tokens.revoke(marketer, info.id)
        for worker in (first, second):
            gone = await worker.get(url, headers=bearer(secret))
            assert gone.status_code == 401, gone.text
            assert "revoked" in gone.json()["detail"]
            assert "Grace" not in gone.text


async def test_a_token_dies_with_its_creators_account_or_role(
    services: Services, client: AsyncClient, staff: Staff
) -> None:
    grace = await person(services)
    admin = await staff.create("admin")
    made = await services.tokens.create(
        admin, TokenKind.SERVICE, name="CRM sync", role="admin",
        purposes=["customer_relationship"],
    )  # fmt: skip
    url = f"{API}/contacts/{grace.id}"
    assert (await client.get(url, headers=bearer(made.secret))).status_code == 200
    boss = await staff.create("admin")
    await services.accounts.change_role(admin.user_id, "support", by=boss)
    assert (await client.get(url, headers=bearer(made.secret))).status_code == 401
    # And a deactivated creator's tokens stop too.
    kept = await services.tokens.create(
        boss, TokenKind.SERVICE, name="Other", role="sales", purposes=["customer_relationship"]
    )
    assert (await client.get(f"{API}/auth/me", headers=bearer(kept.secret))).status_code == 200
    await services.accounts.set_active(boss.user_id, False, by=admin)
    assert (await client.get(f"{API}/auth/me", headers=bearer(kept.secret))).status_code == 401


async def test_a_token_is_never_wider_than_its_creator(services: Services, staff: Staff) -> None:
    seller = await staff.create("sales")
    with pytest.raises(TokenError, match="wider than your own"):
        await services.tokens.create(
            seller, TokenKind.PERSONAL, name="x", role="admin", purposes=["customer_relationship"]
        )
    with pytest.raises(TokenError, match="may not make service"):
        await services.tokens.create(
            seller, TokenKind.SERVICE, name="x", role="sales", purposes=["customer_relationship"]
        )
    with pytest.raises(TokenError, match="may not act for: marketing_email"):
        await services.tokens.create(
            seller, TokenKind.PERSONAL, name="x", role="sales", purposes=["marketing_email"]
        )
    with pytest.raises(TokenError, match="unknown field"):
        await services.tokens.create(
            seller, TokenKind.PERSONAL, name="x", role="sales",
            purposes=["customer_relationship"], fields=["shoe_size"],
        )  # fmt: skip
    admin = await staff.create("admin")
    assert "compliance" not in services.tokens.roles_for(admin)  # no audit rights to hand on
    assert services.tokens.roles_for(seller) == ["sales"]


async def test_the_secret_is_shown_once_and_stored_only_as_a_keyed_hash(
    services: Services, staff: Staff, database_url: str
) -> None:
    _, secret = await marketing_email_only(services, staff)
    rows = await raw_sql(database_url, "SELECT * FROM api_token")
    dumped = json.dumps(rows, default=str)
    assert secret not in dumped
    assert secret[10:] not in dumped
    assert hashlib.sha256(secret.encode()).hexdigest() not in dumped
    assert rows[0]["secret_hash"]
    assert rows[0]["hint"] == secret[:10]


async def test_calls_over_the_rate_limit_get_429_with_retry_after(
    settings: Any, staff: Staff
) -> None:
    limited = dataclasses.replace(settings, api_token_rate_per_minute=3)
    services = build_services(limited)
    grace = await person(services)
    marketer = await staff.create("marketing")
    made = await services.tokens.create(
        marketer, TokenKind.PERSONAL, name="t", role="marketing", purposes=["marketing"]
    )
    async with http_client(create_app(limited, services)) as client:
        url = f"{API}/contacts/{grace.id}"
        codes = [(await client.get(url, headers=bearer(made.secret))).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        over = await client.get(url, headers=bearer(made.secret))
        assert over.status_code == 429, over.text
        assert 1 <= int(over.headers["retry-after"]) <= 61


async def test_a_bad_bearer_header_is_401_even_with_a_session(
    services: Services, staff: Staff
) -> None:
    api = await staff.login(await staff.create("sales"))
    assert (await api.get(f"{API}/auth/me")).status_code == 200
    wrong = await api.get(f"{API}/auth/me", headers=bearer("cst_not-a-real-token"))
    assert wrong.status_code == 401


# --- consent over REST: a website records a grant through a service account -----------------


async def website_token(services: Services, staff: Staff) -> tuple[str, str]:
    admin = await staff.create("admin")
    made = await services.tokens.create(
        admin,
        TokenKind.SERVICE,
        name="Website sign-up form",
        role="admin",
        purposes=["customer_relationship", "marketing_email"],
        fields=["email"],
    )
    return made.secret, made.info.id


async def test_a_website_records_a_consent_grant_with_evidence_through_a_service_account(
    services: Services, client: AsyncClient, staff: Staff, database_url: str
) -> None:
    secret, token_id = await website_token(services, staff)
    grace = await person(services)
    notice = await services.consent.publish_notice("Newsletter", NOTICE_TEXT, by="user:1")
    notices = await client.get(f"{API}/consent/notices", headers=bearer(secret))
    assert notices.status_code == 200
    assert notices.json()[0]["version"] == notice.version
    body = {
        "action": "grant",
        "purpose": "marketing_email",
        "channel": "email",
        "source": "web_form",
        "notice_version": notice.version,
        "evidence": {"form_id": "footer-signup", "ip": "203.0.113.9", "user_agent": "Mozilla/5.0"},
    }
    url = f"{API}/contacts/{grace.id}/consent"
    granted = await client.post(url, json=body, headers=bearer(secret))
    assert granted.status_code == 201, granted.text
    assert granted.json()["event"]["actor"] == f"token:{token_id}"

    state = await client.get(url, headers=bearer(secret))
    assert state.status_code == 200, state.text
    assert [(s["purpose"], s["state"]) for s in state.json()["state"]] == [
        ("marketing_email", "granted")
    ]
    ledger = await client.get(f"{url}/ledger", headers=bearer(secret))
    assert ledger.status_code == 200, ledger.text
    [event] = ledger.json()["events"]
    assert event["actor"] == f"token:{token_id}"
    assert event["notice"]["text"] == NOTICE_TEXT
    assert event["evidence"]["form_id"] == "footer-signup"
    assert "ip_hash" in event["evidence"]
    assert "203.0.113.9" not in ledger.text

    # The person's proof export (Art. 7(1)) and their Art. 15 export carry it too.
    proof = await services.consent.proof(grace.subject_id, actor_id="user:1")
    assert [e["source"] for e in proof["events"]] == ["web_form"]
    bundle = await build_export(services, grace.subject_id, requested_by="system:test")
    exported = json.loads(zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)).read("data.json"))
    consent_events = json.dumps(exported, default=str)
    assert "footer-signup" in consent_events
    assert "API client #" in consent_events
    assert f"token:{token_id}" not in consent_events  # pseudonymous to the person

    # The token acts only for its purposes: profiling is not one of them.
    other = {**body, "purpose": "profiling", "channel": None}
    refused = await client.post(url, json=other, headers=bearer(secret))
    assert refused.status_code == 403, refused.text
    rows = await audit_rows(database_url)
    assert any(
        r["actor_id"] == f"token:{token_id}" and r["action"] == "consent.grant" for r in rows
    )
    assert grace.values["email"] not in json.dumps(rows, default=str)

    # And a withdrawal through the same token takes effect at once.
    withdrawn = await client.post(
        url, json={**body, "action": "withdraw", "notice_version": None}, headers=bearer(secret)
    )
    assert withdrawn.status_code == 201
    assert withdrawn.json()["recorded"] is True
    assert not await services.consent.has_basis(grace.subject_id, "marketing_email")


async def test_a_marketing_token_cannot_record_consent_or_open_requests(
    services: Services, client: AsyncClient, staff: Staff
) -> None:
    grace = await person(services)
    _, secret = await marketing_email_only(services, staff)
    body = {"action": "grant", "purpose": "marketing", "source": "web_form", "notice_version": 1}
    refused = await client.post(
        f"{API}/contacts/{grace.id}/consent", json=body, headers=bearer(secret)
    )
    assert refused.status_code == 403
    assert (await client.get(f"{API}/requests", headers=bearer(secret))).status_code == 403
    assert (await client.get(f"{API}/audit/events", headers=bearer(secret))).status_code == 403


async def test_a_double_opt_in_is_started_over_rest(
    services: Services, client: AsyncClient, staff: Staff
) -> None:
    secret, _ = await website_token(services, staff)
    grace = await person(services)
    notice = await services.consent.publish_notice("Newsletter", NOTICE_TEXT, by="user:1")
    started = await client.post(
        f"{API}/contacts/{grace.id}/consent/double-opt-in",
        json={"purpose": "marketing_email", "notice_version": notice.version},
        headers=bearer(secret),
    )
    assert started.status_code == 202, started.text
    assert grace.values["email"] not in started.text
    # Nothing is granted until the person confirms.
    assert not await services.consent.has_basis(grace.subject_id, "marketing_email")


# --- data-subject requests and the audit trail over REST (a compliance token) ---------------


async def compliance_token(services: Services, staff: Staff) -> tuple[StaffIdentity, str]:
    officer = await staff.create("compliance")
    made = await services.tokens.create(
        officer, TokenKind.PERSONAL, name="SIEM", role="compliance", purposes=["compliance"]
    )
    return officer, made.secret


async def test_a_request_is_opened_moved_and_exported_over_rest(
    services: Services, client: AsyncClient, staff: Staff
) -> None:
    _, secret = await compliance_token(services, staff)
    grace = await person(services)
    opened = await client.post(
        f"{API}/requests",
        json={
            "contact_id": grace.id,
            "kind": "access",
            "channel": "email",
            "verification": "email_link",
        },
        headers=bearer(secret),
    )
    assert opened.status_code == 201, opened.text
    request_id = opened.json()["id"]
    assert opened.json()["subject_id"] == grace.subject_id
    queue = await client.get(f"{API}/requests", headers=bearer(secret))
    assert [r["id"] for r in queue.json()] == [request_id]
    one = await client.get(f"{API}/requests/{request_id}", headers=bearer(secret))
    assert one.status_code == 200
    assert one.json()["state"] == "verified"
    moved = await client.post(
        f"{API}/requests/{request_id}/transition",
        json={"to_state": "in_review"},
        headers=bearer(secret),
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["state"] == "in_review"
    assert moved.json()["history"][-1]["actor"].startswith("token:")
    skipped = await client.post(
        f"{API}/requests/{request_id}/transition",
        json={"to_state": "fulfilled"},
        headers=bearer(secret),
    )
    assert skipped.status_code == 409, skipped.text
    export = await client.post(f"{API}/requests/{request_id}/export", headers=bearer(secret))
    assert export.status_code == 200, export.text
    assert export.headers["content-type"].startswith("application/zip")
    assert "data.json" in zipfile.ZipFile(io.BytesIO(export.content)).namelist()
    # The request's page names the token that moved it, not its raw id.
    from tests.admin_ui.test_admin_ui import text_of, web_login

    officer = await web_login(staff, await staff.create("compliance"))
    detail = await officer.get(f"/compliance/requests/{request_id}")
    assert detail.status_code == 200
    assert "API token “SIEM”" in text_of(detail)


async def test_the_audit_trail_over_rest(
    services: Services, client: AsyncClient, staff: Staff
) -> None:
    _, secret = await compliance_token(services, staff)
    await person(services)
    await services.audit_trail.seal_all()
    head = await client.get(f"{API}/audit/head", headers=bearer(secret))
    assert head.status_code == 200, head.text
    size = head.json()["tree_size"]
    events = await client.get(f"{API}/audit/events?action=create", headers=bearer(secret))
    assert events.status_code == 200, events.text
    assert events.json()["events"][0]["resource_type"] == "contact"
    mine = await client.get(f"{API}/audit/events?resource_type=audit", headers=bearer(secret))
    assert mine.json()["events"][0]["actor_id"].startswith("token:")
    proof = await client.get(f"{API}/audit/proofs/inclusion?seq=1", headers=bearer(secret))
    assert proof.status_code == 200, proof.text
    assert proof.json()["verified"] is True
    await services.audit_trail.seal_all()
    consistent = await client.get(
        f"{API}/audit/proofs/consistency?old_size={size}", headers=bearer(secret)
    )
    assert consistent.status_code == 200
    assert consistent.json()["verified"] is True
    key = await client.get(f"{API}/audit/public-key", headers=bearer(secret))
    assert key.json()["key_id"] == head.json()["key_id"]
    status = await client.get(f"{API}/audit/verification", headers=bearer(secret))
    assert status.status_code == 200, status.text
    assert status.json()["ok"] is True
    bad = await client.get(f"{API}/audit/events?outcome=maybe", headers=bearer(secret))
    assert bad.status_code == 400


def test_the_new_schemas_are_in_the_openapi_document(app: Litestar) -> None:
    schemas = app.openapi_schema.to_schema()["components"]["schemas"]
    for name in ("ConsentChange", "Evidence", "Ledger", "RequestOut", "RequestMove",
                 "EventPageOut", "InclusionOut", "ConsistencyOut", "VerificationOut"):  # fmt: skip
        assert name in schemas, name


# --- the admin pages ------------------------------------------------------------------------


async def test_tokens_are_made_shown_once_and_revoked_in_the_admin(
    services: Services, staff: Staff, client: AsyncClient, database_url: str
) -> None:
    from tests.admin_ui.test_admin_ui import csrf_of, location, text_of, web_login

    marketer = await staff.create("marketing")
    page = await web_login(staff, marketer)
    form = await page.get("/account/tokens")
    assert form.status_code == 200
    assert form.headers["cache-control"] == "no-store"
    made = await page.post(
        "/account/tokens",
        data={
            "name": "Newsletter tool",
            "role": "marketing",
            "purposes": "marketing",
            "fields": "email",
            "days": "30",
            "_csrf_token": csrf_of(form),
        },
    )
    assert made.status_code == 201, text_of(made)[:500]
    secret = first_secret(made.text)
    assert "shown only this once" in text_of(made)
    again = await page.get("/account/tokens")
    assert secret not in again.text  # shown once
    grace = await person(services)
    assert (
        await client.get(f"{API}/contacts/{grace.id}", headers=bearer(secret))
    ).status_code == 200
    [info] = await services.tokens.list(marketer, TokenKind.PERSONAL)
    revoked = await page.post(
        f"/account/tokens/{info.id}/revoke", data={"_csrf_token": csrf_of(again)}
    )
    assert location(revoked) == "/account/tokens"
    assert (
        await client.get(f"{API}/contacts/{grace.id}", headers=bearer(secret))
    ).status_code == 401
    # A role wider than the marketer's own is refused with the reason, nothing is made.
    wider = await page.post(
        "/account/tokens",
        data={"name": "x", "role": "admin", "purposes": "marketing", "days": "30",
              "_csrf_token": csrf_of(again)},
    )  # fmt: skip
    assert wider.status_code == 400
    assert "wider than your own" in text_of(wider)
    assert len(await services.tokens.list(marketer, TokenKind.PERSONAL)) == 1
    # Service accounts are for the roles the policy lets manage them: 404 for marketing.
    assert (await page.get("/admin/service-accounts")).status_code == 404
    rows = await audit_rows(database_url)
    assert [r["action"] for r in rows if r["resource_type"] == "api_token"] == [
        "token.create",
        "token.revoke",
    ]


def first_secret(page: str) -> str:
    import re

    match = re.search(r'id="token-secret">(cst_[A-Za-z0-9_\-]+)<', page)
    assert match, "no secret on the page"
    return match.group(1)


def test_the_cli_documents_its_token_commands() -> None:
    from click.testing import CliRunner

    from server.cli import cli

    for command in ("create", "list", "revoke"):
        result = CliRunner().invoke(cli, ["tokens", command, "--help"], prog_name="consentry")
        assert result.exit_code == 0, result.output
        assert "--as" in result.output


async def test_a_sessions_export_download_needs_a_recent_password(
    services: Services, staff: Staff
) -> None:
    import datetime as dt

    from server.auth.tables import StaffSession

    officer = await staff.create("compliance")
    api = await staff.login(officer)
    grace = await person(services)
    opened = await api.post(
        f"{API}/requests",
        json={"contact_id": grace.id, "kind": "access", "channel": "phone",
              "verification": "phone_callback"},
    )  # fmt: skip
    assert opened.status_code == 201, opened.text
    url = f"{API}/requests/{opened.json()['id']}/export"
    assert (await api.post(url)).status_code == 200  # signed in a moment ago
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    await StaffSession.update({StaffSession.authenticated_at: long_ago}).where(
        StaffSession.user_id == officer.user_id
    )
    stale = await api.post(url)
    assert stale.status_code == 403, stale.text
    assert "recent sign-in" in stale.json()["detail"]


async def test_the_served_openapi_document_has_the_new_operations(client: AsyncClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/contacts/{record_id}/consent" in document["paths"]
    assert "/api/v1/audit/proofs/inclusion" in document["paths"]
    body = document["paths"]["/api/v1/contacts/{record_id}/consent"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/ConsentChange")
    assert "Evidence" in document["components"]["schemas"]


async def test_a_token_cannot_write_a_field_outside_its_allow_list(
    services: Services, client: AsyncClient, staff: Staff
) -> None:
    secret, _ = await website_token(services, staff)  # admin role, fields: email only
    grace = await person(services)
    url = f"{API}/contacts/{grace.id}"
    renamed = await client.patch(url, json={"first_name": "Ada"}, headers=bearer(secret))
    assert renamed.status_code == 403, renamed.text
    moved = await client.patch(url, json={"email": "grace@example.net"}, headers=bearer(secret))
    assert moved.status_code == 200, moved.text
    record = await services.gateway.read(SYSTEM, "contact", grace.id)
    assert record.values["first_name"] == "Grace"
    assert record.values["email"] == "grace@example.net"
