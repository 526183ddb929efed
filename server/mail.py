"""Outgoing e-mail over SMTP: audit alerts now, double opt-in and portal links later.

``Mailer.send`` never raises for delivery problems: it answers with a :class:`MailResult`
whose ``status`` says whether the message was handed to the SMTP server, skipped because
no server is configured, or failed (with a short machine code). Callers record that
outcome where people can see it; an unreachable mail server must not break the operation
that wanted to send.

E-mail is a personal-data surface like logs are. So the log lines here carry counts and
outcome codes only - never a recipient address, a subject or a body - and SMTP error
messages (which quote addresses back) are reduced to their exception type.
"""

from __future__ import annotations

import enum
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from server.logs import get_logger
from server.settings import Settings

log = get_logger("consentry.mail")

DEFAULT_TIMEOUT_SECONDS = 15.0
MAX_SUBJECT = 200


class MailStatus(enum.StrEnum):
    SENT = "sent"
    NOT_CONFIGURED = "not_configured"  # no SMTP host set: nothing was attempted
    FAILED = "failed"


@dataclass(frozen=True)
class MailResult:
    status: MailStatus
    error: str = ""  # short code when FAILED or NOT_CONFIGURED: "smtp_auth", "no_recipients"
    refused: int = 0  # recipients the server refused while accepting the others

    @property
    def sent(self) -> bool:
        return self.status is MailStatus.SENT


NOT_CONFIGURED = MailResult(MailStatus.NOT_CONFIGURED, "smtp_not_configured")


def _error_code(exc: BaseException) -> str:
    """A short, data-free code for a delivery failure (the exception text may quote
    addresses, so it is never kept)."""
    codes: tuple[tuple[type[BaseException], str], ...] = (
        (aiosmtplib.SMTPAuthenticationError, "smtp_auth"),
        (aiosmtplib.SMTPRecipientsRefused, "smtp_recipients_refused"),
        (aiosmtplib.SMTPSenderRefused, "smtp_sender_refused"),
        (aiosmtplib.SMTPConnectError, "smtp_connect"),
        (aiosmtplib.SMTPTimeoutError, "smtp_timeout"),
        (aiosmtplib.SMTPNotSupported, "smtp_not_supported"),
        (aiosmtplib.SMTPServerDisconnected, "smtp_disconnected"),
        (aiosmtplib.SMTPDataError, "smtp_data_refused"),
        (aiosmtplib.SMTPException, "smtp_error"),
        (ssl.SSLError, "smtp_tls"),
        (TimeoutError, "smtp_timeout"),
        (OSError, "smtp_connect"),
    )
    for kind, code in codes:
        if isinstance(exc, kind):
            return code
    return "smtp_error"


def _one_line(text: str, limit: int) -> str:
    """Header values must not carry line breaks (header injection); keep them short."""
    return " ".join(text.split())[:limit]


class Mailer:
    """Sends plain-text e-mail through the SMTP server named in the settings.

    Built once per process from :class:`Settings`. With no ``smtp_host`` it is disabled:
    ``enabled`` is False and ``send`` returns ``NOT_CONFIGURED`` without trying anything.
    """

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._username = settings.smtp_username
        self._password = settings.smtp_password
        self._starttls = settings.smtp_starttls
        self.sender = settings.mail_from
        self._timeout = timeout

    @property
    def enabled(self) -> bool:
        return bool(self._host)

    def compose(self, to: Sequence[str], subject: str, text: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(to)
        message["Subject"] = _one_line(subject, MAX_SUBJECT)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        domain = self.sender.rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid(domain=domain)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        message.set_content(text, charset="utf-8")
        return message

    async def send(self, to: str | Sequence[str], subject: str, text: str) -> MailResult:
        """Send one message to ``to`` (one address or several, all on the To line)."""
        recipients = [to] if isinstance(to, str) else [a for a in to if a]
        if not self.enabled:
            log.info("mail not sent", reason="smtp_not_configured", recipients=len(recipients))
            return NOT_CONFIGURED
        if not recipients:
            log.info("mail not sent", reason="no_recipients")
            return MailResult(MailStatus.FAILED, "no_recipients")
        try:
            message = self.compose(recipients, subject, text)
            refused, _ = await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,  # False: plain SMTP, never an opportunistic upgrade
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            # ValueError: the email package refusing a malformed address or header.
            code = "invalid_message" if isinstance(exc, ValueError) else _error_code(exc)
            log.warning("mail failed", error=code, recipients=len(recipients))
            return MailResult(MailStatus.FAILED, code)
        log.info("mail sent", recipients=len(recipients) - len(refused), refused=len(refused))
        return MailResult(MailStatus.SENT, refused=len(refused))
