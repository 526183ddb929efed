"""Signed webhooks and Art. 19 notices, end to end against real local servers.

A receiver on 127.0.0.1 (a real HTTP server in a thread) verifies every signature with the
``standardwebhooks`` package; the tests then search every payload it received for the
person's name, e-mail and phone. A receiver that was down gets the message on a later
attempt; repeated failures switch an endpoint off; a claim is one worker's; a change that
rolls back queues nothing. Erasing a person sends a notice to each registered recipient
(by e-mail through a local SMTP server, and by webhook), and the request shows who
acknowledged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from audit.events import AuditEvent, Outcome
from server import db
from server.background import deliver_webhooks_forever
from server.dsr.requests import DataSubjectRequests
from server.gateway import Actor
from server.mail import Mailer
from server.recipients.service import RecipientInput, Recipients
from server.services import Services
from server.settings import Settings
from server.webhooks import queue
from server.webhooks.events import EVENT_TYPES, WebhookEvent, webhook_event_of
from server.webhooks.tables import WebhookAttempt, WebhookDelivery
from tests.admin_ui.test_admin_ui import csrf_of, sales_contact, text_of, web_login
from tests.conftest import Staff, http_client
from tests.server.test_mail import LocalSmtp, free_port, smtp

__all__ = ["smtp"]

ADMIN = Actor.system("test-admin")
NAME = {"first_name": "Philomena", "last_name": "Brackenridge"}
EMAIL = "philomena.b@example.org"
PHONE = "+44 20 7946 0123"
PERSONAL = ("Philomena", "Brackenridge", EMAIL, "philomena", "2079460123", "7946 0123", "7946")


@dataclass
class Receiver:
    """A webhook receiver: verifies each message's signature, keeps what it got."""

    port: int
    secret: str = ""
    bodies: list[bytes] = field(default_factory=list)
    bad_signatures: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError:
                    receiver.bad_signatures += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.bodies.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None  # quiet: the test reads what was received

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self.bodies]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(free_port())
    found.start()
    yield found
    found.stop()


async def drain(services: Services, now: dt.datetime | None = None) -> None:
    """Run the background job's rounds until nothing is due (as the workers would)."""
    for _ in range(20):
        sent = await services.recipients.send_due(now) + await services.webhooks.sender.deliver_due(
            now
        )
        if not sent:
            return


async def subscribe(services: Services, receiver: Receiver, types: list[str] | None = None) -> str:
    created = await services.webhooks.create(
        ADMIN, "CRM mirror", receiver.url, types or list(EVENT_TYPES)
    )
    assert created.secret.startswith("whsec_")
    receiver.secret = created.secret
    return created.endpoint.id


def assert_no_personal_value(receiver: Receiver) -> None:
    for body in receiver.bodies:
        text = body.decode().lower()
        digits = "".join(ch for ch in text if ch.isdigit())
        for value in PERSONAL:
            assert value.lower() not in text, value
        assert "2079460123" not in digits


async def erase_by_request(services: Services, subject_id: str, contact_id: str) -> str:
    dsr: DataSubjectRequests = services.requests
    logged = await dsr.log(
        subject_id, "erasure", "phone", verification="phone_callback", by="user:1",
        contact_id=contact_id,
    )  # fmt: skip
    for state in ("in_review", "approved", "fulfilled"):
        await dsr.transition(logged.request.id, state, by="user:1")
    return logged.request.id


async def test_every_change_reaches_the_receiver_signed_and_without_personal_values(
    services: Services, staff: Staff, receiver: Receiver
) -> None:
    await subscribe(services, receiver)
    rep = await staff.create("sales")
    actor = staff.actor(rep)
    gw = services.gateway
    person = await gw.create(actor, "contact", sales_contact(**NAME, email=EMAIL, phone=PHONE))
    await gw.update(actor, "contact", person.id, {"email": "p.brackenridge@example.org"})
    notice = await services.consent.publish_notice("Newsletter", "We write monthly.", by="user:1")
    await services.consent.grant(
        person.subject_id, "marketing_email", "email", source="web_form",
        notice_version=notice.version, actor_id="user:1",
    )  # fmt: skip
    await erase_by_request(services, person.subject_id, person.id)
    await drain(services)

    assert receiver.bad_signatures == 0
    types = receiver.types()
    for expected in (
        "record.created",
        "record.updated",
        "consent.changed",
        "request.state_changed",
        "erasure.completed",
    ):
        assert expected in types, (expected, types)
    updated = next(e for e in receiver.events() if e["type"] == "record.updated")
    assert updated["data"]["fields"] == ["email"]
    assert updated["data"]["record_id"] == person.id
    states = [
        (e["data"]["from_state"], e["data"]["to_state"])
        for e in receiver.events()
        if e["type"] == "request.state_changed"
    ]
    assert ("approved", "fulfilled") in states
    assert_no_personal_value(receiver)
    # Every delivery is in the log as delivered, with its attempt.
    rows = await WebhookDelivery.select(WebhookDelivery.state)
    assert rows
    assert {r["state"] for r in rows} == {"delivered"}


