"""Alert delivery (issue 23, item 8): alert and request e-mails that fail are kept in the
database and retried with backoff - across a restart - and SMTP over implicit TLS (port
465) works. Real SMTP round trips with aiosmtpd; the clock is passed in, never waited on."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from audit.alerts.rules import RuleKind
from server.gateway import Actor, Forbidden
from server.mail import Mailer, MailStatus
from server.outbox.service import MAX_ATTEMPTS, backoff
from server.outbox.tables import QueuedMail
from server.services import Services, build_services
from server.settings import Settings
from tests.audit.test_alerts import compliance_officer, customer, only_rule
from tests.conftest import Staff, contact_values
from tests.dbutil import raw_sql
from tests.server.test_mail import RECIPIENT, free_port, local_smtp

DPO = "dpo.ramirez@controller.example"


async def raise_an_alert(services: Services, staff: Staff) -> int:
    """A marketer refused once, with a rule that alerts on one refusal."""
    _, officer = await compliance_officer(staff)
    await only_rule(services.alerts, officer, RuleKind.DENIAL_BURST, threshold=1, window_minutes=5)
    marketer = staff.actor(await staff.create("marketing"))
    with pytest.raises(Forbidden):
        await services.gateway.create(marketer, "contact", customer())
    [alert] = await services.alerts.evaluate()
    return alert.id


def test_backoff_doubles_up_to_six_hours() -> None:
    waits = [backoff(n) for n in range(1, MAX_ATTEMPTS + 1)]
    assert waits[:4] == [dt.timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert max(waits) == dt.timedelta(hours=6)
    assert waits == sorted(waits)


async def test_an_alert_email_that_failed_is_delivered_after_a_restart(
    settings: Settings, staff: Staff, database_url: str
) -> None:
    port = free_port()  # nothing listens here yet: the mail server is down
    down = build_services(
        settings.with_overrides(smtp_host="127.0.0.1", smtp_port=port, alert_recipients=(DPO,))
    )
    alert_id = await raise_an_alert(down, staff)
    alert = await down.alerts.get_alert(alert_id)
    assert alert.email_status == "failed (smtp_connect), retrying"
    assert down.mail_outbox is not None
    assert await down.mail_outbox.pending() == 1
    # The queued message is sealed: the recipient is not readable in the database.
    (row,) = await raw_sql(database_url, "SELECT envelope, attempts FROM mail_outbox")
    assert DPO not in str(row["envelope"])
    assert row["attempts"] == 1

    # "Restart": a new process (new services) with the mail server back up.
    with local_smtp(port=port) as smtp:
        up = build_services(
            settings.with_overrides(smtp_host="127.0.0.1", smtp_port=port, alert_recipients=(DPO,))
        )
        assert up.mail_outbox is not None
        now = dt.datetime.now(dt.UTC)
        early = await up.mail_outbox.deliver_due(now=now)  # the first wait (1 minute) is not over
        assert early.sent == 0
        assert smtp.received == []
        run = await up.mail_outbox.deliver_due(now=now + backoff(1) + dt.timedelta(seconds=1))
        assert run.sent == 1
        (message,) = smtp.received
        assert message.recipients == [DPO]
        assert "/compliance/alerts" in message.text
    delivered = await up.alerts.get_alert(alert_id)
    assert delivered.email_status == "e-mailed"
    assert delivered.notified_at is not None
    assert await up.mail_outbox.pending() == 0
    (row,) = await raw_sql(database_url, "SELECT state, envelope FROM mail_outbox")
    assert (row["state"], row["envelope"]) == ("sent", "")  # nothing kept once delivered


async def test_retries_stop_after_the_last_attempt(settings: Settings, staff: Staff) -> None:
    services = build_services(
        settings.with_overrides(
            smtp_host="127.0.0.1", smtp_port=free_port(), alert_recipients=(DPO,)
        )
    )
    alert_id = await raise_an_alert(services, staff)
    assert services.mail_outbox is not None
    moment = dt.datetime.now(dt.UTC)
    for attempt in range(1, MAX_ATTEMPTS):
        moment += backoff(attempt) + dt.timedelta(seconds=1)
        run = await services.mail_outbox.deliver_due(now=moment)
        assert (run.sent, run.retrying + run.dead) == (0, 1)
    assert await services.mail_outbox.pending() == 0
    assert await services.mail_outbox.deliver_due(now=moment + dt.timedelta(days=1)) == type(run)()
    alert = await services.alerts.get_alert(alert_id)
    assert alert.email_status == "failed (smtp_connect)"


async def test_a_request_notice_is_sealed_under_the_person_and_dropped_once_erased(
    settings: Settings, database_url: str
) -> None:
    port = free_port()
    services = build_services(settings.with_overrides(smtp_host="127.0.0.1", smtp_port=port))
    person = await services.gateway.create(
        Actor.system("test-seed"), "contact", contact_values(email=RECIPIENT)
    )
    change = await services.requests.log(
        person.subject_id, "access", "phone", verification="phone_callback", by="user:1",
        contact_id=person.id,
    )  # fmt: skip
    assert change.mail.status is MailStatus.QUEUED
    rows = await raw_sql(database_url, "SELECT * FROM mail_outbox")
    assert [str(r["subject_id"]) for r in rows] == [person.subject_id]
    assert all(RECIPIENT not in str(value) for value in rows[0].values())

    await services.erasure.erase(person.subject_id, by="user:1")
    assert services.mail_outbox is not None
    with local_smtp(port=port) as smtp:
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        run = await services.mail_outbox.deliver_due(now=later)
    assert (run.sent, run.dead) == (0, 1)
    assert smtp.received == []  # erased: nobody can read the address any more
    (row,) = await raw_sql(database_url, "SELECT state, last_error FROM mail_outbox")
    assert (row["state"], row["last_error"]) == ("dead", "erased")
    assert await QueuedMail.count() == 1


# --- implicit TLS (SMTPS, port 465) -------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (what a private relay might present)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "relay.pem", tmp_path / "relay.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def server_tls(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def test_implicit_tls_delivers_and_verifies_the_server(
    settings: Settings, tls_files: tuple[Path, Path]
) -> None:
    cert_file, key_file = tls_files
    with local_smtp(tls=server_tls(cert_file, key_file)) as smtp:
        tls = smtp.settings(settings, smtp_tls=True, smtp_ca_file=cert_file)
        result = await Mailer(tls).send(RECIPIENT, "Over TLS", "Sent over implicit TLS.")
        assert result.status is MailStatus.SENT
        assert smtp.received[0].text.strip() == "Sent over implicit TLS."
        # Without the CA the certificate is refused (verification is on) ...
        untrusted = await Mailer(smtp.settings(settings, smtp_tls=True)).send(RECIPIENT, "x", "y")
        assert (untrusted.status, untrusted.error) == (MailStatus.FAILED, "smtp_tls")
        # ... and plain SMTP to a TLS port fails instead of sending in clear.
        plain = await Mailer(smtp.settings(settings), timeout=2).send(RECIPIENT, "x", "y")
        assert plain.status is MailStatus.FAILED
        assert len(smtp.received) == 1


def test_port_465_means_implicit_tls() -> None:
    assert Settings.from_env({"CONSENTRY_SMTP_PORT": "465"}).smtp_tls
    assert not Settings.from_env({"CONSENTRY_SMTP_PORT": "587"}).smtp_tls
    assert Settings.from_env({"CONSENTRY_SMTP_PORT": "2465", "CONSENTRY_SMTP_TLS": "1"}).smtp_tls
