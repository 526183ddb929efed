"""Wiring mailbox capture to a running server: the background sync, the SMTP receiver's
logging address, and the objects pages and commands need (built from ``Services``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage, Message
from email.utils import getaddresses

from server.auth.directory import staff_identities
from server.datamap import normalize_email
from server.gateway import Gateway
from server.logs import get_logger
from server.mailcapture.capture import Mailbox, MailCapture
from server.mailcapture.imap import SyncReport, sync_mailbox
from server.mailcapture.receiver import register_recipient, serve_receiver
from server.services import Services
from server.settings import Settings

log = get_logger("consentry.mailcapture")

RECEIVER_PURPOSE = "customer_relationship"


async def _staff_addresses() -> dict[str, int]:
    found: dict[str, int] = {}
    for user_id, _, email, _ in await staff_identities():
        try:
            found[normalize_email(email)] = user_id
        except ValueError:
            found[email.strip().lower()] = user_id
    return found


async def capture_of(gateway: Gateway, settings: Settings) -> MailCapture:
    """A capture for this moment's staff list (their addresses are never matched as
    customers: mail between colleagues is nobody's interaction)."""
    return MailCapture(
        gateway,
        content=dict(settings.mail_capture_content),
        lead_rule=settings.mail_capture_lead_rule,
        staff_addresses=tuple(await _staff_addresses()),
    )


@dataclass(frozen=True)
class SyncTotals:
    mailboxes: int = 0
    seen: int = 0
    captured: int = 0
    failed: int = 0


async def sync_all(services: Services, *, max_messages: int | None = None) -> SyncTotals:
    """One run over every enabled mailbox (each claimed; bounded per mailbox)."""
    mailboxes = services.mailboxes
    capture = await capture_of(services.gateway, services.settings)
    totals = SyncTotals()
    for mailbox_id in await mailboxes.enabled_ids():
        report: SyncReport = (
            await sync_mailbox(mailboxes, capture, mailbox_id)
            if max_messages is None
            else await sync_mailbox(mailboxes, capture, mailbox_id, max_messages=max_messages)
        )
        totals = SyncTotals(
            totals.mailboxes + 1,
            totals.seen + report.seen,
            totals.captured + report.captured,
            totals.failed + (1 if report.error else 0),
        )
    return totals


def forwarded_message(message: EmailMessage) -> EmailMessage | None:
    """The message a staff member forwarded *as an attachment* (``message/rfc822``), or
    None. An inline forward has lost the original's headers: nothing to match it by."""
    for part in message.walk():
        if part.get_content_type() != "message/rfc822":
            continue
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(inner, Message):
            parsed = message_from_bytes(inner.as_bytes(), policy=email_policy.default)
            return parsed if isinstance(parsed, EmailMessage) else None
    return None


class LoggingAddress:
    """Mail to ``CONSENTRY_CAPTURE_ADDRESS``. BCC'd by a staff member on what they send:
    filed as sent, under them. Forwarded to it by a staff member as an attachment: the
    forwarded message is filed, under them. Sent to it by anyone else: filed under
    ``CONSENTRY_CAPTURE_OWNER_ID``, or dropped when that is not set, like any unmatched
    mail."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, message: EmailMessage) -> None:
        staff = await _staff_addresses()
        capture = await capture_of(self.services.gateway, self.services.settings)
        senders = message.get_all("From", [])
        pairs = getaddresses([str(s) for s in senders]) if senders else []
        sender = pairs[0][1].strip().lower() if pairs else ""
        owner = staff.get(sender) or self.services.settings.capture_owner_id
        if not owner:
            return
        if sender in staff:
            message = forwarded_message(message) or message
        own = {self.services.settings.capture_address}
        own |= {a for a, uid in staff.items() if uid == owner}
        await capture.capture(
            message,
            message.as_bytes(),
            Mailbox(
                id=None,
                owner_id=owner,
                own_addresses=frozenset(a for a in own if a),
                purpose=RECEIVER_PURPOSE,
            ),
        )


class SupportAddress:
    """Mail to ``CONSENTRY_SUPPORT_ADDRESS``: the service desk opens or continues a case
    (server.servicedesk.inbound); what it keeps or drops is its own decision."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, message: EmailMessage) -> None:
        from server.servicedesk.inbound import receive_support_message

        await receive_support_message(self.services, message)


async def start_receiver(services: Services) -> asyncio.Server | None:
    """The SMTP receiver, if ``CONSENTRY_SMTP_RECEIVER_PORT`` is set; the logging address
    is registered when ``CONSENTRY_CAPTURE_ADDRESS`` is, the service desk's when
    ``CONSENTRY_SUPPORT_ADDRESS`` is. None when off."""
    settings = services.settings
    if not settings.smtp_receiver_port:
        return None
    if settings.capture_address:
        register_recipient(settings.capture_address, LoggingAddress(services))
    if settings.support_address:
        register_recipient(settings.support_address, SupportAddress(services))
    server = await serve_receiver(settings.smtp_receiver_host, settings.smtp_receiver_port)
    log.info("smtp receiver listening", port=settings.smtp_receiver_port)
    return server


async def start_receiver_in_worker(services: Services) -> asyncio.Server | None:
    """:func:`start_receiver` for one of several server workers: the first to bind the
    port receives, the others carry on without (the port is one per deployment host)."""
    try:
        return await start_receiver(services)
    except OSError as exc:
        log.info("smtp receiver not started in this worker", error=type(exc).__name__)
        return None