async def test_a_receiver_that_was_down_gets_the_event_on_a_retry(
    services: Services, staff: Staff, receiver: Receiver
) -> None:
    endpoint = await subscribe(services, receiver, ["record.created"])
    receiver.stop()  # down
    rep = await staff.create("sales")
    person = await services.gateway.create(
        staff.actor(rep), "contact", sales_contact(**NAME, email=EMAIL, phone=PHONE)
    )
    await services.webhooks.sender.deliver_due()
    [log] = await services.webhooks.deliveries(endpoint)
    assert (log.state, log.attempts, log.last_error) == ("pending", 1, "connect")
    assert log.next_attempt_at > dt.datetime.now(dt.UTC)  # backed off

    await services.webhooks.sender.deliver_due()  # not due yet: nothing is sent
    assert (await services.webhooks.deliveries(endpoint))[0].attempts == 1

    receiver.start()  # back up, same address
    await services.webhooks.sender.deliver_due(log.next_attempt_at + dt.timedelta(seconds=1))
    [log] = await services.webhooks.deliveries(endpoint)
    assert (log.state, log.attempts, log.last_status) == ("delivered", 2, 204)
    assert receiver.bad_signatures == 0
    [event] = receiver.events()
    assert event["type"] == "record.created"
    assert event["data"]["record_id"] == person.id
    assert_no_personal_value(receiver)
    attempts = await WebhookAttempt.select(WebhookAttempt.status).order_by(WebhookAttempt.at)
    assert [a["status"] for a in attempts] == [0, 204]


async def test_an_endpoint_failing_again_and_again_is_switched_off(services: Services) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    created = await services.webhooks.create(ADMIN, "Gone", dead, ["alert.raised"])
    endpoint = created.endpoint.id
    for _ in range(queue.DISABLE_AFTER):
        await services.webhooks.send_test(ADMIN, endpoint)
    now = dt.datetime.now(dt.UTC)
    for _ in range(queue.MAX_ATTEMPTS + 1):
        await services.webhooks.sender.deliver_due(now)
        now += dt.timedelta(seconds=queue.BACKOFF_CAP_SECONDS + 1)
    current = await services.webhooks.get(endpoint)
    assert not current.active
    assert current.disabled_reason == "failures"
    log = await services.webhooks.deliveries(endpoint)
    assert {d.state for d in log} == {"failed"}
    assert {d.attempts for d in log} == {queue.MAX_ATTEMPTS}


async def test_a_claim_is_one_workers_and_an_expired_lease_is_claimed_again(
    services: Services,
) -> None:
    created = await services.webhooks.create(
        ADMIN, "Mirror", "http://127.0.0.1:9/x", ["alert.raised"]
    )
    for _ in range(6):
        await services.webhooks.send_test(ADMIN, created.endpoint.id)
    now = dt.datetime.now(dt.UTC)
    first, second = await asyncio.gather(queue.claim(now, 4), queue.claim(now, 4))
    ids_first, ids_second = {c.id for c in first}, {c.id for c in second}
    assert not ids_first & ids_second
    assert len(ids_first | ids_second) == 6
    # The worker holding them died: once the lease runs out another worker claims them.
    assert await queue.claim(now) == []
    later = now + dt.timedelta(seconds=queue.LEASE_SECONDS + 1)
    again = await queue.claim(later)
    assert {c.id for c in again} == ids_first | ids_second
    assert {c.attempts for c in again} == {2}


async def test_a_change_that_rolls_back_queues_nothing(
    services: Services, receiver: Receiver
) -> None:
    await subscribe(services, receiver, ["record.created"])
    event = AuditEvent(
        actor_id="system:test", actor_role="system", action="create", resource_type="contact",
        outcome=Outcome.ALLOWED, resource_id="00000000-0000-4000-8000-000000000001",
    )  # fmt: skip
    queued_inside: list[int] = []

    async def failing_change() -> None:
        async with db.write_transaction():
            await services.audit.append(event)
            queued_inside.append(await WebhookDelivery.count())
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        await failing_change()
    assert queued_inside == [1]  # queued in the change's transaction
    assert await WebhookDelivery.count() == 0


