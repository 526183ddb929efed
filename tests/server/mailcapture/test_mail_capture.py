"""Mailbox capture (issue 21, item 1) against a real IMAP server (Dovecot) and a real SMTP
path (aiosmtplib to the built-in aiosmtpd receiver).

What a user would notice: a customer's e-mail shows on their 360 page after one sync;
mail from strangers leaves nothing behind (unless the lead rule is on); syncing again adds
nothing; a sync that died half-way finishes on the next run; a colleague cannot read a
private captured mail until its thread is shared; the database holds no subject, body or
mailbox password in the clear; erasing a person leaves none of their captured mail
readable, scrubs them from others' captured mail, and the audit trail still verifies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from server.gateway import Actor, Record
from server.logs import configure_logging
from server.mailcapture.capture import Filed, Mailbox, MailCapture
from server.mailcapture.imap import check_connection, sync_mailbox
from server.mailcapture.jobs import LoggingAddress, capture_of
from server.mailcapture.receiver import (
    register_recipient,
    serve_receiver,
    unregister_recipient,
)
from server.mailcapture.service import MailboxView
from server.services import Services
from tests.admin_ui.test_admin_ui import submit, text_of, web_login
from tests.conftest import Staff, contact_values
from tests.dbutil import count_rows, raw_sql
from tests.imap_server import ImapServer, free_port, run_dovecot
from tests.server.vault.test_at_rest import _database_copy

ADMIN = Actor.system("test-admin")
JANE = "jane.quartermain@customer.example"
SUBJECT = "Quarterly pallet order for Zennor"
BODY = "Please send forty pallets of the blue glaze by Friday. Regards, Jane"


@pytest.fixture
def imap() -> Iterator[ImapServer]:
    # Not pytest's tmp_path: its parents are private to root, and Dovecot's mail processes
    # run as an unprivileged user that must reach the Maildir.
    root = Path(tempfile.mkdtemp(prefix="consentry-dovecot-"))
    try:
        yield from run_dovecot(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def message(
    sender: str,
    to: str,
    subject: str = SUBJECT,
    body: str = BODY,
    *,
    cc: str = "",
    message_id: str | None = None,
    in_reply_to: str = "",
    attachment: tuple[str, bytes] | None = None,
) -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    if cc:
        mail["Cc"] = cc
    mail["Subject"] = subject
    mail["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    mail["Message-ID"] = message_id or make_msgid(domain="customer.example")
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
        mail["References"] = in_reply_to
    mail.set_content(body)
    if attachment is not None:
        mail.add_attachment(
            attachment[1], maintype="application", subtype="pdf", filename=attachment[0]
        )
    return mail.as_bytes()


async def connect(services: Services, actor: Actor, imap: ImapServer) -> MailboxView:
    return await services.mailboxes.connect(
        actor,
        label="Work inbox",
        host="127.0.0.1",
        port=imap.port,
        security="none",
        folder="INBOX",
        address=imap.user,
        purpose="customer_relationship",
        username=imap.user,
        password=imap.password,
    )


async def sync(services: Services, mailbox: MailboxView, **kw: Any) -> Any:
    capture = kw.pop("capture", None) or await capture_of(services.gateway, services.settings)
    return await sync_mailbox(services.mailboxes, capture, mailbox.id, **kw)


async def person(services: Services, owner: Any, email: str, **names: str) -> Record:
    values = contact_values(email=email, **names)
    return await services.gateway.create(ADMIN, "contact", values, owner_id=owner.user_id)


async def mails(services: Services) -> list[Record]:
    page = await services.gateway.list(ADMIN, "mail", page_size=100)
    return page.items


# --- one sync: known contact in, stranger out ----------------------------------------------


async def test_a_contacts_mail_is_on_their_360_page_after_one_sync(
    services: Services, staff: Staff, imap: ImapServer
) -> None:
    rep = await staff.create("sales")
    jane = await person(services, rep, JANE, first_name="Jane", last_name="Quartermain")
    mailbox = await connect(services, staff.actor(rep), imap)
    imap.deliver(
        message(
            f"Jane Quartermain <{JANE}>",
            imap.user,
            attachment=("glaze-spec.pdf", b"%PDF-1.4 " + b"x" * 3000),
        )
    )

    report = await sync(services, mailbox)

    assert (report.seen, report.captured, report.skipped, report.error) == (1, 1, 0, "")
    client = await web_login(staff, rep)
    page = await client.get(f"/contacts/{jane.id}/360")
    assert page.status_code == 200
    assert f"E-mail received: {SUBJECT}" in text_of(page)
    assert "glaze-spec.pdf (3 KB)" in text_of(page)
    [mail] = await mails(services)
    detail = await client.get(f"/mail/{mail.id}")
    assert BODY in text_of(detail)
    assert "private to you" in text_of(detail)
    assert mail.subject_id == jane.subject_id  # sealed under Jane's key
    assert mail.values["direction"] == "inbound"
    # the progress the Mailboxes page shows
    boxes = await client.get("/mailboxes")
    assert "1 seen, 1 captured, 0 skipped" in text_of(boxes)
    assert imap.password not in boxes.text


async def test_mail_from_an_unknown_address_leaves_no_trace(
    services: Services, staff: Staff, imap: ImapServer, database_url: str
) -> None:
    rep = await staff.create("sales")
    await person(services, rep, JANE)
    mailbox = await connect(services, staff.actor(rep), imap)
    stranger = "ottoline.vexworthy@elsewhere.example"
    secret_subject = "Vexworthy private matter"
    configure_logging("INFO", json=True)
    captured_log = io.StringIO()
    handler = logging.StreamHandler(captured_log)
    logging.getLogger().addHandler(handler)
    try:
        imap.deliver(
            message(f"Ottoline <{stranger}>", imap.user, secret_subject, "Hush, Vexworthy")
        )
        report = await sync(services, mailbox)
    finally:
        logging.getLogger().removeHandler(handler)

    assert (report.seen, report.captured, report.skipped) == (1, 0, 1)
    assert await count_rows(database_url, "captured_mail") == 0
    assert await count_rows(database_url, "lead") == 0
    copy = (await _database_copy(database_url)).lower()
    for value in (stranger, "vexworthy"):
        assert value.encode() not in copy
    assert "vexworthy" not in captured_log.getvalue().lower()
    await services.audit_trail.seal_all()
    assert (await services.audit_trail.verify()).ok


async def test_the_lead_rule_turns_an_unknown_sender_into_a_lead(
    services: Services, staff: Staff, imap: ImapServer
) -> None:
    rep = await staff.create("sales")
    mailbox = await connect(services, staff.actor(rep), imap)
    stranger = "new.prospect@elsewhere.example"
    imap.deliver(message(f"Norah Prospect <{stranger}>", imap.user, "Interested in glaze"))
    capture = await capture_of(services.gateway, services.settings)
    capture.lead_rule = True

    report = await sync(services, mailbox, capture=capture)

    assert report.captured == 1
    [lead_id] = [
        rid for rtype, rid, _ in await services.gateway.locate_people(ADMIN, "email", stranger)
    ]
    lead = await services.gateway.read(ADMIN, "lead", lead_id)
    assert (lead.values["first_name"], lead.values["last_name"]) == ("Norah", "Prospect")
    assert lead.values["status"] == "new"  # the stale-lead retention clock runs from here
    assert lead.owner_id == rep.user_id
    [mail] = await mails(services)
    assert (mail.values["record_type"], mail.subject_id) == ("lead", lead.subject_id)


# --- dedupe and resume ---------------------------------------------------------------------


class DiesAfter(MailCapture):
    """Fault injection: the worker dies while filing the ``n``-th message of a run."""

    def __init__(self, inner: MailCapture, n: int) -> None:
        self.__dict__.update(inner.__dict__)
        self.calls = 0
        self.n = n

    async def capture(self, message: EmailMessage, raw: bytes, mailbox: Mailbox) -> Filed:
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("worker killed")
        return await super().capture(message, raw, mailbox)


async def test_a_second_sync_adds_nothing_and_an_interrupted_one_resumes(
    services: Services, staff: Staff, imap: ImapServer, database_url: str
) -> None:
    rep = await staff.create("sales")
    await person(services, rep, JANE)
    mailbox = await connect(services, staff.actor(rep), imap)
    for n in range(5):
        imap.deliver(message(JANE, imap.user, f"Order {n}", f"Line {n}"))

    dying = DiesAfter(await capture_of(services.gateway, services.settings), 4)
    first = await sync(services, mailbox, capture=dying, batch=2)

    assert first.error.startswith("the sync stopped")
    assert 2 <= await count_rows(database_url, "captured_mail") < 5
    state = await services.mailboxes.load(mailbox.id)
    assert state is not None
    assert state.last_uid == 2
    assert not state.running
    assert "stopped" in state.last_error

    second = await sync(services, mailbox, batch=2)
    assert second.error == ""
    subjects = sorted(str(m.values["subject"]) for m in await mails(services))
    assert subjects == [f"Order {n}" for n in range(5)]  # each once

    third = await sync(services, mailbox)
    assert (third.seen, third.captured) == (0, 0)
    assert await count_rows(database_url, "captured_mail") == 5


async def test_a_message_to_two_customers_is_a_record_under_each_ones_key(
    services: Services, staff: Staff, imap: ImapServer
) -> None:
    rep = await staff.create("sales")
    jane = await person(services, rep, JANE)
    tom = await person(services, rep, "tom.fairweather@customer.example")
    mailbox = await connect(services, staff.actor(rep), imap)
    imap.deliver(message(imap.user, JANE, cc="tom.fairweather@customer.example"))

    await sync(services, mailbox)

    found = {m.subject_id: m for m in await mails(services)}
    assert set(found) == {jane.subject_id, tom.subject_id}
    assert all(m.values["direction"] == "outbound" for m in found.values())
    assert len({m.values["message_key"] for m in found.values()}) == 1


# --- privacy: private until shared, nothing in clear -------------------------------------


async def test_a_colleague_reads_a_captured_mail_only_once_the_thread_is_shared(
    services: Services, staff: Staff, imap: ImapServer, database_url: str
) -> None:
    owner = await staff.create("support", team="north")
    colleague = await staff.create("support", team="north")
    jane = await person(services, owner, JANE)
    mailbox = await connect(services, staff.actor(owner), imap)
    first_id = make_msgid(domain="customer.example")
    imap.deliver(message(JANE, imap.user, message_id=first_id))
    await sync(services, mailbox)
    [mail] = await mails(services)

    theirs = await staff.login(colleague)
    assert (await theirs.get(f"/api/v1/mail/{mail.id}")).status_code == 404
    listed = await theirs.get("/api/v1/mail")
    assert listed.status_code == 200
    assert listed.json()["total"] == 0
    page = await web_login(staff, colleague)
    on_360 = await page.get(f"/contacts/{jane.id}/360")
    assert on_360.status_code == 200
    assert SUBJECT not in on_360.text
    # the colleague can neither share it nor change it
    assert (await theirs.post(f"/api/v1/mail/{mail.id}/thread/share")).status_code == 404
    patch = await theirs.patch(f"/api/v1/mail/{mail.id}", json={"visibility": "shared"})
    assert patch.status_code == 404

    mine = await staff.login(owner)
    # nor can the owner hand it over: sharing is the way (support may reassign tasks only)
    handed = await mine.patch(f"/api/v1/mail/{mail.id}", json={"owner_id": colleague.user_id})
    assert handed.status_code == 403, handed.text
    shared = await mine.post(f"/api/v1/mail/{mail.id}/thread/share")
    assert shared.status_code == 201, shared.text
    assert shared.json() == {"changed": 1, "visibility": "shared"}

    read = await theirs.get(f"/api/v1/mail/{mail.id}")
    assert read.status_code == 200
    assert read.json()["body"] == BODY
    assert SUBJECT in (await page.get(f"/contacts/{jane.id}/360")).text
    # a reply in the shared thread arrives shared
    imap.deliver(message(JANE, imap.user, "Re: " + SUBJECT, "And ten more.", in_reply_to=first_id))
    await sync(services, mailbox)
    assert (await theirs.get("/api/v1/mail")).json()["total"] == 2
    # only the owner unshares
    assert (await theirs.post(f"/api/v1/mail/{mail.id}/thread/unshare")).status_code == 403
    await mine.post(f"/api/v1/mail/{mail.id}/thread/unshare")
    assert (await theirs.get("/api/v1/mail")).json()["total"] == 0

    copy = await _database_copy(database_url)
    assert b"cs1." in copy
    for plain in (SUBJECT, BODY, "forty pallets", JANE, imap.password):
        assert plain.encode() not in copy, plain


async def test_a_wrong_password_is_a_clear_error_and_the_login_is_never_shown(
    services: Services, staff: Staff, imap: ImapServer
) -> None:
    rep = await staff.create("sales")
    good = await connect(services, staff.actor(rep), imap)
    assert await check_connection(services.mailboxes, good) == ""
    bad = await services.mailboxes.connect(
        staff.actor(rep),
        label="Typo",
        host="127.0.0.1",
        port=imap.port,
        security="none",
        folder="INBOX",
        address=imap.user,
        purpose="customer_relationship",
        username=imap.user,
        password="not-the-password",
    )
    problem = await check_connection(services.mailboxes, bad)
    assert problem == "the server refused the login (user name or app password)"
    report = await sync(services, bad)
    assert report.error == problem
    client = await web_login(staff, rep)
    page = await client.get("/mailboxes")
    assert problem in text_of(page)
    assert "not-the-password" not in page.text
    other = await staff.create("sales")
    assert await services.mailboxes.get(staff.actor(other), good.id) is None


async def test_sync_now_lands_on_a_page_that_says_syncing_and_refreshes_itself(
    services: Services, staff: Staff, imap: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run starts in the background; however late it starts, the page the button
    redirects to must already show it running (or it shows "Idle" and never refreshes)."""
    rep = await staff.create("sales")
    mailbox = await connect(services, staff.actor(rep), imap)
    started = asyncio.Event()
    go = asyncio.Event()

    async def late_sync(*args: Any, **kwargs: Any) -> Any:
        started.set()
        await go.wait()  # a busy server: the run has not even begun when the page loads
        return await sync_mailbox(*args, **kwargs)

    monkeypatch.setattr("admin_ui.pages.mailboxes.sync_mailbox", late_sync)
    client = await web_login(staff, rep)
    answer = await submit(client, "/mailboxes", f"/mailboxes/{mailbox.id}", {"action": "sync"})
    assert answer.status_code in {200, 303}
    page = await client.get("/mailboxes")
    assert "Syncing" in text_of(page)
    assert 'http-equiv="refresh"' in page.text
    again = await submit(client, "/mailboxes", f"/mailboxes/{mailbox.id}", {"action": "sync"})
    assert "already running" in text_of(
        again if again.status_code == 200 else await client.get("/mailboxes")
    )
    go.set()
    await asyncio.wait_for(started.wait(), 5)
    for _ in range(100):  # let the background run finish before the fixtures close
        if not (await services.mailboxes.get(staff.actor(rep), mailbox.id)).running:
            break
        await asyncio.sleep(0.05)


