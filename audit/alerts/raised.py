"""Raised alerts: the kinds of alert and their labels, what a stored alert says, and reading
alerts for the console and the e-mail.

An alert is raised by a rule (:mod:`audit.alerts.evaluation`) or by the sealer, without a
rule (``rule_id`` 0): an entry whose MAC does not verify (``forged_entry``), an entry that
does not match its hash or a gap (``tampered_entry``, ``missing_entry``), a checkpoint row
that is not a genuine signed head (``bogus_head``), a genuine head the log no longer
matches (``head_contradicts_log``) and an entry left unsigned for longer than
``CONSENTRY_AUDIT_STALL_SECONDS`` (``sealing_stalled``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.alert_tables import AuditAlert
from audit.alerts.model import AlertNotFound, utc
from audit.alerts.rules import RuleKind, rule_names
from audit.trail import Problem

ALERTS_PAGE_SIZE = 25

# What an alert is about: the kind of rule that raised it, or the problem the sealer found.
KIND_LABELS: Mapping[str, str] = {
    RuleKind.BULK_READ: "Bulk reads",
    RuleKind.OFF_HOURS: "Access outside working hours",
    RuleKind.DENIAL_BURST: "Burst of refused requests",
    RuleKind.LARGE_EXPORT: "Large export",
    # Raised by the sealer, not by a rule:
    Problem.FORGED_ENTRY: "Audit entry not written by this server (MAC fails)",
    Problem.TAMPERED_ENTRY: "Audit entry altered",
    Problem.MISSING_ENTRY: "Audit entry missing",
    Problem.BOGUS_HEAD: "Bogus audit checkpoint ignored",
    Problem.HEAD_CONTRADICTS_LOG: "Audit log contradicts a signed head",
    Problem.SEALING_STALLED: "Audit sealing stalled",
}
UNITS: Mapping[str, str] = {  # what ``matched`` counts, per kind
    RuleKind.BULK_READ: "distinct data subjects",
    RuleKind.OFF_HOURS: "actions on customer data",
    RuleKind.DENIAL_BURST: "refused requests",
    RuleKind.LARGE_EXPORT: "rows exported",
    Problem.FORGED_ENTRY: "entries",
    Problem.TAMPERED_ENTRY: "entries",
    Problem.MISSING_ENTRY: "entries",
    Problem.BOGUS_HEAD: "checkpoints",
    Problem.HEAD_CONTRADICTS_LOG: "checkpoints",
    Problem.SEALING_STALLED: "unsigned entries",
}
SEALER_ACTOR = "system:sealer"
INTEGRITY_RULE_ID = 0  # alerts the sealer raises belong to no rule
# How an alert was dealt with: a fixed choice, never free text (it ends up in the audit).
ACKNOWLEDGEMENTS: Mapping[str, str] = {
    "expected": "Expected activity",
    "investigating": "Investigating",
    "escalated": "Escalated",
    "false_positive": "False positive",
}

# "retrying:<code>": the first attempt failed; the mail outbox tries again with backoff.
RETRYING = "retrying:"
EMAIL_STATUS_TEXT = {
    "smtp_not_configured": "not sent: SMTP not configured",
    "no_recipients": "not sent: no alert recipients configured",
}


@dataclass(frozen=True)
class Alert:
    id: int
    rule_id: int
    rule_name: str
    kind: str
    actor_id: str
    actor_role: str
    window_start: dt.datetime
    window_end: dt.datetime
    matched: int
    first_seq: int
    last_seq: int
    created_at: dt.datetime
    notified_at: dt.datetime | None
    notify_error: str
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    acknowledgement: str

    @property
    def unit(self) -> str:
        return UNITS.get(self.kind, "events")

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None

    @property
    def acknowledgement_label(self) -> str:
        return ACKNOWLEDGEMENTS.get(self.acknowledgement, self.acknowledgement)

    @property
    def email_status(self) -> str:
        """What the console shows: e-mailed, not sent (and why), failed, or pending."""
        if self.notified_at is not None:
            return "e-mailed"
        if self.notify_error in EMAIL_STATUS_TEXT:
            return EMAIL_STATUS_TEXT[self.notify_error]
        if self.notify_error.startswith(RETRYING):
            return f"failed ({self.notify_error.removeprefix(RETRYING)}), retrying"
        if self.notify_error:
            return f"failed ({self.notify_error})"
        return "pending"


def alert_of(row: Mapping[str, Any], rule_names: Mapping[int, str]) -> Alert:
    """An alert from its ``audit_alert`` row; ``rule_names`` by rule id."""
    acknowledged_at = row["acknowledged_at"]
    notified_at = row["notified_at"]
    rule_id = int(row["rule_id"])
    return Alert(
        id=int(row["id"]),
        rule_id=rule_id,
        rule_name=rule_names.get(rule_id) or KIND_LABELS.get(str(row["kind"]), f"rule {rule_id}"),
        kind=str(row["kind"]),
        actor_id=str(row["actor_id"]),
        actor_role=str(row["actor_role"]),
        window_start=utc(row["window_start"]),
        window_end=utc(row["window_end"]),
        matched=int(row["matched"]),
        first_seq=int(row["first_seq"]),
        last_seq=int(row["last_seq"]),
        created_at=utc(row["created_at"]),
        notified_at=utc(notified_at) if notified_at is not None else None,
        notify_error=str(row["notify_error"] or ""),
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=utc(acknowledged_at) if acknowledged_at is not None else None,
        acknowledgement=str(row["acknowledgement"] or ""),
    )


@dataclass(frozen=True)
class AlertPage:
    items: list[Alert]
    total: int
    page: int
    pages: int
    open_total: int


# --- reading -----------------------------------------------------------------------------------


async def list_alerts(*, state: str = "open", page: int = 1) -> AlertPage:
    """A page of alerts, newest first. ``state``: "open", "acknowledged" or "all"."""
    query = AuditAlert.select()
    count = AuditAlert.count()
    if state == "open":
        query = query.where(AuditAlert.acknowledged_at.is_null())
        count = count.where(AuditAlert.acknowledged_at.is_null())
    elif state == "acknowledged":
        query = query.where(AuditAlert.acknowledged_at.is_not_null())
        count = count.where(AuditAlert.acknowledged_at.is_not_null())
    total = int(await count)
    open_total = int(await AuditAlert.count().where(AuditAlert.acknowledged_at.is_null()))
    pages = max(1, (total + ALERTS_PAGE_SIZE - 1) // ALERTS_PAGE_SIZE)
    page = max(1, min(page, pages))
    rows = (
        await query.order_by(AuditAlert.id, ascending=False)
        .limit(ALERTS_PAGE_SIZE)
        .offset((page - 1) * ALERTS_PAGE_SIZE)
    )
    names = await rule_names()
    return AlertPage([alert_of(r, names) for r in rows], total, page, pages, open_total)


async def get_alert(alert_id: int) -> Alert:
    row = await AuditAlert.select().where(AuditAlert.id == alert_id).first()
    if row is None:
        raise AlertNotFound("no such alert")
    return alert_of(row, await rule_names())


async def alerts_by_id(ids: Sequence[int]) -> list[Alert]:
    """These alerts, in id order (the ones just raised, for the e-mail)."""
    rows = await AuditAlert.select().where(AuditAlert.id.is_in(list(ids)))
    names = await rule_names()
    return sorted((alert_of(r, names) for r in rows), key=lambda a: a.id)
