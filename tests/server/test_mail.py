"""Outgoing e-mail: a real SMTP round trip to a local aiosmtpd server (no network).

``LocalSmtp`` is also used by the alert tests: it runs aiosmtpd in its own thread on a
free port of 127.0.0.1 and keeps every message it receives.
"""

from __future__ import annotations

import email
import email.policy
import io
import logging
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from server.logs import configure_logging
from server.mail import Mailer, MailStatus
from server.settings import Settings

RECIPIENT = "dpo.ramirez@controller.example"
BODY = "Zoë's weekly report is ready.\nSecond line."


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())


@dataclass
class LocalSmtp:
    """An aiosmtpd server on 127.0.0.1 that keeps what it receives."""

    port: int
    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd's hook for a received message (the name is aiosmtpd's)."""
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def settings(self, base: Settings | None = None, **overrides: Any) -> Settings:
        return (base or Settings()).with_overrides(
            smtp_host="127.0.0.1", smtp_port=self.port, **overrides
        )


@contextmanager
def local_smtp(
    *,
    login: tuple[str, str] | None = None,
    port: int | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[LocalSmtp]:
    """Run a local SMTP server for the duration of the block (optionally requiring AUTH,
    on a given port, or speaking implicit TLS from the first byte with ``tls``)."""
    sink = LocalSmtp(port or free_port())
    options: dict[str, Any] = {}
    if login is not None:

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            given = (data.login.decode(), data.password.decode()) if data else None
            ok = isinstance(data, LoginPassword) and given == login
            return AuthResult(success=ok, handled=False)  # handled=False: server answers 535

        options = {"authenticator": authenticate, "auth_require_tls": False}
    if tls is not None:
        options["ssl_context"] = tls
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, **options)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture
def mail_log() -> Iterator[io.StringIO]:
    """What the mailer logs, formatted as in production."""
    configure_logging("INFO", json=True)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.getLogger().handlers[0].formatter)
    handler.addFilter(lambda record: record.name == "consentry.mail")
    logging.getLogger().addHandler(handler)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


async def test_a_message_arrives_at_the_smtp_server(smtp: LocalSmtp) -> None:
    mailer = Mailer(smtp.settings(mail_from="alerts@consentry.example"))
    assert mailer.enabled
    result = await mailer.send(RECIPIENT, "Weekly report", BODY)
    assert result.status is MailStatus.SENT
    assert result.sent
    [received] = smtp.received
    assert received.sender == "alerts@consentry.example"
    assert received.recipients == [RECIPIENT]
    assert received.message["Subject"] == "Weekly report"
    assert received.message["To"] == RECIPIENT
    assert received.message["Auto-Submitted"] == "auto-generated"
    assert received.message["Message-ID"]
    assert received.text.replace("\r\n", "\n").rstrip("\n") == BODY


async def test_several_recipients_get_one_message(smtp: LocalSmtp) -> None:
    mailer = Mailer(smtp.settings())
    to = ["a@controller.example", "b@controller.example"]
    assert (await mailer.send(to, "Hello", "Body")).sent
    [received] = smtp.received
    assert sorted(received.recipients) == to


async def test_without_an_smtp_host_sending_is_a_reported_no_op(smtp: LocalSmtp) -> None:
    mailer = Mailer(Settings())
    assert not mailer.enabled
    result = await mailer.send(RECIPIENT, "Hello", "Body")
    assert result.status is MailStatus.NOT_CONFIGURED
    assert result.error == "smtp_not_configured"
    assert not result.sent
    assert smtp.received == []


async def test_in_demo_mode_without_smtp_messages_land_in_the_outbox(tmp_path: Path) -> None:
    """So someone trying the demo can follow a portal sign-in link without a mail server."""
    mailer = Mailer(Settings(home=tmp_path, demo=True))
    assert mailer.enabled
    result = await mailer.send(RECIPIENT, "Your sign-in link", "http://x/portal/enter/abc")
    assert result.sent
    (written,) = (tmp_path / "outbox").iterdir()
    assert written.stat().st_mode & 0o777 == 0o600
    message = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert message["To"] == RECIPIENT
    assert "http://x/portal/enter/abc" in message.get_body().get_content()  # type: ignore[union-attr]


async def test_a_line_break_in_the_subject_cannot_add_headers(smtp: LocalSmtp) -> None:
    mailer = Mailer(smtp.settings())
    result = await mailer.send(RECIPIENT, "Report\r\nBcc: eve@attacker.example", "Body")
    assert result.sent
    [received] = smtp.received
    assert received.recipients == [RECIPIENT]
    assert received.message["Bcc"] is None
    assert received.message["Subject"] == "Report Bcc: eve@attacker.example"


async def test_smtp_login_is_used_and_a_wrong_password_is_a_failure() -> None:
    with local_smtp(login=("consentry", "mail-secret")) as server:
        good = Mailer(server.settings(smtp_username="consentry", smtp_password="mail-secret"))
        assert (await good.send(RECIPIENT, "Hello", "Body")).sent
        bad = Mailer(server.settings(smtp_username="consentry", smtp_password="wrong"))
        result = await bad.send(RECIPIENT, "Hello", "Body")
        assert result.status is MailStatus.FAILED
        assert result.error == "smtp_auth"
        assert len(server.received) == 1


async def test_an_unreachable_server_is_a_failure_with_a_short_code() -> None:
    mailer = Mailer(Settings(smtp_host="127.0.0.1", smtp_port=free_port()), timeout=5)
    result = await mailer.send(RECIPIENT, "Hello", "Body")
    assert result.status is MailStatus.FAILED
    assert result.error == "smtp_connect"


async def test_logs_name_no_recipient_subject_or_body(
    smtp: LocalSmtp, mail_log: io.StringIO
) -> None:
    await Mailer(smtp.settings()).send(RECIPIENT, "Subject about Zoë", BODY)
    await Mailer(Settings(smtp_host="127.0.0.1", smtp_port=free_port()), timeout=5).send(
        RECIPIENT, "Subject about Zoë", BODY
    )
    await Mailer(Settings()).send(RECIPIENT, "Subject about Zoë", BODY)
    text = mail_log.getvalue()
    for outcome in ('"mail sent"', '"mail failed"', '"mail not sent"'):
        assert outcome in text
    for needle in (RECIPIENT, "ramirez", "Zoë", "Zo\\u00eb", "weekly report", "Subject about"):
        assert needle.lower() not in text.lower(), needle


async def test_list_headers_arrive_unfolded_and_nothing_else_can_be_added(
    smtp: LocalSmtp,
) -> None:
    mailer = Mailer(smtp.settings())
    url = "https://crm.example/consent/withdraw/w1." + "x" * 150 + ".sig"
    one_click = {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert (await mailer.send(RECIPIENT, "News", "Body", headers=one_click)).sent
    [received] = smtp.received
    # A long URL stays one readable URL (no RFC 2047 encoded words from folding).
    assert received.message["List-Unsubscribe"] == f"<{url}>"
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    for headers in (
        {"Bcc": "eve@attacker.example"},
        {"From": "ceo@controller.example"},
        {"List-Unsubscribe": f"<{url}>\r\nBcc: eve@attacker.example"},
        {"List-Unsubscribe": "<x>\nBcc: eve@attacker.example"},
        {"List-Id": ""},
    ):
        result = await mailer.send(RECIPIENT, "News", "Body", headers=headers)
        assert (result.status, result.error) == (MailStatus.FAILED, "invalid_header")
    assert len(smtp.received) == 1
