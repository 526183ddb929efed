"""The register of recipients and processors (admin page: Settings > Recipients), sending
the Art. 19 notices queued by ``server.recipients.notices``, reminders, and the
acknowledgement a recipient gives through its link.

Notices go out from the server's background workers: by webhook (a ``recipient.notice``
message on the recipient's endpoint, signed like every webhook) or by e-mail to the
recipient's privacy contact. A notice names the pseudonymous subject id, the request, the
reason and the purposes and field names the recipient receives - never a personal value.
Unacknowledged notices are sent again every ``REMINDER_DAYS``, ``MAX_REMINDERS`` times.
Register changes and acknowledgements are audited.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from server import db
from server.datamap import PURPOSES, RECORD_TYPES
from server.gateway import Actor
from server.gateway.errors import InvalidInput, NotFound
from server.logs import get_logger
from server.mail import Mailer
from server.recipients.notices import REASONS, AcknowledgementTokens, split
from server.webhooks.events import NOTICE_EVENT, WebhookEvent
from server.webhooks.queue import backoff, enqueue
from server.webhooks.tables import (
    Recipient,
    RecipientNotice,
    WebhookDelivery,
    WebhookEndpoint,
)

log = get_logger("consentry.recipients")

KINDS = {"processor": "Processor (Art. 28)", "recipient": "Recipient (third party)"}
CHANNELS = {"email": "E-mail", "webhook": "Webhook"}
REMINDER_DAYS = 7
MAX_REMINDERS = 3
MAX_SEND_ATTEMPTS = 8
LEASE_SECONDS = 120.0
PURPOSE = "compliance"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def field_names() -> list[str]:
    return [f"{rt.resource}.{f.name}" for rt in RECORD_TYPES.values() for f in rt.fields]


@dataclass(frozen=True)
class RecipientEntry:
    id: str
    name: str
    kind: str
    purposes: tuple[str, ...]
    fields: tuple[str, ...]
    channel: str
    email: str
    endpoint_id: str | None
    active: bool


@dataclass(frozen=True)
class NoticeView:
    id: str
    recipient_id: str
    recipient_name: str
    reason: str
    state: str
    created_at: dt.datetime
    sent_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    reminders: int
    last_error: str
    channel: str = "email"
    delivery_state: str = ""  # webhook notices: pending | delivered | failed


def _entry(row: Mapping[str, Any]) -> RecipientEntry:
    return RecipientEntry(
        str(row["id"]),
        str(row["name"]),
        str(row["kind"]),
        tuple(split(str(row["purposes"]))),
        tuple(split(str(row["fields"]))),
        str(row["channel"]),
        str(row["email"]),
        str(row["endpoint_id"]) if row["endpoint_id"] else None,
        bool(row["active"]),
    )


@dataclass(frozen=True)
class RecipientInput:
    name: str
    kind: str
    purposes: Sequence[str]
    fields: Sequence[str]
    channel: str
    email: str = ""
    endpoint_id: str = ""


class Recipients:
    def __init__(
        self, audit: AuditLog, mailer: Mailer, tokens: AcknowledgementTokens, public_url: str
    ) -> None:
        self._audit = audit
        self._mailer = mailer
        self.tokens = tokens
        self._public_url = public_url.rstrip("/")

    # -- the register ---------------------------------------------------------------------

    async def all(self) -> list[RecipientEntry]:
        return [_entry(r) for r in await Recipient.select().order_by(Recipient.name)]

    async def get(self, recipient_id: str) -> RecipientEntry:
        row = await Recipient.select().where(Recipient.id == _uuid(recipient_id)).first()
        if row is None:
            raise NotFound("recipient not found")
        return _entry(row)

    async def _checked(self, data: RecipientInput) -> dict[Any, Any]:
        problems: dict[str, str] = {}
        name = " ".join(data.name.split())
        if not name or len(name) > 100:
            problems["name"] = "a name of 1 to 100 characters"
        if data.kind not in KINDS:
            problems["kind"] = "processor or recipient"
        unknown = [p for p in data.purposes if p not in PURPOSES]
        if unknown:
            problems["purposes"] = "unknown purpose"
        known_fields = set(field_names())
        if any(f not in known_fields for f in data.fields):
            problems["fields"] = "unknown field"
        email, endpoint = "", None
        if data.channel == "email":
            try:
                email = validate_email(data.email, check_deliverability=False).normalized
            except EmailNotValidError:
                problems["email"] = "a valid e-mail address for notices"
        elif data.channel == "webhook":
            endpoint = _uuid(data.endpoint_id) if data.endpoint_id else None
            if endpoint is None or not await WebhookEndpoint.exists().where(
                WebhookEndpoint.id == endpoint
            ):
                problems["endpoint_id"] = "choose a webhook endpoint"
        else:
            problems["channel"] = "email or webhook"
        if problems:
            first = next(iter(problems))
            raise InvalidInput(f"{first}: {problems[first]}", problems=problems)
        return {
            Recipient.name: name,
            Recipient.kind: data.kind,
            Recipient.purposes: ",".join(sorted(set(data.purposes))),
            Recipient.fields: ",".join(sorted(set(data.fields))),
            Recipient.channel: data.channel,
            Recipient.email: email,
            Recipient.endpoint_id: endpoint,
        }

    async def create(self, actor: Actor, data: RecipientInput) -> RecipientEntry:
        values = await self._checked(data)
        now = _now()
        recipient_id = uuid.uuid4()
        async with db.write_transaction():
            row = Recipient(id=recipient_id, active=True, created_at=now, updated_at=now)
            for column, value in values.items():
                setattr(row, column._meta.name, value)
            await Recipient.insert(row).run()
            await self._event(actor, "recipient.create", str(recipient_id))
        return await self.get(str(recipient_id))

    async def update(
        self, actor: Actor, recipient_id: str, data: RecipientInput, *, active: bool
    ) -> RecipientEntry:
        current = await self.get(recipient_id)
        values = await self._checked(data)
        values[Recipient.active] = active
        values[Recipient.updated_at] = _now()
        async with db.write_transaction():
            await Recipient.update(values).where(Recipient.id == uuid.UUID(current.id))
            await self._event(actor, "recipient.update", current.id)
        return await self.get(current.id)

    async def _event(self, actor: Actor, action: str, resource_id: str) -> None:
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action=action,
                resource_type="recipient",
                resource_id=resource_id,
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                request_id=actor.request_id,
            )
        )

    # -- notices --------------------------------------------------------------------------

    async def notices(
        self, *, request_id: str | None = None, subject_id: str | None = None
    ) -> list[NoticeView]:
        query = RecipientNotice.select().order_by(RecipientNotice.created_at)
        if request_id is not None:
            query = query.where(RecipientNotice.request_id == _uuid(request_id))
        if subject_id is not None:
            query = query.where(RecipientNotice.subject_id == _uuid(subject_id))
        rows = await query
        recipients = {r.id: r for r in await self.all()}
        deliveries = [r["delivery_id"] for r in rows if r["delivery_id"]]
        states = (
            {
                str(d["id"]): str(d["state"])
                for d in await WebhookDelivery.select(
                    WebhookDelivery.id, WebhookDelivery.state
                ).where(WebhookDelivery.id.is_in(deliveries))
            }
            if deliveries
            else {}
        )
        views = []
        for r in rows:
            recipient = recipients.get(str(r["recipient_id"]))
            views.append(
                NoticeView(
                    str(r["id"]),
                    str(r["recipient_id"]),
                    recipient.name if recipient else "(removed)",
                    str(r["reason"]),
                    str(r["state"]),
                    r["created_at"],
                    r["sent_at"],
                    r["acknowledged_at"],
                    int(r["reminders"]),
                    str(r["last_error"]),
                    recipient.channel if recipient else "",
                    states.get(str(r["delivery_id"]), "") if r["delivery_id"] else "",
                )
            )
        return views

    def acknowledge_url(self, notice_id: str) -> str:
        return f"{self._public_url}/notices/acknowledge/{self.tokens.token(notice_id)}"

    async def acknowledge(self, token: str) -> bool:
        """Record the acknowledgement a token stands for; False for a token that is not
        genuine. Acknowledging twice keeps the first time."""
        notice_id = self.tokens.notice_of(token)
        if notice_id is None:
            return False
        async with db.write_transaction():
            row = (
                await RecipientNotice.select()
                .where(RecipientNotice.id == uuid.UUID(notice_id))
                .first()
            )
            if row is None:
                return False
            if row["acknowledged_at"] is None:
                await RecipientNotice.update({RecipientNotice.acknowledged_at: _now()}).where(
                    RecipientNotice.id == uuid.UUID(notice_id)
                )
                await self._audit.append(
                    audit_event(
                        actor_id=f"recipient:{row['recipient_id']}",
                        actor_role="recipient",
                        action="recipient.acknowledge",
                        resource_type="recipient_notice",
                        resource_id=notice_id,
                        subject_ids=(str(row["subject_id"]),),
                        outcome=Outcome.ALLOWED,
                        purpose=PURPOSE,
                    )
                )
        return True

    async def _claim(self, now: dt.datetime) -> list[dict[str, Any]]:
        """Lease due notices (first sends and reminders) to this worker."""
        free = RecipientNotice.lease_until.is_null() | (RecipientNotice.lease_until < now)
        first = RecipientNotice.state == "pending"
        reminder = (
            (RecipientNotice.state == "sent")
            & RecipientNotice.acknowledged_at.is_null()
            & (RecipientNotice.reminders < MAX_REMINDERS)
        )
        async with db.write_transaction():
            due = (
                RecipientNotice.select(RecipientNotice.id)
                .where(RecipientNotice.next_attempt_at <= now)
                .where(free)
                .where(first | reminder)
                .limit(20)
            )
            if not db.is_sqlite():
                due = due.lock_rows("UPDATE", skip_locked=True, of=(RecipientNotice,))
            ids = [r["id"] for r in await due]
            if not ids:
                return []
            await RecipientNotice.update(
                {
                    RecipientNotice.lease_until: now + dt.timedelta(seconds=LEASE_SECONDS),
                    RecipientNotice.attempts: RecipientNotice.attempts + 1,
                }
            ).where(RecipientNotice.id.is_in(ids))
            return list(await RecipientNotice.select().where(RecipientNotice.id.is_in(ids)))

    async def send_due(self, now: dt.datetime | None = None) -> int:
        """Send the notices and reminders that are due; how many were claimed."""
        now = now or _now()
        claimed = await self._claim(now)
        recipients = {r.id: r for r in await self.all()}
        for row in claimed:
            recipient = recipients.get(str(row["recipient_id"]))
            reminder = str(row["state"]) == "sent"
            if recipient is None or not recipient.active:
                await self._settle(row, now, sent=False, error="recipient_inactive", final=True)
                continue
            data = self._notice_data(row, recipient, reminder=reminder)
            async with db.write_transaction():
                if recipient.channel == "webhook" and recipient.endpoint_id:
                    [delivery] = await enqueue(
                        [recipient.endpoint_id], WebhookEvent(NOTICE_EVENT, data), now=now
                    )
                    await self._settle(
                        row, now, sent=True, error="", reminder=reminder, delivery=delivery
                    )
            if recipient.channel == "email":
                result = await self._mailer.send(
                    recipient.email, *self._message(data, recipient, reminder=reminder)
                )
                await self._settle(
                    row, now, sent=result.sent, error=result.error, reminder=reminder
                )
        if claimed:
            log.info("recipient notices", claimed=len(claimed))
        return len(claimed)

    def _notice_data(
        self, row: Mapping[str, Any], recipient: RecipientEntry, *, reminder: bool
    ) -> dict[str, Any]:
        return {
            "notice_id": str(row["id"]),
            "reason": str(row["reason"]),
            "subject_id": str(row["subject_id"]),
            "request_id": str(row["request_id"]) if row["request_id"] else None,
            "purposes": list(recipient.purposes),
            "fields": list(recipient.fields),
            "reminder": reminder,
            "acknowledge_url": self.acknowledge_url(str(row["id"])),
        }

    def _message(
        self, data: Mapping[str, Any], recipient: RecipientEntry, *, reminder: bool
    ) -> tuple[str, str]:
        what = REASONS.get(str(data["reason"]), str(data["reason"]))
        subject = ("Reminder: " if reminder else "") + f"Data subject {what}: please act"
        lines = [
            f"Hello {recipient.name},",
            "",
            f"A person whose data we share with you has exercised their right to {what}"
            " (GDPR Art. 19). Please apply it to the data you received from us.",
            "",
            f"Person (our pseudonymous id): {data['subject_id']}",
            f"Request: {data['request_id'] or '-'}",
            f"Purposes you receive data for: {', '.join(data['purposes']) or '-'}",
            f"Fields you receive: {', '.join(data['fields']) or '-'}",
            "",
            "Please confirm once it is done:",
            str(data["acknowledge_url"]),
        ]
        return subject, "\n".join(lines) + "\n"

    async def _settle(
        self,
        row: Mapping[str, Any],
        now: dt.datetime,
        *,
        sent: bool,
        error: str,
        reminder: bool = False,
        final: bool = False,
        delivery: str | None = None,
    ) -> None:
        notice = row["id"]
        attempts = int(row["attempts"])  # the claim's count: its fencing token
        values: dict[Any, Any] = {RecipientNotice.lease_until: None}
        if delivery is not None:
            values[RecipientNotice.delivery_id] = uuid.UUID(delivery)
        if sent:
            values[RecipientNotice.state] = "sent"
            values[RecipientNotice.attempts] = 0
            values[RecipientNotice.last_error] = ""
            values[RecipientNotice.next_attempt_at] = now + dt.timedelta(days=REMINDER_DAYS)
            if reminder:
                values[RecipientNotice.reminders] = int(row["reminders"]) + 1
            else:
                values[RecipientNotice.sent_at] = now
        else:
            values[RecipientNotice.last_error] = error[:40]
            if final or attempts >= MAX_SEND_ATTEMPTS:
                if not reminder:
                    values[RecipientNotice.state] = "failed"
                else:
                    values[RecipientNotice.reminders] = MAX_REMINDERS
            else:
                values[RecipientNotice.next_attempt_at] = now + backoff(attempts)
        async with db.write_transaction():
            await RecipientNotice.update(values).where(
                (RecipientNotice.id == notice) & (RecipientNotice.attempts == attempts)
            )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
