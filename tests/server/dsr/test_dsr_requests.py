"""The data-subject request workflow: states, deadlines, history, audit and e-mails.

Every change must leave a history row and an audit event and tell the person by e-mail
(a real SMTP round trip to a local aiosmtpd server); nothing personal may be stored in
the request tables or quoted in the messages beyond the address they go to.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import uuid
from typing import Any

import asyncpg
import pytest

from audit.tables import AuditRecord
from server import db
from server import settings as settings_module
from server.dsr.requests import (
    DataSubjectRequests,
    RequestError,
    add_months,
)
from server.dsr.tables import DsrRequest
from server.gateway import Actor, Record
from server.mail import Mailer, MailStatus
from server.services import Services, build_services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, location, sales_contact, text_of, web_login
from tests.conftest import Staff, owner_url
from tests.dbutil import raw_sql
from tests.server.cli.test_cli import Install, consentry, forget_process_state, install
from tests.server.test_mail import LocalSmtp, smtp

DATABASE_ERRORS = (sqlite3.DatabaseError, asyncpg.PostgresError)
PERSON = {"first_name": "Philomena", "last_name": "Brackenridge"}
STAFF_ID = "user:7"
__all__ = ["install", "smtp"]  # fixtures shared with the CLI and mail tests


async def person(services: Services, staff: Staff, **values: Any) -> Record:
    rep = await staff.create("sales")
    return await services.gateway.create(
        staff.actor(rep), "contact", sales_contact(**PERSON, **values)
    )


def workflow(services: Services, settings: Settings, smtp: LocalSmtp) -> DataSubjectRequests:
    """The service as built by ``build_services``, with a mailer pointed at ``smtp``."""
    return DataSubjectRequests(
        services.gateway, services.audit, Mailer(smtp.settings(settings)), settings
    )


async def audit_actions(request_id: str) -> list[str]:
    rows = (
        await AuditRecord.select(AuditRecord.action)
        .where(AuditRecord.resource_id == request_id)
        .order_by(AuditRecord.seq)
    )
    return [str(row["action"]) for row in rows]


async def test_a_request_runs_its_course_with_history_audit_and_mail(
    services: Services, settings: Settings, staff: Staff, smtp: LocalSmtp
) -> None:
    contact = await person(services, staff)
    dsr = workflow(services, settings, smtp)

    logged = await dsr.log(
        contact.subject_id,
        "access",
        "phone",
        verification="phone_callback",
        by=STAFF_ID,
        contact_id=contact.id,
    )
    request = logged.request
    assert logged.mail.status is MailStatus.SENT
    assert request.state == "verified"
    assert request.due_at == add_months(request.received_at, 1)
    for state in ("in_review", "approved", "fulfilled", "closed"):
        change = await dsr.transition(request.id, state, by=STAFF_ID)
        assert change.mail.sent
        assert change.request.state == state

    final = await dsr.get(request.id)
    assert [(h.from_state, h.to_state) for h in final.history] == [
        ("", "verified"),
        ("verified", "in_review"),
        ("in_review", "approved"),
        ("approved", "fulfilled"),
        ("fulfilled", "closed"),
    ]
    assert {h.actor_id for h in final.history} == {STAFF_ID}
    assert await audit_actions(request.id) == [
        "dsr.log",
        "dsr.notify",
        "dsr.review",
        "dsr.notify",
        "dsr.approve",
        "dsr.notify",
        "dsr.fulfil",
        "dsr.notify",
        "dsr.close",
        "dsr.notify",
    ]
    events = await AuditRecord.select().where(AuditRecord.resource_type == "dsr_request")
    assert all(e["subject_ids"] == f'["{contact.subject_id}"]' for e in events)
    assert all(e["purpose"] == "compliance" for e in events)

    assert len(smtp.received) == 5
    address = contact.values["email"]
    for received in smtp.received:
        assert received.recipients == [address]
        body = received.text + str(received.message["Subject"])
        assert request.id in body
        for value in (address, *PERSON.values(), contact.values["phone"]):
            assert value not in body
    assert "access to your data" in smtp.received[0].text
    assert f"{request.due_at:%Y-%m-%d}" in smtp.received[0].text
    assert "closed" in smtp.received[-1].text

    # Nothing personal in the request tables or the audit log.
    stored = str(await DsrRequest.select()) + str(events)
    for value in (address, *PERSON.values()):
        assert value not in stored


async def test_illegal_transitions_are_refused(
    services: Services, settings: Settings, staff: Staff, smtp: LocalSmtp
) -> None:
    contact = await person(services, staff)
    dsr = workflow(services, settings, smtp)
    request = (
        await dsr.log(
            contact.subject_id, "erasure", "letter", verification="id_document", by=STAFF_ID
        )
    ).request
    for state in ("approved", "fulfilled", "closed", "received", "verified"):
        with pytest.raises(RequestError) as refused:
            await dsr.transition(request.id, state, by=STAFF_ID)
        assert refused.value.code == "transition_not_allowed"
    with pytest.raises(RequestError) as unknown:
        await dsr.transition(request.id, "<script>", by=STAFF_ID)
    assert unknown.value.code == "unknown_state"
    assert "<script>" not in unknown.value.message
    with pytest.raises(RequestError) as missing:
        await dsr.transition(str(uuid.uuid4()), "in_review", by=STAFF_ID)
    assert missing.value.code == "not_found"
    assert (await dsr.get(request.id)).state == "verified"
    assert len((await dsr.get(request.id)).history) == 1


async def test_an_unverified_request_can_only_be_verified(
    services: Services, settings: Settings, staff: Staff, smtp: LocalSmtp
) -> None:
    """A portal request starts ``received``; nothing moves it on but a verification."""
    contact = await person(services, staff)
    dsr = workflow(services, settings, smtp)
    request = (
        await dsr.log(contact.subject_id, "access", "portal", verification="email_link", by="x")
    ).request
    # Simulate what the portal will create: a request that is not verified yet.
    await DsrRequest.update(
        {DsrRequest.state: "received", DsrRequest.verified_at: None, DsrRequest.verification: ""}
    ).where(DsrRequest.id == uuid.UUID(request.id))
    with pytest.raises(RequestError) as refused:
        await dsr.transition(request.id, "in_review", by=STAFF_ID)
    assert refused.value.code == "transition_not_allowed"
    with pytest.raises(RequestError) as no_method:
        await dsr.transition(request.id, "verified", by=STAFF_ID)
    assert no_method.value.code == "unknown_verification"
    verified = await dsr.transition(request.id, "verified", by=STAFF_ID, verification="id_document")
    assert verified.request.verification == "id_document"
    assert verified.request.verified_at is not None

    # A verification that went missing is caught at the next change.
    await DsrRequest.update({DsrRequest.verified_at: None}).where(
        DsrRequest.id == uuid.UUID(request.id)
    )
    with pytest.raises(RequestError) as unverified:
        await dsr.transition(request.id, "in_review", by=STAFF_ID)
    assert unverified.value.code == "not_verified"


async def test_a_rejection_needs_a_reason_and_tells_it(
    services: Services, settings: Settings, staff: Staff, smtp: LocalSmtp
) -> None:
    contact = await person(services, staff)
    dsr = workflow(services, settings, smtp)
    request = (
        await dsr.log(
            contact.subject_id,
            "objection",
            "email",
            verification="email_link",
            by=STAFF_ID,
            contact_id=contact.id,
        )
    ).request
    await dsr.transition(request.id, "in_review", by=STAFF_ID)
    with pytest.raises(RequestError) as no_reason:
        await dsr.transition(request.id, "rejected", by=STAFF_ID)
    assert no_reason.value.code == "reason_required"
    with pytest.raises(RequestError) as bad_reason:
        await dsr.transition(request.id, "rejected", by=STAFF_ID, reason="because I said so")
    assert bad_reason.value.code == "unknown_reason"
    assert "because" not in bad_reason.value.message

    rejected = await dsr.transition(request.id, "rejected", by=STAFF_ID, reason="excessive")
    assert rejected.request.rejection_reason == "excessive"
    assert rejected.request.history[-1].reason == "excessive"
    assert "Excessive or repetitive" in smtp.received[-1].text
    assert "supervisory authority" in smtp.received[-1].text
    await dsr.transition(request.id, "closed", by=STAFF_ID)


async def test_an_extension_moves_the_deadline_up_to_three_months_and_notifies(
    services: Services, settings: Settings, staff: Staff, smtp: LocalSmtp
) -> None:
    contact = await person(services, staff)
    dsr = workflow(services, settings, smtp)
    received = dt.datetime(2025, 11, 30, 9, 0, tzinfo=dt.UTC)
    request = (
        await dsr.log(
            contact.subject_id,
            "portability",
            "letter",
            verification="id_document",
            by=STAFF_ID,
            contact_id=contact.id,
            received_at=received,
        )
    ).request
    assert request.due_at == dt.datetime(2025, 12, 30, 9, 0, tzinfo=dt.UTC)

    with pytest.raises(RequestError) as no_reason:
        await dsr.extend(request.id, 1, "", by=STAFF_ID)
    assert no_reason.value.code == "unknown_reason"
    with pytest.raises(RequestError) as three:
        await dsr.extend(request.id, 3, "complexity", by=STAFF_ID)
    assert three.value.code == "invalid_months"

    extended = await dsr.extend(request.id, 1, "complexity", by=STAFF_ID)
    assert extended.request.deadline == dt.datetime(2026, 1, 30, 9, 0, tzinfo=dt.UTC)
    assert extended.mail.sent
    assert "2026-01-30" in smtp.received[-1].text
    assert "Complexity of the request" in smtp.received[-1].text

    with pytest.raises(RequestError) as too_far:
        await dsr.extend(request.id, 2, "complexity", by=STAFF_ID)
    assert too_far.value.code == "extension_limit"
    again = await dsr.extend(request.id, 1, "number_of_requests", by=STAFF_ID)
    # 30 November + 3 months: the last day of February.
    assert again.request.deadline == dt.datetime(2026, 2, 28, 9, 0, tzinfo=dt.UTC)
    assert not again.request.can_extend
    with pytest.raises(RequestError) as limit:
        await dsr.extend(request.id, 1, "complexity", by=STAFF_ID)
    assert limit.value.code == "extension_limit"
    history = (await dsr.get(request.id)).history
    assert [h.reason for h in history[1:]] == ["complexity", "number_of_requests"]
    assert (await audit_actions(request.id)).count("dsr.extend") == 2


async def test_the_queue_sorts_by_deadline_and_flags_overdue(
    services: Services, settings: Settings, staff: Staff, smtp: LocalSmtp
) -> None:
    contact = await person(services, staff)
    dsr = workflow(services, settings, smtp)
    now = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)

    async def logged(received: dt.datetime) -> str:
        change = await dsr.log(
            contact.subject_id, "access", "phone", verification="phone_callback", by=STAFF_ID,
            received_at=received,
        )  # fmt: skip
        return change.request.id

    late = await logged(dt.datetime(2026, 9, 1, tzinfo=dt.UTC))  # due 1 October
    extended = await logged(dt.datetime(2026, 9, 25, tzinfo=dt.UTC))  # due 25 October
    fresh = await logged(dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    answered = await logged(dt.datetime(2026, 8, 1, tzinfo=dt.UTC))
    await dsr.extend(extended, 2, "complexity", by=STAFF_ID)  # now due 25 December
    await dsr.transition(answered, "in_review", by=STAFF_ID)
    await dsr.transition(answered, "rejected", by=STAFF_ID, reason="no_data_held")

    everything = await dsr.queue(now=now)
    # By the deadline in force: the extended request comes after the fresh one.
    assert [r.id for r in everything] == [answered, late, fresh, extended]
    assert [r.overdue for r in everything] == [False, True, False, False]
    open_ones = await dsr.queue(open_only=True, now=now)
    assert [r.id for r in open_ones] == [late, fresh, extended]
    overdue = await dsr.queue(overdue_only=True, now=now)
    assert [r.id for r in overdue] == [late]
    assert [r.id for r in await dsr.queue(overdue_only=True, now=now.replace(year=2027))] == [
        late,
        fresh,
        extended,
    ]


async def test_a_mail_failure_does_not_undo_the_change(
    services: Services, settings: Settings, staff: Staff
) -> None:
    contact = await person(services, staff)
    unreachable = settings.with_overrides(smtp_host="127.0.0.1", smtp_port=1)
    dsr = DataSubjectRequests(services.gateway, services.audit, Mailer(unreachable), settings)
    change = await dsr.log(
        contact.subject_id,
        "restriction",
        "phone",
        verification="phone_callback",
        by=STAFF_ID,
        contact_id=contact.id,
    )
    assert change.mail.status is MailStatus.FAILED
    assert (await dsr.get(change.request.id)).state == "verified"
    notify = (
        await AuditRecord.select()
        .where(AuditRecord.action == "dsr.notify")
        .where(AuditRecord.resource_id == change.request.id)
        .first()
    )
    assert notify is not None
    assert notify["outcome"] == "error"
    assert notify["reason"] == "smtp_connect"


@pytest.mark.parametrize(
    "statement",
    ["UPDATE dsr_request_event SET to_state = 'closed'", "DELETE FROM dsr_request_event"],
)
async def test_the_history_is_append_only_even_for_the_owner(
    services: Services, staff: Staff, database_url: str, statement: str
) -> None:
    contact = await person(services, staff)
    request = (
        await services.requests.log(
            contact.subject_id, "access", "phone", verification="phone_callback", by=STAFF_ID
        )
    ).request
    with pytest.raises(DATABASE_ERRORS, match="append-only"):
        await raw_sql(owner_url(database_url), statement)
    assert len((await services.requests.get(request.id)).history) == 1


# --- the compliance pages ---------------------------------------------------------------


async def test_compliance_logs_a_request_by_email_and_works_it_through(
    services: Services, staff: Staff
) -> None:
    contact = await person(services, staff)
    address = contact.values["email"]
    officer = await staff.create("compliance")
    client = await web_login(staff, officer)

    queue = await client.get("/compliance/requests")
    assert queue.status_code == 200
    assert "No requests here" in text_of(queue)
    unknown = await client.post(
        "/compliance/requests",
        data={
            "email": "nobody.here@example.org",
            "kind": "erasure",
            "channel": "phone",
            "verification": "phone_callback",
            "_csrf_token": csrf_of(queue),
        },
    )
    assert unknown.status_code == 400
    assert "No customer has that e-mail address" in text_of(unknown)
    assert "nobody.here@example.org" not in unknown.text

    logged = await client.post(
        "/compliance/requests",
        data={
            "email": address.upper(),
            "kind": "erasure",
            "channel": "phone",
            "verification": "phone_callback",
            "_csrf_token": csrf_of(queue),
        },
    )
    detail_path = location(logged)
    request_id = detail_path.rsplit("/", 1)[1]
    detail = await client.get(detail_path)
    assert detail.status_code == 200
    assert "Request logged" in text_of(detail)
    assert address not in detail.text
    assert "Start review" in text_of(detail)
    stored = await services.requests.get(request_id)
    assert stored.subject_id == contact.subject_id
    assert stored.contact_id == contact.id
    assert stored.history[0].actor_id == officer.actor_id

    async def act(path: str, **data: str) -> str:
        page = await client.get(detail_path)
        response = await client.post(path, data={**data, "_csrf_token": csrf_of(page)})
        assert location(response) == detail_path
        return text_of(await client.get(detail_path))

    assert "now in review" in await act(f"{detail_path}/transition", to_state="in_review")
    refused = await act(f"{detail_path}/transition", to_state="rejected")
    assert "a rejection needs a reason" in refused
    assert "Extend" in refused
    extended = await act(f"{detail_path}/extend", months="2", reason="complexity")
    assert "Deadline extended to" in extended
    assert "now rejected" in await act(
        f"{detail_path}/transition", to_state="rejected", reason="legal_obligation"
    )
    assert (await services.requests.get(request_id)).rejection_reason == "legal_obligation"

    everything = text_of(await client.get("/compliance/requests?show=all"))
    assert "Erasure of your data" in everything
    assert "Requests" in everything


async def test_compliance_logs_a_request_for_someone_who_is_only_a_lead(
    services: Services, staff: Staff
) -> None:
    """A request by e-mail finds people who only filled in the web form, not only contacts."""
    lead = await services.gateway.create(
        Actor.system("web-form"),
        "lead",
        {"first_name": "Ottoline", "last_name": "Winterbottom", "email": "otto@example.net"},
        purpose="customer_relationship",
    )
    officer = await staff.create("compliance")
    client = await web_login(staff, officer)
    queue = await client.get("/compliance/requests")
    logged = await client.post(
        "/compliance/requests",
        data={
            "email": "OTTO@example.net",
            "kind": "access",
            "channel": "email",
            "verification": "email_link",
            "_csrf_token": csrf_of(queue),
        },
    )
    request_id = location(logged).rsplit("/", 1)[1]
    stored = await services.requests.get(request_id)
    assert (stored.subject_id, stored.contact_id) == (lead.subject_id, lead.id)


@pytest.mark.parametrize("role", ["sales", "support", "marketing", "admin"])
async def test_other_roles_do_not_see_the_request_pages(
    services: Services, staff: Staff, role: str
) -> None:
    contact = await person(services, staff)
    request = (
        await services.requests.log(
            contact.subject_id, "access", "phone", verification="phone_callback", by=STAFF_ID
        )
    ).request
    client = await web_login(staff, await staff.create(role))
    for path in ("/compliance/requests", f"/compliance/requests/{request.id}"):
        assert (await client.get(path)).status_code == 404, path
    home = await client.get("/")
    for path in (
        "/compliance/requests",
        f"/compliance/requests/{request.id}/transition",
        f"/compliance/requests/{request.id}/extend",
    ):
        answer = await client.post(
            path, data={"to_state": "in_review", "_csrf_token": csrf_of(home)}
        )
        assert answer.status_code == 404, path
    assert (await services.requests.get(request.id)).state == "verified"


# --- the command line ---------------------------------------------------------------------


def test_cli_lists_overdue_requests(
    install: Install,
) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    forget_process_state()

    async def seed() -> tuple[str, str]:
        await db.start()
        try:
            services = build_services(settings_module.get_settings())
            subject = str(uuid.uuid4())
            old = await services.requests.log(
                subject, "access", "letter", verification="id_document", by=STAFF_ID,
                received_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
            )  # fmt: skip
            new = await services.requests.log(
                subject, "erasure", "phone", verification="phone_callback", by=STAFF_ID
            )
            return old.request.id, new.request.id
        finally:
            await db.stop()

    old, new = asyncio.run(seed())
    overdue = consentry("dsr", "list", "--overdue")
    assert overdue.exit_code == 0, overdue.output
    lines = overdue.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(old)
    assert "access" in lines[0]
    assert "received 2026-01-05" in lines[0]
    assert "due 2026-02-05" in lines[0]
    assert lines[0].endswith("OVERDUE")

    everything = consentry("dsr", "list").stdout.splitlines()
    assert [line.split()[0] for line in everything] == [old, new]
    assert "OVERDUE" not in everything[1]
