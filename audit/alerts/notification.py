"""Notification: e-mailing new alerts to the compliance officers, and recording the outcome.

Alert e-mails go out after the commit (an SMTP server must never hold the alert lock) and
carry rule names, staff actor ids, counts, times and a console link - never customer data.
The server's durable mail outbox (``server.outbox``) retries a failed message and reports
the final outcome back (:meth:`AlertNotifier.delivery_settled`). Every outcome is stored on
the alert and audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from audit.alert_tables import AuditAlert
from audit.alerts.model import audit_alert_change, locked_transaction
from audit.alerts.raised import RETRYING, Alert
from audit.log import AuditLog

# --- what notification needs from the server (``server.mail.Mailer``, ``Settings``) -------------


class MailOutcome(Protocol):
    @property
    def sent(self) -> bool: ...

    @property
    def error(self) -> str: ...

    @property
    def queued(self) -> bool: ...  # not sent yet, but kept for a retry


class AlertMailer(Protocol):
    """Outgoing e-mail; ``enabled`` is False when no SMTP server is configured. The server
    gives the durable outbox (``server.outbox``): a failed message is retried, and the
    ``reference`` (the alert ids) comes back to :meth:`AlertEngine.delivery_settled`."""

    @property
    def enabled(self) -> bool: ...

    async def send(
        self, to: Sequence[str], subject: str, text: str, *, reference: str = ""
    ) -> MailOutcome: ...


class AlertSettings(Protocol):
    @property
    def alert_recipients(self) -> tuple[str, ...]: ...

    @property
    def public_url(self) -> str: ...


# --- the notifier -------------------------------------------------------------------------------


class AlertNotifier:
    """Sends the e-mail for the alerts of a run and stores (and audits) how it went."""

    def __init__(self, audit: AuditLog, mailer: AlertMailer, settings: AlertSettings) -> None:
        self.audit = audit
        self.mailer = mailer
        self.settings = settings

    async def notify(self, alerts: list[Alert], now: dt.datetime) -> list[Alert]:
        """One e-mail for the alerts of this run; the outcome is stored on each alert."""
        recipients = self.settings.alert_recipients
        if not self.mailer.enabled:
            error = "smtp_not_configured"
        elif not recipients:
            error = "no_recipients"
        else:
            subject, text = self.compose_email(alerts)
            reference = ",".join(str(a.id) for a in alerts)
            result = await self.mailer.send(recipients, subject, text, reference=reference)
            if result.sent:
                error = ""
            else:
                error = (RETRYING if result.queued else "") + (result.error or "smtp_error")
        notified_at = now if not error else None
        async with locked_transaction():
            ids = [a.id for a in alerts]
            await AuditAlert.update(
                {AuditAlert.notified_at: notified_at, AuditAlert.notify_error: error}
            ).where(AuditAlert.id.is_in(ids))
            for alert in alerts:
                await audit_alert_change(
                    self.audit,
                    "alert.notify",
                    alert.id,
                    {"status": error or "sent", "recipients": len(recipients)},
                )
        return [replace(a, notified_at=notified_at, notify_error=error) for a in alerts]

    async def delivery_settled(self, reference: str, at: dt.datetime, error: str) -> None:
        """The mail outbox's word on a retried alert e-mail: delivered (``error`` empty)
        or given up (``error`` is the last failure's code)."""
        ids = [int(part) for part in reference.split(",") if part.isdigit()]
        if not ids:
            return
        async with locked_transaction():
            await AuditAlert.update(
                {AuditAlert.notified_at: None if error else at, AuditAlert.notify_error: error}
            ).where(AuditAlert.id.is_in(ids))
            for alert_id in ids:
                await audit_alert_change(
                    self.audit, "alert.notify", alert_id, {"status": error or "sent", "retried": 1}
                )

    def compose_email(self, alerts: Sequence[Alert]) -> tuple[str, str]:
        """Subject and body. Staff actor ids, counts and times only - no customer data."""
        link = f"{self.settings.public_url}/compliance/alerts"
        if len(alerts) == 1:
            subject = f"[Consentry] Audit alert: {alerts[0].rule_name} ({alerts[0].actor_id})"
        else:
            subject = f"[Consentry] {len(alerts)} new audit alerts"
        lines = [
            f"Consentry raised {len(alerts)} new audit alert{'s' if len(alerts) != 1 else ''}.",
            "",
        ]
        for alert in alerts:
            lines += [
                f"Alert #{alert.id}: {alert.rule_name} ({alert.kind_label})",
                f"  Actor:  {alert.actor_id} (role: {alert.actor_role})",
                f"  Count:  {alert.matched:,} {alert.unit}",
                f"  Window: {_when(alert.window_start)} to {_when(alert.window_end)}",
                f"  Audit events: #{alert.first_seq} to #{alert.last_seq}",
                "",
            ]
        lines += [
            f"Review and acknowledge: {link}",
            "",
            "This message names staff accounts and audit sequence numbers only; it contains "
            "no customer data. Details are in the compliance console.",
        ]
        return subject, "\n".join(lines) + "\n"

    # -- reading -----------------------------------------------------------------------------


def _when(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
