"""An erasure started in the compliance console runs in the background, not in the request.

Erasing a person with many mentions can take longer than a browser waits. The console
checks the confirmation (the typed reference) in the request, writes the job row
(``Erasure.prepare``: the progress page has something to show at once) and hands the
fulfilment - the same ``requests.transition(..., "fulfilled")`` as before, which runs the
erasure fulfiller and tells the person - to a task in the same worker. The job row is in
the database, so the progress page works whichever worker answers it.

A task that fails records its code on the job (state ``failed``; the request stays
approved, and starting again carries on from the steps already done). A worker that dies
mid-way leaves the job ``running``: the retention run finishes it
(``Erasure.interrupted_jobs``), and the page says so once it has been quiet for
``QUIET_AFTER``.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from server.dsr.erasure import Erasure, ErasureResult
from server.dsr.requests import DataRequest, DataSubjectRequests, RequestError
from server.logs import get_logger

log = get_logger("consentry.erasure")

QUIET_AFTER = dt.timedelta(minutes=2)
# Tasks must be referenced until they finish, or the event loop may collect them.
_RUNNING: set[asyncio.Task[None]] = set()


class ErasureRuns:
    def __init__(self, requests: DataSubjectRequests, erasure: Erasure) -> None:
        self._requests = requests
        self._erasure = erasure

    async def start(
        self, item: DataRequest, *, by: str, by_role: str, audit_request_id: str
    ) -> ErasureResult:
        """Write the job row and fulfil the request in a task; returns the job at once."""
        job = await self._erasure.prepare(item.subject_id, by=by, request_id=item.id)
        task = asyncio.create_task(self._run(item, by, by_role, audit_request_id))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        return job

    async def drain(self) -> None:
        """Wait for the runs this worker started (shutdown, and tests)."""
        if _RUNNING:
            await asyncio.gather(*_RUNNING, return_exceptions=True)

    async def _run(self, item: DataRequest, by: str, by_role: str, audit_request_id: str) -> None:
        try:
            await self._requests.transition(
                item.id,
                "fulfilled",
                by=by,
                by_role=by_role,
                audit_request_id=audit_request_id,
            )
        except RequestError as exc:
            await self._erasure.record_failure(item.subject_id, exc.code)
        except Exception as exc:  # a background task: record and log it, never crash
            log.error("background erasure failed", error=type(exc).__name__)
            await self._erasure.record_failure(item.subject_id, "erasure_failed")


def is_quiet(job: ErasureResult, now: dt.datetime | None = None) -> bool:
    """A running job with no progress for a while: its worker has probably stopped."""
    if job.state != "running" or job.updated_at is None:
        return False
    updated = job.updated_at
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=dt.UTC)
    return (now or dt.datetime.now(dt.UTC)) - updated > QUIET_AFTER
