"""Outgoing e-mail over SMTP (plain, STARTTLS, or implicit TLS as on port 465): audit
alerts, request notifications, double opt-in and portal links.

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

import datetime as dt
import email.policy
import enum
import os
import secrets
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path

import aiosmtplib

from server.logs import get_logger
from server.settings import ConfigurationError, Settings

log = get_logger("consentry.mail")

DEFAULT_TIMEOUT_SECONDS = 15.0
MAX_SUBJECT = 200
MAX_HEADER_VALUE = 900
# The extra headers a caller may set (RFC 2369 / RFC 8058 list headers), by lower-case
# name. A short allow-list: a caller cannot add Bcc, override From or smuggle anything in.
EXTRA_HEADERS = {
    "list-unsubscribe": "List-Unsubscribe",
    "list-unsubscribe-post": "List-Unsubscribe-Post",
    "list-id": "List-Id",
    # Threading (the service desk's replies, server.servicedesk): a caller-made Message-ID
    # replaces the generated one, so the person's answer can point back at it.
    "message-id": "Message-ID",
    "in-reply-to": "In-Reply-To",
    "references": "References",
}
# How messages go on the wire. aiosmtplib's default policy folds at 78 characters, which
# turns a long List-Unsubscribe URL into RFC 2047 encoded words that mail clients do not
# read as a URL; 998 is RFC 5322's hard line limit, and no header we write comes near it.
WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)


class MailStatus(enum.StrEnum):
    SENT = "sent"
    NOT_CONFIGURED = "not_configured"  # no SMTP host set: nothing was attempted
    FAILED = "failed"
    SKIPPED = "skipped"  # deliberately not sent: a step the person is not told about
    QUEUED = "queued"  # not sent yet: waiting in the outbox for a retry (server.outbox)


@dataclass(frozen=True)
class MailResult:
    status: MailStatus
    error: str = ""  # short code when FAILED or NOT_CONFIGURED: "smtp_auth", "no_recipients"
    refused: int = 0  # recipients the server refused while accepting the others

    @property
    def sent(self) -> bool:
        return self.status is MailStatus.SENT

    @property
    def queued(self) -> bool:
        return self.status is MailStatus.QUEUED


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
    if isinstance(exc.__cause__, ssl.SSLError):  # aiosmtplib wraps a failed handshake
        return "smtp_tls"
    for kind, code in codes:
        if isinstance(exc, kind):
            return code
    return "smtp_error"


def _one_line(text: str, limit: int) -> str:
    """Header values must not carry line breaks (header injection); keep them short."""
    return " ".join(text.split())[:limit]


def _extra_headers(headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """The caller's extra headers, checked: allow-listed names, one-line values.

    Raises ValueError (caught by ``send``) instead of cleaning up: a header that needs
    cleaning is a bug in the caller, and a silently altered unsubscribe URL is worse than
    a message reported as not sent.
    """
    checked: list[tuple[str, str]] = []
    for name, value in (headers or {}).items():
        canonical = EXTRA_HEADERS.get(str(name).strip().lower())
        if canonical is None or any(name == c for c, _ in checked):
            raise ValueError("header not allowed")
        if (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > MAX_HEADER_VALUE
            or any(ch in value for ch in "\r\n\x00")
        ):
            raise ValueError("header value not allowed")
        checked.append((canonical, value.strip()))
    return checked


class Mailer:
    """Sends plain-text e-mail through the SMTP server named in the settings.

    Built once per process from :class:`Settings`. With no ``smtp_host`` it is disabled:
    ``enabled`` is False and ``send`` returns ``NOT_CONFIGURED`` without trying anything -
    except in demo mode, where messages are written to ``<home>/outbox/*.eml`` instead, so
    someone trying the product can follow a portal sign-in link without a mail server.
    """

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._username = settings.smtp_username
        self._password = settings.smtp_password
        self._starttls = settings.smtp_starttls
        if settings.smtp_tls and settings.smtp_starttls:
            raise ConfigurationError("CONSENTRY_SMTP_TLS and CONSENTRY_SMTP_STARTTLS: choose one")
        self._implicit_tls = settings.smtp_tls
        # The system's trust store, or the operator's CA bundle (a private mail relay).
        self._tls_context = (
            ssl.create_default_context(cafile=str(settings.smtp_ca_file))
            if settings.smtp_ca_file
            else None
        )
        self.sender = settings.mail_from
        self._timeout = timeout
        self.outbox: Path | None = (
            settings.home / "outbox" if settings.demo and not settings.smtp_host else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._host) or self.outbox is not None

    def compose(
        self,
        to: Sequence[str],
        subject: str,
        text: str,
        headers: Mapping[str, str] | None = None,
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(to)
        message["Subject"] = _one_line(subject, MAX_SUBJECT)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        domain = self.sender.rpartition("@")[2] or "localhost"
        extra = _extra_headers(headers)
        if not any(name == "Message-ID" for name, _ in extra):
            message["Message-ID"] = make_msgid(domain=domain)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        for name, value in extra:
            message[name] = value
        message.set_content(text, charset="utf-8")
        return message

    async def send(
        self,
        to: str | Sequence[str],
        subject: str,
        text: str,
        headers: Mapping[str, str] | None = None,
    ) -> MailResult:
        """Send one message to ``to`` (one address or several, all on the To line).

        ``headers`` adds list headers (``EXTRA_HEADERS``), e.g. RFC 8058 one-click
        unsubscribe; anything else, or a value with a line break, is refused
        (``invalid_header``) and nothing is sent.
        """
        recipients = [to] if isinstance(to, str) else [a for a in to if a]
        try:
            _extra_headers(headers)
        except ValueError:
            log.warning("mail not sent", reason="invalid_header", recipients=len(recipients))
            return MailResult(MailStatus.FAILED, "invalid_header")
        if not self.enabled:
            log.info("mail not sent", reason="smtp_not_configured", recipients=len(recipients))
            return NOT_CONFIGURED
        if not recipients:
            log.info("mail not sent", reason="no_recipients")
            return MailResult(MailStatus.FAILED, "no_recipients")
        if self.outbox is not None:
            message = self.compose(recipients, subject, text, headers)
            # Unencoded body, so a link in the file can be copied as it stands.
            message.set_content(text, charset="utf-8", cte="8bit")
            return self._to_outbox(self.outbox, message)
        try:
            message = self.compose(recipients, subject, text, headers)
            refused, _ = await aiosmtplib.send(
                message.as_bytes(policy=WIRE_POLICY),
                sender=parseaddr(self.sender)[1] or self.sender,
                recipients=recipients,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,  # False: plain SMTP, never an opportunistic upgrade
                use_tls=self._implicit_tls,  # SMTPS: TLS from the first byte (port 465)
                tls_context=self._tls_context,
                timeout=self._timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
            # ValueError: the email package refusing a malformed address or header.
            code = "invalid_message" if isinstance(exc, ValueError) else _error_code(exc)
            log.warning("mail failed", error=code, recipients=len(recipients))
            return MailResult(MailStatus.FAILED, code)
        log.info("mail sent", recipients=len(recipients) - len(refused), refused=len(refused))
        return MailResult(MailStatus.SENT, refused=len(refused))

    @staticmethod
    def _to_outbox(outbox: Path, message: EmailMessage) -> MailResult:
        """Demo mode: one ``.eml`` file per message, readable by its owner only (it holds
        an address and, for a portal sign-in, a live link)."""
        outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}.eml"
        fd = os.open(outbox / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            # A file, not the wire: the platform's line ends.
            handle.write(message.as_bytes(policy=WIRE_POLICY.clone(linesep="\n")))
        log.info("mail written to the demo outbox", file=name)
        return MailResult(MailStatus.SENT)