# --- the SMTP receiver ------------------------------------------------------------------


@pytest.fixture
async def receiver(services: Services) -> AsyncIterator[tuple[int, str]]:
    address = "crm-log@ourco.example"
    port = free_port()
    services_with = services.settings.with_overrides(capture_address=address)
    register_recipient(address, LoggingAddress(_with_settings(services, services_with)))
    server = await serve_receiver("127.0.0.1", port)
    try:
        yield port, address
    finally:
        server.close()
        await server.wait_closed()
        unregister_recipient(address)


def _with_settings(services: Services, settings: Any) -> Services:
    return dataclasses.replace(services, settings=settings)


async def test_mail_bccd_to_the_logging_address_is_filed_and_others_are_refused(
    services: Services, staff: Staff, receiver: tuple[int, str]
) -> None:
    port, address = receiver
    rep = await staff.create("sales")
    jane = await person(services, rep, JANE)
    raw = message(rep.email, JANE, "Your quote", "Attached is your quote.")

    await aiosmtplib.send(
        raw, sender=rep.email, recipients=[address], hostname="127.0.0.1", port=port
    )

    [mail] = await mails(services)
    assert mail.subject_id == jane.subject_id
    assert mail.owner_id == rep.user_id  # the BCC'ing staff member owns it, privately
    assert (mail.values["direction"], mail.values["visibility"]) == ("outbound", "private")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await aiosmtplib.send(
            raw,
            sender=rep.email,
            recipients=["someone@ourco.example"],
            hostname="127.0.0.1",
            port=port,
        )
    assert len(await mails(services)) == 1

    # A customer's message forwarded as an attachment is filed as the customer's
    tom = await person(services, rep, "tom.fairweather@customer.example")
    original = EmailMessage()
    original["From"] = "Tom Fairweather <tom.fairweather@customer.example>"
    original["To"] = rep.email
    original["Subject"] = "Broken pallet"
    original["Message-ID"] = make_msgid(domain="customer.example")
    original.set_content("Two pallets arrived broken.")
    forward = EmailMessage()
    forward["From"] = rep.email
    forward["To"] = address
    forward["Subject"] = "Fwd: Broken pallet"
    forward.set_content("For the record.")
    forward.add_attachment(original)
    await aiosmtplib.send(forward, hostname="127.0.0.1", port=port)
    toms = [m for m in await mails(services) if m.subject_id == tom.subject_id]
    assert [(m.values["subject"], m.values["direction"]) for m in toms] == [
        ("Broken pallet", "inbound")
    ]
    assert toms[0].owner_id == rep.user_id


