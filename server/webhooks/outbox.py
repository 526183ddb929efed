"""The transactional outbox: one function, called by the audit log for every event it
appends inside a change's transaction (``AuditLog(outbox=...)``).

Every write path - the gateway's creates, updates and deletes, consent, request
transitions, erasure, alerts - already appends its audit event in the transaction of the
change, so hooking there is one hook for all of them, in the same transaction: a webhook
delivery (and an Art. 19 notice) exists exactly when the change committed, and a change
that rolls back leaves none. What goes out is derived from the audit event, which holds no
personal value by construction (``server.webhooks.events``).
"""

from __future__ import annotations

from typing import Protocol

from audit.events import AuditEvent
from server.webhooks.events import webhook_event_of
from server.webhooks.queue import enqueue, subscribers


class NoticeQueue(Protocol):
    """Queues the Art. 19 notices an event calls for (``server.recipients.notices``, which
    builds on the webhook tables and queue, so this package names it only by shape)."""

    async def queue_for(self, event: AuditEvent) -> object: ...


class EventOutbox:
    def __init__(self, notices: NoticeQueue) -> None:
        self._notices = notices

    async def record(self, event: AuditEvent) -> None:
        """Queue what ``event`` must tell the world; in the caller's transaction."""
        outgoing = webhook_event_of(event)
        if outgoing is not None:
            endpoints = await subscribers(outgoing.type)
            if endpoints:
                await enqueue(endpoints, outgoing)
        await self._notices.queue_for(event)
