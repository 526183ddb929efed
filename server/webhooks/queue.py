"""The durable delivery queue: rows in ``webhook_delivery``, claimed with a lease.

``enqueue`` runs inside the transaction of the change (the transactional outbox): the
delivery exists exactly when the change does. ``deliver_due`` runs in every server worker
(``server.background``): it claims due rows by taking a lease on them - ``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, under SQLite's single writer lock there - so each claim is one
worker's; it posts each message once per claim, signed, and records the attempt. A worker
that dies mid-delivery leaves its rows to the next claim once the lease runs out, so
deliveries survive restarts (at least once overall; receivers de-duplicate by
``webhook-id``, as the standard says).

Failures are retried with exponential back-off and full jitter; a message is given up
after ``MAX_ATTEMPTS``, and an endpoint whose messages are given up ``DISABLE_AFTER``
times in a row is switched off (the admin shows why and can switch it on again).
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from server import db
from server.gateway.sealing import Sealing
from server.logs import get_logger
from server.outbound import DestinationRefused, Destinations
from server.webhooks.events import WebhookEvent
from server.webhooks.signing import new_message_id, sign
from server.webhooks.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint

log = get_logger("consentry.webhooks")

LEASE_SECONDS = 60.0  # longer than one batch of posts with their timeouts
CLAIM_BATCH = 20
MAX_ATTEMPTS = 8  # about 21 minutes of retries at most (5 s doubling, capped)
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 3600.0
DISABLE_AFTER = 5  # messages given up in a row before the endpoint is switched off
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DELIVERIES_KEPT = dt.timedelta(days=30)  # the delivery log's history
SECRET_LABEL = "webhook"  # noqa: S105  # the vault label sealing secrets, not a secret


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def backoff(attempts: int) -> dt.timedelta:
    """Exponential back-off with jitter: between half and all of base * 2^(n-1), capped."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0))
    jitter = secrets.randbelow(1001) / 1000
    return dt.timedelta(seconds=ceiling * (0.5 + jitter / 2))


async def subscribers(event_type: str) -> list[str]:
    """Ids of the active endpoints subscribed to ``event_type``."""
    rows = await WebhookEndpoint.select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
        WebhookEndpoint.active == True  # noqa: E712  # Piccolo builds SQL from ==
    )
    return [str(r["id"]) for r in rows if event_type in str(r["event_types"]).split(",")]


async def enqueue(
    endpoint_ids: Sequence[str], event: WebhookEvent, *, now: dt.datetime | None = None
) -> list[str]:
    """Queue ``event`` for each endpoint, in the caller's transaction; the delivery ids."""
    now = now or _now()
    rows = [
        WebhookDelivery(
            id=uuid.uuid4(),
            endpoint_id=uuid.UUID(endpoint_id),
            message_id=new_message_id(),
            event_type=event.type,
            payload=event.body(now),
            state="pending",
            attempts=0,
            next_attempt_at=now,
            lease_until=None,
            created_at=now,
        )
        for endpoint_id in endpoint_ids
    ]
    if rows:
        await WebhookDelivery.insert(*rows).run()
    return [str(r.id) for r in rows]


@dataclass(frozen=True)
class Claimed:
    id: str
    endpoint_id: str
    message_id: str
    payload: str
    attempts: int  # this claim's attempt number: the fencing token of the claim


async def claim(now: dt.datetime, limit: int = CLAIM_BATCH) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries to this worker (one transaction)."""
    lease = now + dt.timedelta(seconds=LEASE_SECONDS)
    async with db.write_transaction():
        due = (
            WebhookDelivery.select(WebhookDelivery.id)
            .where(WebhookDelivery.state == "pending")
            .where(WebhookDelivery.next_attempt_at <= now)
            .where(WebhookDelivery.lease_until.is_null() | (WebhookDelivery.lease_until < now))
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        if not db.is_sqlite():  # SQLite: the IMMEDIATE transaction holds the writer lock
            due = due.lock_rows("UPDATE", skip_locked=True, of=(WebhookDelivery,))
        ids = [r["id"] for r in await due]
        if not ids:
            return []
        await WebhookDelivery.update(
            {
                WebhookDelivery.lease_until: lease,
                WebhookDelivery.attempts: WebhookDelivery.attempts + 1,
            }
        ).where(WebhookDelivery.id.is_in(ids))
        rows = await WebhookDelivery.select().where(WebhookDelivery.id.is_in(ids))
    return [
        Claimed(
            str(r["id"]),
            str(r["endpoint_id"]),
            str(r["message_id"]),
            str(r["payload"]),
            int(r["attempts"]),
        )
        for r in rows
    ]


def _error_code(exc: BaseException) -> str:
    """A short code for a failed post (exception texts may quote URLs; never kept)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.HTTPError):
        return "http_error"
    return "error"


@dataclass(frozen=True)
class Outcome:
    status: int
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def post(
    client: httpx.AsyncClient, url: str, secret: str, message_id: str, body: str, now: int
) -> Outcome:
    """One signed POST; never raises for the network or the receiver's answer."""
    raw = body.encode()
    headers = sign(secret, message_id, now, raw).as_dict()
    started = time.monotonic()
    try:
        response = await client.post(url, content=raw, headers=headers, timeout=TIMEOUT)
        status, error = response.status_code, "" if response.is_success else "status"
    except Exception as exc:  # the receiver's problem is recorded, never raised
        status, error = 0, _error_code(exc)
    return Outcome(status, error, int((time.monotonic() - started) * 1000))


