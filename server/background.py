"""Jobs every server worker runs beside the requests: sealing the audit log.

Every worker runs them; the jobs themselves make that safe (the sealer takes a lock and
other workers skip their turn), so there is no leader to elect and no worker whose loss
stops sealing. Failures are logged by type and never stop the loop: an audit log that
stays unsealed because of one bad minute would be worse than a noisy log.
"""

from __future__ import annotations

import asyncio
import contextlib

from audit.trail import AuditTrail, SealRefused
from server.logs import get_logger
from server.services import Services

log = get_logger("consentry.background")

REFUSED_BACKOFF_SECONDS = 30.0


async def seal_forever(trail: AuditTrail, interval_seconds: float) -> None:
    """Sign a head whenever events arrived since the last one (at most ``interval`` late)."""
    while True:
        delay = interval_seconds
        try:
            newest = await trail.newest_event()
            head = await trail.latest_head()
            if newest is not None and (head is None or head.tree_size < newest[0]):
                await trail.seal()
        except SealRefused as exc:
            # Someone changed the log under us: say so loudly, and keep refusing to sign.
            log.error("audit log does not fit its signed history; not sealing", problem=str(exc))
            delay = REFUSED_BACKOFF_SECONDS
        except Exception as exc:  # a database hiccup: try again on the next tick
            log.warning("audit sealing failed", error=type(exc).__name__)
        await asyncio.sleep(delay)


class BackgroundJobs:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        interval = self.services.settings.seal_interval_ms / 1000
        self._tasks.append(
            asyncio.create_task(seal_forever(self.services.audit_trail, interval), name="sealer")
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