# --- rights: export, erasure, retention -------------------------------------------------


async def test_export_includes_and_erasure_removes_captured_mail(
    services: Services, staff: Staff, imap: ImapServer, database_url: str
) -> None:
    rep = await staff.create("sales")
    jane = await person(services, rep, JANE, first_name="Jane", last_name="Quartermain")
    bram = await person(
        services, rep, "bram.oldcastle@customer.example", first_name="Bram", last_name="Oldcastle"
    )
    mailbox = await connect(services, staff.actor(rep), imap)
    imap.deliver(
        message(
            JANE,
            imap.user,
            "Pallets",
            "Bram Oldcastle will collect them.",
            cc="bram.oldcastle@customer.example",
        )
    )
    await sync(services, mailbox)

    exported = await services.gateway.export_subject(
        Actor.system("dsr-export"), jane.subject_id, purpose="compliance"
    )
    assert any(r.resource == "mail" and r.values["subject"] == "Pallets" for r in exported)

    result = await services.erasure.erase(bram.subject_id, by="user:1")
    assert result is not None
    left = {
        m.subject_id: m
        for m in (
            await services.gateway.list(ADMIN, "mail", page_size=100, include_erased=True)
        ).items
    }
    janes = left[jane.subject_id]
    assert "Oldcastle" not in str(janes.values["body"])
    assert "bram.oldcastle" not in str(janes.values["correspondents"])
    brams = left.get(bram.subject_id)
    assert brams is None or brams.erased or not brams.values.get("body")
    rows = await raw_sql(database_url, "SELECT subject_id, subject, body FROM captured_mail")
    erased = [r for r in rows if str(r["subject_id"]) == bram.subject_id]
    assert erased
    assert all(r["subject"] is None and r["body"] is None for r in erased)
    await services.audit_trail.seal_all()
    assert (await services.audit_trail.verify()).ok