class WebhookSender:
    """Posts claimed deliveries; one per process (it holds the HTTP connection pool)."""

    def __init__(
        self,
        sealing: Sealing,
        client: httpx.AsyncClient | None = None,
        destinations: Destinations | None = None,
    ) -> None:
        self._sealing = sealing
        self._client = client
        self.destinations = destinations or Destinations()

    def secret_of(self, endpoint_id: str, sealed: str) -> str:
        return self._sealing.open_secret(SECRET_LABEL, endpoint_id, sealed)

    def seal_secret(self, endpoint_id: str, secret: str) -> str:
        return self._sealing.seal_secret(SECRET_LABEL, endpoint_id, secret)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT)
        return self._client

    async def deliver_due(self, now: dt.datetime | None = None) -> int:
        """Claim due deliveries and post each once; how many were claimed."""
        now = now or _now()
        claimed = await claim(now)
        if not claimed:
            return 0
        endpoints = {
            str(r["id"]): r
            for r in await WebhookEndpoint.select().where(
                WebhookEndpoint.id.is_in([uuid.UUID(c.endpoint_id) for c in claimed])
            )
        }
        for item in claimed:
            endpoint = endpoints.get(item.endpoint_id)
            if endpoint is None or not endpoint["active"]:
                await self._settle(item, Outcome(0, "endpoint_disabled", 0), now, final=True)
                continue
            try:  # checked again at each send: the name may resolve elsewhere by now
                await self.destinations.check_url(str(endpoint["url"]))
            except DestinationRefused:
                await self._settle(item, Outcome(0, "destination_refused", 0), now)
                continue
            secret = self.secret_of(item.endpoint_id, str(endpoint["secret"]))
            outcome = await post(
                self._http(),
                str(endpoint["url"]),
                secret,
                item.message_id,
                item.payload,
                int(time.time()),  # the signature's time is when it is sent, always
            )
            await self._settle(item, outcome, now)
        log.info("webhook deliveries", claimed=len(claimed))
        return len(claimed)

    async def _settle(
        self, item: Claimed, outcome: Outcome, now: dt.datetime, *, final: bool = False
    ) -> None:
        """Record the attempt and move the delivery on - only while the claim is still
        ours (``attempts`` unchanged: no later claim took it over)."""
        gave_up = final or (not outcome.ok and item.attempts >= MAX_ATTEMPTS)
        values: dict[Any, Any] = {
            WebhookDelivery.lease_until: None,
            WebhookDelivery.last_status: outcome.status,
            WebhookDelivery.last_error: outcome.error,
        }
        if outcome.ok:
            values[WebhookDelivery.state] = "delivered"
            values[WebhookDelivery.delivered_at] = now
        elif gave_up:
            values[WebhookDelivery.state] = "failed"
        else:
            values[WebhookDelivery.next_attempt_at] = now + backoff(item.attempts)
        endpoint = uuid.UUID(item.endpoint_id)
        async with db.write_transaction():
            mine = await WebhookDelivery.exists().where(
                (WebhookDelivery.id == uuid.UUID(item.id))
                & (WebhookDelivery.attempts == item.attempts)
                & (WebhookDelivery.state == "pending")
            )
            if not mine:
                return
            await WebhookDelivery.update(values).where(WebhookDelivery.id == uuid.UUID(item.id))
            await WebhookAttempt.insert(
                WebhookAttempt(
                    id=uuid.uuid4(),
                    delivery_id=uuid.UUID(item.id),
                    endpoint_id=endpoint,
                    at=now,
                    status=outcome.status,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
            ).run()
            if outcome.ok:
                await WebhookEndpoint.update({WebhookEndpoint.failures: 0}).where(
                    WebhookEndpoint.id == endpoint
                )
            elif gave_up and outcome.error != "endpoint_disabled":
                await self._count_failure(endpoint, now)

    async def _count_failure(self, endpoint: uuid.UUID, now: dt.datetime) -> None:
        row = (
            await WebhookEndpoint.select(WebhookEndpoint.failures)
            .where(WebhookEndpoint.id == endpoint)
            .first()
        )
        if row is None:
            return
        failures = int(row["failures"]) + 1
        values: dict[Any, Any] = {WebhookEndpoint.failures: failures}
        if failures >= DISABLE_AFTER:
            values[WebhookEndpoint.active] = False
            values[WebhookEndpoint.disabled_reason] = "failures"
            values[WebhookEndpoint.updated_at] = now
            log.warning("webhook endpoint disabled after failures", failures=failures)
        await WebhookEndpoint.update(values).where(WebhookEndpoint.id == endpoint)


async def purge(now: dt.datetime | None = None) -> int:
    """Delete delivered and given-up messages (and their attempts) older than
    ``DELIVERIES_KEPT`` (the daily housekeeping); pending ones stay. Counts deleted."""
    before = (now or _now()) - DELIVERIES_KEPT
    async with db.write_transaction():
        old = await WebhookDelivery.select(WebhookDelivery.id).where(
            WebhookDelivery.state.is_in(["delivered", "failed"])
            & (WebhookDelivery.created_at < before)
        )
        ids = [r["id"] for r in old]
        if ids:
            await WebhookAttempt.delete().where(WebhookAttempt.delivery_id.is_in(ids))
            await WebhookDelivery.delete().where(WebhookDelivery.id.is_in(ids))
    return len(ids)
