"""The built-in SMTP receiver (aiosmtpd): mail BCC'd or forwarded to a logging address.

Off by default. ``CONSENTRY_SMTP_RECEIVER_PORT`` turns it on (its own port, loopback by
default: put it behind the organisation's mail relay), started by ``consentry serve`` or
on its own by ``consentry mail receive``. Only the addresses registered here are accepted;
every other recipient is refused with ``550`` at RCPT time, so the receiver is never an
open relay and never stores what it refuses.

The registry is the whole interface another package needs::

    from server.mailcapture.receiver import register_recipient

    async def handle(message: EmailMessage) -> None: ...

    register_recipient("support@example.com", handle)

A handler gets each message once per registered recipient it was addressed to (parsed
with the standard library's ``email.policy.default``). An exception in a handler answers
``451`` (try again later), so the sending relay keeps the message and retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session

from server.datamap import normalize_email
from server.logs import get_logger

log = get_logger("consentry.mailcapture.receiver")

RecipientHandler = Callable[[EmailMessage], Awaitable[None]]
MAX_MESSAGE_BYTES = 25 * 1024 * 1024

_recipients: dict[str, RecipientHandler] = {}


def _canonical(address: str) -> str:
    try:
        return normalize_email(address)
    except ValueError:
        return address.strip().lower()


def register_recipient(address: str, handler: RecipientHandler) -> None:
    """Accept mail for ``address`` and hand each message to ``handler``."""
    _recipients[_canonical(address)] = handler


def unregister_recipient(address: str) -> None:
    _recipients.pop(_canonical(address), None)


def registered_recipients() -> tuple[str, ...]:
    return tuple(sorted(_recipients))


class RecipientDispatch:
    """aiosmtpd handler: refuse unknown recipients, dispatch accepted mail."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if _canonical(address) not in _recipients:
            return "550 5.1.1 no such recipient here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw or "").encode()
        message = message_from_bytes(data, policy=email_policy.default)
        if not isinstance(message, EmailMessage):
            return "554 5.6.0 message not understood"
        for address in dict.fromkeys(_canonical(a) for a in envelope.rcpt_tos):
            handler = _recipients.get(address)
            if handler is None:
                continue
            try:
                await handler(message)
            except Exception as exc:
                log.warning("received mail not handled", error=type(exc).__name__)
                return "451 4.3.0 not handled, try again later"
        return "250 OK"


async def serve_receiver(host: str, port: int) -> asyncio.Server:
    """Listen for SMTP on ``host:port`` on the running event loop (the one the database
    engine lives on, so handlers may use the gateway). Close the returned server to stop."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            RecipientDispatch(),
            hostname="consentry",
            data_size_limit=MAX_MESSAGE_BYTES,
            decode_data=False,
        ),
        host=host,
        port=port,
    )