async def test_retention_erases_the_contents_of_old_captured_mail(
    services: Services, staff: Staff, imap: ImapServer
) -> None:
    rep = await staff.create("sales")
    await person(services, rep, JANE)
    mailbox = await connect(services, staff.actor(rep), imap)
    imap.deliver(message(JANE, imap.user))
    await sync(services, mailbox)

    await services.retention.run(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=2 * 366 + 2))

    [mail] = await mails(services)
    assert mail.values["subject"] is None
    assert mail.values["body"] is None
    assert mail.values["direction"] == "inbound"


async def test_a_purpose_set_to_metadata_only_keeps_no_subject_or_body(
    services: Services, staff: Staff, imap: ImapServer, database_url: str
) -> None:
    rep = await staff.create("sales")
    await person(services, rep, JANE)
    mailbox = await connect(services, staff.actor(rep), imap)
    imap.deliver(message(JANE, imap.user, attachment=("terms.pdf", b"%PDF-1.4 terms")))
    capture = await capture_of(services.gateway, services.settings)
    capture.content = {"customer_relationship": "metadata"}

    await sync(services, mailbox, capture=capture)

    [mail] = await mails(services)
    assert (mail.values["subject"], mail.values["body"]) == (None, None)
    assert mail.values["attachments"] == "terms.pdf (14 B)"
    assert JANE in str(mail.values["correspondents"])