async def test_erasure_notifies_each_recipient_and_the_request_shows_who_acknowledged(
    settings: Settings, services: Services, staff: Staff, receiver: Receiver, smtp: LocalSmtp
) -> None:
    recipients = Recipients(
        services.audit, Mailer(smtp.settings(settings)), services.recipients.tokens,
        settings.public_url,
    )  # fmt: skip
    endpoint = await subscribe(services, receiver, ["alert.raised"])
    mailing = await recipients.create(
        ADMIN,
        RecipientInput(
            "Mailhouse Ltd", "processor", ["marketing_email"], ["contact.email"], "email",
            email="privacy@mailhouse.example",
        ),
    )  # fmt: skip
    billing = await recipients.create(
        ADMIN,
        RecipientInput(
            "Ledger GmbH", "recipient", [], ["contact.first_name"], "webhook",
            endpoint_id=endpoint,
        ),
    )  # fmt: skip
    rep = await staff.create("sales")
    person = await services.gateway.create(
        staff.actor(rep), "contact", sales_contact(**NAME, email=EMAIL, phone=PHONE)
    )
    notice = await services.consent.publish_notice("Newsletter", "We write monthly.", by="user:1")
    await services.consent.grant(
        person.subject_id, "marketing_email", "email", source="web_form",
        notice_version=notice.version, actor_id="user:1",
    )  # fmt: skip
    request_id = await erase_by_request(services, person.subject_id, person.id)

    told = await recipients.notices(request_id=request_id)
    assert {n.recipient_name for n in told} == {"Mailhouse Ltd", "Ledger GmbH"}
    assert {n.state for n in told} == {"pending"}
    await recipients.send_due()
    await drain(services)

    mails = [m for m in smtp.received if m.recipients == ["privacy@mailhouse.example"]]
    assert len(mails) == 1
    link = next(line for line in mails[0].text.splitlines() if "/notices/acknowledge/" in line)
    notices = [e for e in receiver.events() if e["type"] == "recipient.notice"]
    assert len(notices) == 1
    assert notices[0]["data"]["reason"] == "erasure"
    assert notices[0]["data"]["request_id"] == request_id
    assert receiver.bad_signatures == 0
    assert_no_personal_value(receiver)
    for mail in mails:
        assert all(v not in mail.text for v in PERSONAL)

    # The mail house acknowledges through its link; Ledger does not.
    assert await recipients.acknowledge(link.rsplit("/", 1)[1])
    assert not await recipients.acknowledge(link.rsplit("/", 1)[1][:-2] + "xx")
    told = {n.recipient_name: n for n in await recipients.notices(request_id=request_id)}
    assert told["Mailhouse Ltd"].acknowledged_at is not None
    assert told["Ledger GmbH"].acknowledged_at is None
    assert told["Ledger GmbH"].sent_at is not None
    assert told["Ledger GmbH"].delivery_state == "delivered"  # the webhook arrived

    # A week on, only the one who did not acknowledge is reminded.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    await recipients.send_due(later)
    await drain(services, later)
    reminders = [e for e in receiver.events() if e["type"] == "recipient.notice"]
    assert len(reminders) == 2
    assert reminders[1]["data"]["reminder"] is True
    assert len([m for m in smtp.received if m.recipients == ["privacy@mailhouse.example"]]) == 1
    told = {n.recipient_name: n for n in await recipients.notices(request_id=request_id)}
    assert told["Ledger GmbH"].reminders == 1
    del billing, mailing


