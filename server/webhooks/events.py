"""What a webhook says: the event types, and the event of an audited change.

A webhook event is derived from the audit event the change wrote in its own transaction
(``server.webhooks.outbox``), so it carries exactly what the audit log carries: ids,
pseudonymous subject ids, an event type and the *names* of the fields that changed -
never a value. ``tests/server/webhooks/test_webhooks.py`` searches every payload a receiver
got for the person's name, e-mail and phone.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from audit.events import AuditEvent, Outcome
from server.datamap import RECORD_TYPES

EVENT_TYPES: dict[str, str] = {
    "record.created": "A customer record was created",
    "record.updated": "A customer record was changed (the names of the changed fields)",
    "record.deleted": "A customer record was deleted",
    "consent.changed": "A person's consent for a purpose was granted, withdrawn, expired or "
    "objected to, or an objection was lifted",
    "request.state_changed": "A data-subject request moved to another state",
    "erasure.completed": "A person's data was erased",
    "alert.raised": "An audit alert was raised",
}
TEST_EVENT = "webhook.test"
NOTICE_EVENT = "recipient.notice"  # Art. 19 notices to recipients (server.recipients)
RECORD_ACTIONS = {
    "create": "record.created",
    "update": "record.updated",
    "delete": "record.deleted",
}
CONSENT_CHANGES = ("grant", "withdraw", "expire", "object", "lift_objection")


@dataclass(frozen=True)
class WebhookEvent:
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def body(self, at: dt.datetime) -> str:
        """The JSON payload, Standard Webhooks style: type, timestamp, data."""
        return json.dumps(
            {"type": self.type, "timestamp": at.isoformat(), "data": self.data},
            sort_keys=True,
            separators=(",", ":"),
        )


def webhook_event_of(event: AuditEvent) -> WebhookEvent | None:
    """The webhook event an audited change raises, or None (reads, denials, the rest)."""
    if event.outcome is not Outcome.ALLOWED:
        return None
    action = str(event.action)
    subjects = list(event.subject_ids)
    if action in RECORD_ACTIONS and event.resource_type in RECORD_TYPES:
        data: dict[str, Any] = {
            "record_type": event.resource_type,
            "record_id": event.resource_id,
            "subject_ids": subjects,
        }
        if action != "delete":
            data["fields"] = sorted(event.fields)
        return WebhookEvent(RECORD_ACTIONS[action], data)
    if event.resource_type == "consent" and action.removeprefix("consent.") in CONSENT_CHANGES:
        return WebhookEvent(
            "consent.changed",
            {
                "consent_event_id": event.resource_id,
                "subject_ids": subjects,
                "purpose": event.purpose,
                "change": action.removeprefix("consent."),
                "channel": str(event.detail.get("channel", "")),
            },
        )
    if event.resource_type == "dsr_request" and "to_state" in event.detail:
        before, after = str(event.detail.get("from_state", "")), str(event.detail["to_state"])
        if before == after:  # an extension or a note: no change of state
            return None
        return WebhookEvent(
            "request.state_changed",
            {
                "request_id": event.resource_id,
                "subject_ids": subjects,
                "kind": str(event.detail.get("kind", "")),
                "from_state": before,
                "to_state": after,
            },
        )
    if action == "dsr.erase" and event.reason == "done":
        return WebhookEvent("erasure.completed", {"subject_ids": subjects})
    if action == "alert.create":
        return WebhookEvent(
            "alert.raised",
            {"alert_id": event.resource_id, "kind": str(event.detail.get("kind", ""))},
        )
    return None
