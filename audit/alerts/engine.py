"""The alert engine: one object per process that puts the rule book, the evaluator and the
notifier together - what the workers, the sealer and the compliance console call.

The sealer raises alerts of its own, without a rule (``rule_id`` 0), one per kind and
position (:meth:`AlertEngine.raise_integrity_alert`), e-mailed like the others. Every
change to rules and alerts is audited in the transaction of the change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import structlog

from audit.alert_tables import AuditAlert
from audit.alerts import raised
from audit.alerts.evaluation import Evaluator
from audit.alerts.model import (
    PURPOSE,
    AlertError,
    Changer,
    audit_alert_change,
    locked_transaction,
    utc,
)
from audit.alerts.notification import AlertMailer, AlertNotifier, AlertSettings
from audit.alerts.raised import ACKNOWLEDGEMENTS, INTEGRITY_RULE_ID, SEALER_ACTOR, Alert, AlertPage
from audit.alerts.rules import Rule, RuleBook, RuleSettings
from audit.events import Outcome, audit_event
from audit.log import AuditLog
from audit.trail import Finding

log = structlog.get_logger("consentry.alerts")


class AlertEngine:
    """Evaluates the rules over new audit events, keeps the alerts, sends the e-mails.

    Built once per process (``services.alerts``). ``evaluate()`` is safe to call from every
    worker at once; the console calls the rule and acknowledgement methods, which the rule
    book (``rules``) and the notifier (``notifier``) carry out.
    """

    def __init__(self, audit: AuditLog, mailer: AlertMailer, settings: AlertSettings) -> None:
        self.audit = audit
        self.mailer = mailer
        self.settings = settings
        self.rules = RuleBook(audit)
        self.evaluator = Evaluator(audit, self.rules)
        self.notifier = AlertNotifier(audit, mailer, settings)

    @property
    def rows_read(self) -> int:
        """Audit rows the evaluations of this process have read (new events and context):
        what a run costs, so a test can show it does not grow with the log."""
        return self.evaluator.rows_read

    # -- raising -----------------------------------------------------------------------------

    async def evaluate(self, now: dt.datetime | None = None) -> list[Alert]:
        """Evaluate every enabled rule over the audit events since the last run.

        Returns the alerts raised by this call (extended alerts are updated, not returned),
        after e-mailing them to ``settings.alert_recipients``.
        """
        now = utc(now or dt.datetime.now(dt.UTC))
        raised_ids = await self.evaluator.run(now)
        if not raised_ids:
            return []
        return await self.notifier.notify(await raised.alerts_by_id(raised_ids), now)

    async def raise_integrity_alert(
        self, finding: Finding, now: dt.datetime | None = None
    ) -> Alert | None:
        """An alert for a problem the sealer found (once per kind and position), e-mailed
        like the others. None if it was raised before."""
        now = utc(now or dt.datetime.now(dt.UTC))
        dedup_key = f"integrity:{finding.kind}:{finding.seq}"
        async with locked_transaction():
            if await AuditAlert.exists().where(AuditAlert.dedup_key == dedup_key):
                return None
            inserted = await AuditAlert.insert(
                AuditAlert(
                    dedup_key=dedup_key,
                    rule_id=INTEGRITY_RULE_ID,
                    kind=str(finding.kind),
                    actor_id=SEALER_ACTOR,
                    actor_role="system",
                    window_start=now,
                    window_end=now,
                    matched=finding.count,
                    first_seq=finding.seq,
                    last_seq=finding.seq,
                    created_at=now,
                    notified_at=None,
                    notify_error="",
                    acknowledged_by=None,
                    acknowledged_at=None,
                    acknowledgement="",
                )
            ).returning(AuditAlert.id)
            alert_id = int(inserted[0]["id"])
            await audit_alert_change(
                self.audit,
                "alert.create",
                alert_id,
                {"kind": str(finding.kind), "seq": finding.seq, "matched": finding.count},
            )
        log.error("audit integrity alert raised", alert_id=alert_id, kind=str(finding.kind))
        alerts = await raised.alerts_by_id([alert_id])
        return (await self.notifier.notify(alerts, now))[0]

    # -- e-mail ------------------------------------------------------------------------------

    async def delivery_settled(self, reference: str, at: dt.datetime, error: str) -> None:
        """The mail outbox's word on a retried alert e-mail (see ``AlertNotifier``)."""
        await self.notifier.delivery_settled(reference, at, error)

    def compose_email(self, alerts: Sequence[Alert]) -> tuple[str, str]:
        """Subject and body. Staff actor ids, counts and times only - no customer data."""
        return self.notifier.compose_email(alerts)

    # -- reading -----------------------------------------------------------------------------

    async def list_rules(self) -> list[Rule]:
        return await self.rules.list_rules()

    async def get_rule(self, rule_id: int) -> Rule:
        return await self.rules.get_rule(rule_id)

    async def initialised(self) -> bool:
        """Have the default rules been created yet (by a first evaluation or rule change)?"""
        return await self.rules.initialised()

    async def list_alerts(self, *, state: str = "open", page: int = 1) -> AlertPage:
        """A page of alerts, newest first. ``state``: "open", "acknowledged" or "all"."""
        return await raised.list_alerts(state=state, page=page)

    async def get_alert(self, alert_id: int) -> Alert:
        return await raised.get_alert(alert_id)

    # -- changes (each audited in its own transaction) ----------------------------------------

    async def create_rule(
        self, settings: RuleSettings, *, by: Changer, now: dt.datetime | None = None
    ) -> Rule:
        return await self.rules.create_rule(settings, by=by, now=now)

    async def update_rule(
        self, rule_id: int, settings: RuleSettings, *, by: Changer, now: dt.datetime | None = None
    ) -> Rule:
        """Change a rule's settings (not its kind: that would change what its alerts mean)."""
        return await self.rules.update_rule(rule_id, settings, by=by, now=now)

    async def set_rule_enabled(self, rule_id: int, enabled: bool, *, by: Changer) -> Rule:
        return await self.rules.set_rule_enabled(rule_id, enabled, by=by)

    async def acknowledge(
        self,
        alert_id: int,
        outcome: str,
        *,
        by: Changer,
        now: dt.datetime | None = None,
    ) -> Alert:
        """Record how an alert was dealt with. Changing the outcome later (investigating ->
        escalated) is allowed and audited each time."""
        if outcome not in ACKNOWLEDGEMENTS:
            raise AlertError("choose one of: " + ", ".join(ACKNOWLEDGEMENTS.values()).lower())
        now = utc(now or dt.datetime.now(dt.UTC))
        async with locked_transaction():
            current = await self.get_alert(alert_id)
            previous = current.acknowledgement
            await AuditAlert.update(
                {
                    AuditAlert.acknowledged_by: by.actor_id,
                    AuditAlert.acknowledged_at: now,
                    AuditAlert.acknowledgement: outcome,
                }
            ).where(AuditAlert.id == alert_id)
            await self.audit.append(
                audit_event(
                    actor_id=by.actor_id,
                    actor_role=by.actor_role,
                    action="alert.acknowledge",
                    resource_type="alert",
                    resource_id=str(alert_id),
                    outcome=Outcome.ALLOWED,
                    purpose=PURPOSE,
                    request_id=by.request_id,
                    detail={
                        "acknowledgement": outcome,
                        "previous": previous or "open",
                        "rule_id": current.rule_id,
                        "kind": current.kind,
                    },
                )
            )
        return await self.get_alert(alert_id)
