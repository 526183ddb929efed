"""Webhook endpoints, their durable delivery queue and the delivery log; the register of
recipients (Art. 19) and the notices they were sent.

Configuration and delivery metadata only: a payload holds ids, an event type and field
*names* (``server.webhooks.outbox``), never a value. Only ``server.webhooks`` and
``server.recipients`` write these tables.
"""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class WebhookEndpoint(Table, tablename="webhook_endpoint"):
    id = UUID(primary_key=True)
    name = Varchar(length=100)
    url = Varchar(length=500)
    secret = Text()  # whsec_..., sealed by the vault (label "webhook", the endpoint id)
    event_types = Varchar(length=500)  # comma-separated event types
    active = Boolean(default=True)
    disabled_reason = Varchar(length=32, default="")  # "failures" | "by_staff" | ""
    failures = Integer(default=0)  # deliveries given up in a row
    created_at = Timestamptz()
    updated_at = Timestamptz()


class WebhookDelivery(Table, tablename="webhook_delivery"):
    """One message to one endpoint: the queue row and its state. Claimed by a worker with a
    lease (``lease_until``); a worker that dies mid-delivery leaves the row to be claimed
    again once the lease runs out."""

    id = UUID(primary_key=True)
    endpoint_id = UUID(index=True)
    message_id = Varchar(length=40)  # webhook-id: the same on every attempt
    event_type = Varchar(length=40)
    payload = Text()
    state = Varchar(length=12, default="pending", index=True)  # pending|delivered|failed
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(index=True)
    lease_until = Timestamptz(null=True, default=None)
    last_status = Integer(default=0)  # HTTP status of the last attempt, 0: no answer
    last_error = Varchar(length=40, default="")
    created_at = Timestamptz()
    delivered_at = Timestamptz(null=True, default=None)


class WebhookAttempt(Table, tablename="webhook_attempt"):
    """The delivery log: one row per attempt (status and a short error code only)."""

    id = UUID(primary_key=True)
    delivery_id = UUID(index=True)
    endpoint_id = UUID(index=True)
    at = Timestamptz()
    status = Integer(default=0)
    error = Varchar(length=40, default="")
    duration_ms = Integer(default=0)


class Recipient(Table, tablename="recipient"):
    """A processor or recipient of personal data (Art. 19 / Art. 28), with the purposes
    and fields it receives and how it is told about erasure, restriction, rectification."""

    id = UUID(primary_key=True)
    name = Varchar(length=100)
    kind = Varchar(length=12, default="processor")  # processor | recipient
    purposes = Varchar(length=500, default="")  # comma-separated purpose names
    fields = Varchar(length=1000, default="")  # comma-separated "record.field" names
    channel = Varchar(length=8, default="email")  # email | webhook
    email = Varchar(length=254, default="")  # the recipient's privacy contact (a business)
    endpoint_id = UUID(null=True, default=None)  # the webhook endpoint, channel webhook
    active = Boolean(default=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class RecipientNotice(Table, tablename="recipient_notice"):
    """One recipient told about one person's erasure, restriction or rectification."""

    id = UUID(primary_key=True)
    recipient_id = UUID(index=True)
    subject_id = UUID(index=True)
    request_id = UUID(null=True, default=None, index=True)
    reason = Varchar(length=16)  # erasure | restriction | rectification
    state = Varchar(length=12, default="pending")  # pending | sent | failed
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz()
    lease_until = Timestamptz(null=True, default=None)
    last_error = Varchar(length=40, default="")
    reminders = Integer(default=0)
    delivery_id = UUID(null=True, default=None)  # the last webhook message (channel webhook)
    created_at = Timestamptz()
    sent_at = Timestamptz(null=True, default=None)
    acknowledged_at = Timestamptz(null=True, default=None)
