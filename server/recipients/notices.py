"""Which recipients must be told, queued in the transaction of the change (Art. 19).

A person's erasure, restriction or rectification - a data-subject request of that kind
becoming ``fulfilled``, or an erasure or restriction done without a request (the CLI,
retention, a legal hold) - queues one notice
per relevant recipient in the register, in the transaction that records it (the event
outbox calls ``queue_for``). A recipient is relevant when it receives data for a purpose
that applied to the person: a purpose with a legal basis other than consent applies to
everyone; a consent-based one to those with any consent history for it. A recipient
registered without purposes is told about everyone.

Each notice carries an acknowledgement token: the notice id and a keyed MAC of it, so
nothing secret is stored and a token cannot be made up for another notice.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac as std_hmac
import uuid
from collections.abc import Collection

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

from audit.events import AuditEvent, Outcome
from server.consent.service import purposes_on_record
from server.datamap import PURPOSES, LegalBasis
from server.webhooks.tables import Recipient, RecipientNotice

RESTORE_ACTOR = "system:restore"
REASONS = {
    "erasure": "erasure",
    "restriction": "restriction of processing",
    "rectification": "rectification",
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def split(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


class AcknowledgementTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, notice_id: str) -> str:
        mac = HMAC(self._key, hashes.SHA256())
        mac.update(b"consentry/recipient-notice/v1|" + notice_id.encode())
        return base64.urlsafe_b64encode(mac.finalize()[:24]).decode().rstrip("=")

    def token(self, notice_id: str) -> str:
        return f"{notice_id}.{self._mac(notice_id)}"

    def notice_of(self, token: str) -> str | None:
        """The notice id a genuine token names, else None."""
        notice_id, _, mac = token.partition(".")
        try:
            uuid.UUID(notice_id)
        except ValueError:
            return None
        return notice_id if std_hmac.compare_digest(mac, self._mac(notice_id)) else None


def notice_reason(event: AuditEvent) -> tuple[str, str | None] | None:
    """(reason, request id) when ``event`` obliges us to tell recipients, else None."""
    if event.outcome is not Outcome.ALLOWED or not event.subject_ids:
        return None
    kind = str(event.detail.get("kind", ""))
    if (
        event.resource_type == "dsr_request"
        and event.detail.get("to_state") == "fulfilled"
        and event.detail.get("from_state") != "fulfilled"
        and kind in REASONS
    ):
        return kind, event.resource_id
    if str(event.action) == "dsr.restrict" and not event.detail.get("request"):
        return "restriction", None
    if (
        str(event.action) == "dsr.erase"
        and event.reason == "done"
        and not event.detail.get("request")
        and event.actor_id != RESTORE_ACTOR  # re-applied after a restore: told before
    ):
        return "erasure", None
    return None


def relevant(recipient_purposes: Collection[str], on_record: Collection[str]) -> bool:
    if not recipient_purposes:
        return True
    for name in recipient_purposes:
        purpose = PURPOSES.get(name)
        if purpose is None:
            continue
        if purpose.legal_basis is not LegalBasis.CONSENT or name in on_record:
            return True
    return False


class RecipientNotices:
    """Queues notices; built before the audit log (whose outbox calls it)."""

    def __init__(self, tokens: AcknowledgementTokens) -> None:
        self.tokens = tokens

    async def queue_for(self, event: AuditEvent) -> list[str]:
        found = notice_reason(event)
        if found is None:
            return []
        reason, request_id = found
        subject = event.subject_ids[0]
        recipients = await Recipient.select(Recipient.id, Recipient.purposes).where(
            Recipient.active == True  # noqa: E712  # Piccolo builds SQL from ==
        )
        if not recipients:
            return []
        on_record = await purposes_on_record(subject)
        now = _now()
        rows = []
        for recipient in recipients:
            if not relevant(split(str(recipient["purposes"])), on_record):
                continue
            notice_id = uuid.uuid4()
            rows.append(
                RecipientNotice(
                    id=notice_id,
                    recipient_id=recipient["id"],
                    subject_id=uuid.UUID(subject),
                    request_id=uuid.UUID(request_id) if request_id else None,
                    reason=reason,
                    state="pending",
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        if rows:
            await RecipientNotice.insert(*rows).run()
        return [str(r.id) for r in rows]