async def test_the_admin_pages_show_the_secret_once_send_a_test_event_and_keep_others_out(
    services: Services, staff: Staff, receiver: Receiver
) -> None:
    admin = await web_login(staff, await staff.create("admin"))
    page = await admin.get("/admin/webhooks/")
    assert page.status_code == 200
    created = await admin.post(
        "/admin/webhooks/new",
        data={
            "name": "Mirror",
            "url": receiver.url,
            "event_types": ["record.created", "alert.raised"],
            "_csrf_token": csrf_of(page),
        },
    )
    assert created.status_code == 201
    secret = re.search(r"<code>(whsec_[^<]+)</code>", created.text)
    assert secret is not None
    receiver.secret = html.unescape(secret.group(1))
    again = await admin.get("/admin/webhooks/")
    assert "whsec_" not in again.text  # shown once
    [endpoint] = await services.webhooks.all()
    sent = await admin.post(
        f"/admin/webhooks/{endpoint.id}", data={"action": "test", "_csrf_token": csrf_of(again)}
    )
    assert sent.status_code in (302, 303)
    await drain(services)
    assert receiver.types() == ["webhook.test"]
    assert receiver.bad_signatures == 0
    log = await admin.get("/admin/webhooks/")
    assert "webhook.test" in text_of(log)
    assert "HTTP 204" in text_of(log)

    bad = await admin.post(
        "/admin/recipients/new",
        data={"name": "X", "kind": "processor", "channel": "email", "email": "nope",
              "_csrf_token": csrf_of(log)},
    )  # fmt: skip
    assert bad.status_code == 400
    assert "email" in text_of(bad)
    rep = await web_login(staff, await staff.create("sales"))
    assert (await rep.get("/admin/webhooks/")).status_code == 404
    assert (await rep.get("/admin/recipients/")).status_code == 404
    officer = await web_login(staff, await staff.create("compliance"))
    assert (await officer.get("/admin/recipients/")).status_code == 200
    assert (await officer.get("/admin/webhooks/")).status_code == 404


async def test_a_recipient_acknowledges_through_its_link_and_the_request_page_shows_it(
    services: Services, staff: Staff, app: Any
) -> None:
    await services.recipients.create(
        ADMIN, RecipientInput("Mailhouse Ltd", "processor", [], [], "email",
                              email="privacy@mailhouse.example"),
    )  # fmt: skip
    rep = await staff.create("sales")
    person = await services.gateway.create(
        staff.actor(rep), "contact", sales_contact(**NAME, email=EMAIL, phone=PHONE)
    )
    request_id = await erase_by_request(services, person.subject_id, person.id)
    [notice] = await services.recipients.notices(request_id=request_id)
    link = services.recipients.acknowledge_url(notice.id)
    path = link.split("://", 1)[1].split("/", 1)[1]
    anonymous = http_client(app)
    shown = await anonymous.get("/" + path)
    assert shown.status_code == 200
    assert "I have acted on this notice" in shown.text
    assert (await services.recipients.notices(request_id=request_id))[0].acknowledged_at is None
    forged = await anonymous.post("/" + path[:-3] + "abc")
    assert forged.status_code == 404
    done = await anonymous.post("/" + path)
    assert done.status_code == 200
    officer = await web_login(staff, await staff.create("compliance"))
    page = await officer.get(f"/compliance/requests/{request_id}")
    section = text_of(page).split("Recipients told (Art. 19)", 1)[1].split("History", 1)[0]
    assert "Mailhouse Ltd" in section
    assert "not acknowledged" not in section


async def test_an_erasure_or_restriction_without_a_request_tells_the_recipients_too(
    services: Services, staff: Staff
) -> None:
    await services.recipients.create(
        ADMIN,
        RecipientInput("Mailhouse Ltd", "processor", ["marketing_email"], [], "email",
                       email="privacy@mailhouse.example"),
    )  # fmt: skip
    await services.recipients.create(
        ADMIN,
        RecipientInput("Courier plc", "recipient", ["customer_relationship"], [], "email",
                       email="dpo@courier.example"),
    )  # fmt: skip
    rep = await staff.create("sales")
    gw = services.gateway
    kept = await gw.create(staff.actor(rep), "contact", sales_contact(**NAME, email=EMAIL))
    await services.erasure.restrictions.restrict(kept.subject_id, "accuracy_contested", by="user:1")
    told = await services.recipients.notices(subject_id=kept.subject_id)
    # No consent history for marketing e-mail: only the contract-based recipient is told.
    assert [(n.recipient_name, n.reason) for n in told] == [("Courier plc", "restriction")]

    gone = await gw.create(staff.actor(rep), "contact", sales_contact(**NAME, email=EMAIL))
    await services.erasure.erase(gone.subject_id, by="system:test")
    told = await services.recipients.notices(subject_id=gone.subject_id)
    assert [(n.recipient_name, n.reason) for n in told] == [("Courier plc", "erasure")]


SUBJECT = "0b5d6a57-36f7-4a8c-9a0e-6d0c1a2b3c4d"


