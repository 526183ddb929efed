"""Webhook endpoints as staff manage them (admin: Settings > Webhooks): create (the secret
is shown once), change the event types, switch off and on, delete, send a test event, and
read the delivery log. Every change is audited; the policy decides who may (``webhook
manage``), asked by the pages before they call in here."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from server import db
from server.gateway import Actor
from server.gateway.errors import Conflict, InvalidInput, NotFound
from server.outbound import DestinationRefused, Destinations
from server.webhooks.events import EVENT_TYPES, TEST_EVENT, WebhookEvent
from server.webhooks.queue import WebhookSender, enqueue
from server.webhooks.signing import new_secret
from server.webhooks.tables import Recipient, WebhookAttempt, WebhookDelivery, WebhookEndpoint

PURPOSE = "administration"
LOG_PAGE = 50


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Endpoint:
    id: str
    name: str
    url: str
    event_types: tuple[str, ...]
    active: bool
    disabled_reason: str
    failures: int
    created_at: dt.datetime


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: Endpoint
    secret: str  # shown once, never again


@dataclass(frozen=True)
class DeliveryEntry:
    id: str
    message_id: str
    event_type: str
    state: str
    attempts: int
    last_status: int
    last_error: str
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    delivered_at: dt.datetime | None


def _endpoint(row: dict[str, Any]) -> Endpoint:
    return Endpoint(
        str(row["id"]),
        str(row["name"]),
        str(row["url"]),
        tuple(t for t in str(row["event_types"]).split(",") if t),
        bool(row["active"]),
        str(row["disabled_reason"]),
        int(row["failures"]),
        row["created_at"],
    )


async def _checked(
    name: str, url: str, event_types: Sequence[str], destinations: Destinations
) -> tuple[str, str, str]:
    problems: dict[str, str] = {}
    name = " ".join(name.split())
    if not name or len(name) > 100:
        problems["name"] = "a name of 1 to 100 characters"
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname or len(url) > 500:
        problems["url"] = "an http:// or https:// address of at most 500 characters"
    elif not problems:
        try:  # the server must not become a probe of its own network (server/outbound.py)
            await destinations.check_url(url)
        except DestinationRefused as refused:
            problems["url"] = refused.reason
    chosen = sorted(set(event_types))
    if any(t not in EVENT_TYPES for t in chosen):  # none: only notices and test events
        problems["event_types"] = "only the listed event types"
    if problems:
        first = next(iter(problems))
        raise InvalidInput(f"{first}: {problems[first]}", problems=problems)
    return name, url.strip(), ",".join(chosen)


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound("webhook endpoint not found") from None


class Webhooks:
    def __init__(
        self, audit: AuditLog, sender: WebhookSender, destinations: Destinations | None = None
    ) -> None:
        self._audit = audit
        self.sender = sender
        self.destinations = destinations or Destinations()

    async def all(self) -> list[Endpoint]:
        return [_endpoint(r) for r in await WebhookEndpoint.select().order_by(WebhookEndpoint.name)]

    async def get(self, endpoint_id: str) -> Endpoint:
        row = await WebhookEndpoint.select().where(WebhookEndpoint.id == _uuid(endpoint_id)).first()
        if row is None:
            raise NotFound("webhook endpoint not found")
        return _endpoint(row)

    async def create(
        self, actor: Actor, name: str, url: str, event_types: Sequence[str]
    ) -> CreatedEndpoint:
        name, url, types = await _checked(name, url, event_types, self.destinations)
        endpoint_id = uuid.uuid4()
        secret = new_secret()
        now = _now()
        async with db.write_transaction():
            await WebhookEndpoint.insert(
                WebhookEndpoint(
                    id=endpoint_id,
                    name=name,
                    url=url,
                    secret=self.sender.seal_secret(str(endpoint_id), secret),
                    event_types=types,
                    active=True,
                    disabled_reason="",
                    failures=0,
                    created_at=now,
                    updated_at=now,
                )
            ).run()
            await self._event(actor, "webhook.create", str(endpoint_id))
        return CreatedEndpoint(await self.get(str(endpoint_id)), secret)

    async def update(
        self,
        actor: Actor,
        endpoint_id: str,
        *,
        name: str,
        url: str,
        event_types: Sequence[str],
        active: bool,
    ) -> Endpoint:
        current = await self.get(endpoint_id)
        name, url, types = await _checked(name, url, event_types, self.destinations)
        values: dict[Any, Any] = {
            WebhookEndpoint.name: name,
            WebhookEndpoint.url: url,
            WebhookEndpoint.event_types: types,
            WebhookEndpoint.active: active,
            WebhookEndpoint.updated_at: _now(),
        }
        if active and not current.active:  # switched on again: a fresh count
            values[WebhookEndpoint.failures] = 0
            values[WebhookEndpoint.disabled_reason] = ""
        elif not active and current.active:
            values[WebhookEndpoint.disabled_reason] = "by_staff"
        async with db.write_transaction():
            await WebhookEndpoint.update(values).where(WebhookEndpoint.id == uuid.UUID(current.id))
            await self._event(actor, "webhook.update", current.id)
        return await self.get(current.id)

    async def delete(self, actor: Actor, endpoint_id: str) -> None:
        """Delete an endpoint with its queue and log; refused (409) while a recipient in
        the register is told through it."""
        current = await self.get(endpoint_id)
        key = uuid.UUID(current.id)
        async with db.write_transaction():
            if await Recipient.exists().where(Recipient.endpoint_id == key):
                raise Conflict(
                    "a recipient is told through this endpoint: change or switch it off "
                    "in Recipients first"
                )
            await WebhookDelivery.delete().where(WebhookDelivery.endpoint_id == key)
            await WebhookAttempt.delete().where(WebhookAttempt.endpoint_id == key)
            await WebhookEndpoint.delete().where(WebhookEndpoint.id == key)
            await self._event(actor, "webhook.delete", current.id)

    async def set_event_types(
        self, actor: Actor, endpoint_id: str, event_types: Sequence[str]
    ) -> Endpoint:
        current = await self.get(endpoint_id)
        return await self.update(
            actor, current.id, name=current.name, url=current.url, event_types=event_types,
            active=current.active,
        )  # fmt: skip

    async def send_test(self, actor: Actor, endpoint_id: str) -> str:
        """Queue a ``webhook.test`` message for this endpoint; the delivery id."""
        current = await self.get(endpoint_id)
        event = WebhookEvent(TEST_EVENT, {"endpoint_id": current.id})
        async with db.write_transaction():
            [delivery] = await enqueue([current.id], event)
            await self._event(actor, "webhook.test", current.id)
        return delivery

    async def deliveries(self, endpoint_id: str, limit: int = LOG_PAGE) -> list[DeliveryEntry]:
        current = await self.get(endpoint_id)
        rows = (
            await WebhookDelivery.select()
            .where(WebhookDelivery.endpoint_id == uuid.UUID(current.id))
            .order_by(WebhookDelivery.created_at, ascending=False)
            .limit(limit)
        )
        return [
            DeliveryEntry(
                str(r["id"]),
                str(r["message_id"]),
                str(r["event_type"]),
                str(r["state"]),
                int(r["attempts"]),
                int(r["last_status"]),
                str(r["last_error"]),
                r["created_at"],
                r["next_attempt_at"],
                r["delivered_at"],
            )
            for r in rows
        ]

    async def _event(self, actor: Actor, action: str, endpoint_id: str) -> None:
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action=action,
                resource_type="webhook",
                resource_id=endpoint_id,
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                request_id=actor.request_id,
            )
        )