def test_the_capture_settings_are_read_and_checked() -> None:
    from server.settings import ConfigurationError, Settings

    default = Settings.from_env({})
    assert default.smtp_receiver_port == 0  # the receiver is off unless asked for
    assert dict(default.mail_capture_content)["customer_relationship"] == "full"
    assert not default.mail_capture_lead_rule
    chosen = Settings.from_env(
        {
            "CONSENTRY_MAIL_CAPTURE_CONTENT": "customer_support:metadata",
            "CONSENTRY_SMTP_RECEIVER_PORT": "2525",
            "CONSENTRY_CAPTURE_ADDRESS": "CRM-Log@OurCo.example",
            "CONSENTRY_MAIL_CAPTURE_LEAD_RULE": "true",
        }
    )
    assert dict(chosen.mail_capture_content) == {"customer_support": "metadata"}
    assert (chosen.smtp_receiver_port, chosen.capture_address) == (2525, "crm-log@ourco.example")
    assert chosen.mail_capture_lead_rule
    with pytest.raises(ConfigurationError, match="MAIL_CAPTURE_CONTENT"):
        Settings.from_env({"CONSENTRY_MAIL_CAPTURE_CONTENT": "customer_support:everything"})
    with pytest.raises(ConfigurationError, match="SMTP_RECEIVER_PORT"):
        Settings.from_env({"CONSENTRY_SMTP_RECEIVER_PORT": "70000"})