def test_alerts_and_consent_changes_map_to_their_events_and_reads_to_none() -> None:
    alert = AuditEvent(
        actor_id="system:alerts", actor_role="system", action="alert.create",
        resource_type="alert", resource_id="7", outcome=Outcome.ALLOWED,
        detail={"kind": "bulk_read"},
    )  # fmt: skip
    assert webhook_event_of(alert) == WebhookEvent(
        "alert.raised", {"alert_id": "7", "kind": "bulk_read"}
    )
    read = AuditEvent(
        actor_id="user:1", actor_role="sales", action="read", resource_type="contact",
        resource_id="x", outcome=Outcome.ALLOWED, fields=("email",),
    )  # fmt: skip
    assert webhook_event_of(read) is None
    denied = AuditEvent(
        actor_id="user:1", actor_role="sales", action="update", resource_type="contact",
        resource_id="x", outcome=Outcome.DENIED, fields=("email",),
    )  # fmt: skip
    assert webhook_event_of(denied) is None
    lifted = AuditEvent(
        actor_id="subject", actor_role="data_subject", action="consent.lift_objection",
        resource_type="consent", resource_id="12", subject_ids=(SUBJECT,),
        purpose="direct_marketing", outcome=Outcome.ALLOWED, detail={"channel": "any"},
    )  # fmt: skip
    assert webhook_event_of(lifted) == WebhookEvent(
        "consent.changed",
        {
            "consent_event_id": "12",
            "subject_ids": [SUBJECT],
            "purpose": "direct_marketing",
            "change": "lift_objection",
            "channel": "any",
        },
    )


async def test_the_background_job_delivers_what_a_change_queued(
    services: Services, staff: Staff, receiver: Receiver
) -> None:
    """The worker loop itself (server.background), not a test's call, posts the message."""
    await subscribe(services, receiver, ["record.created"])
    rep = await staff.create("sales")
    await services.gateway.create(staff.actor(rep), "contact", sales_contact(**NAME, email=EMAIL))
    stop = asyncio.Event()
    job = asyncio.create_task(deliver_webhooks_forever(services, 0.05, stop))
    for _ in range(400):  # bounded wait for the worker's round, not a timing assertion
        if receiver.bodies:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await job
    assert receiver.types() == ["record.created"]
    assert receiver.bad_signatures == 0


async def test_an_endpoint_a_recipient_uses_cannot_be_deleted_and_its_events_can_change(
    services: Services, staff: Staff, receiver: Receiver
) -> None:
    endpoint = await subscribe(services, receiver, ["record.created"])
    await services.recipients.create(
        ADMIN, RecipientInput("Ledger GmbH", "recipient", [], [], "webhook", endpoint_id=endpoint)
    )
    admin = await web_login(staff, await staff.create("admin"))
    page = await admin.get("/admin/webhooks/")
    refused = await admin.post(
        f"/admin/webhooks/{endpoint}", data={"action": "delete", "_csrf_token": csrf_of(page)}
    )
    assert refused.status_code == 409
    assert "a recipient is told through this endpoint" in text_of(refused)
    assert (await services.webhooks.get(endpoint)).active
    changed = await admin.post(
        f"/admin/webhooks/{endpoint}",
        data={
            "action": "events",
            "event_types": ["record.deleted", "alert.raised"],
            "_csrf_token": csrf_of(page),
        },
    )
    assert changed.status_code in (302, 303)
    current = await services.webhooks.get(endpoint)
    assert current.event_types == ("alert.raised", "record.deleted")


async def test_the_daily_housekeeping_forgets_old_finished_deliveries_only(
    services: Services,
) -> None:
    created = await services.webhooks.create(ADMIN, "Mirror", "http://127.0.0.1:9/x", [])
    for _ in range(3):
        await services.webhooks.send_test(ADMIN, created.endpoint.id)
    [done, failed, waiting] = await services.webhooks.deliveries(created.endpoint.id)
    await WebhookDelivery.update({WebhookDelivery.state: "delivered"}).where(
        WebhookDelivery.id == uuid.UUID(done.id)
    )
    await WebhookDelivery.update({WebhookDelivery.state: "failed"}).where(
        WebhookDelivery.id == uuid.UUID(failed.id)
    )
    assert await queue.purge() == 0  # too recent
    later = dt.datetime.now(dt.UTC) + queue.DELIVERIES_KEPT + dt.timedelta(days=1)
    assert await queue.purge(later) == 2
    assert [d.id for d in await services.webhooks.deliveries(created.endpoint.id)] == [waiting.id]
