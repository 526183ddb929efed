"""Admin imports as background jobs, so the page can show progress while the rows go in.

The CLI draws a progress bar in the terminal; a browser needs somewhere to ask. An upload
is parsed and checked in the request (a file that cannot be imported at all is refused on
the spot), then the rows are handed to a task in the same worker and the admin is sent to
the job's page, which reads the job row and refreshes until the job ends. The row is in
the database, not in memory, so the page works whichever worker answers it.

The task holds the rows in memory only. A worker that stops (deploy, crash) loses them:
the job then stops advancing and is shown as interrupted after :data:`STALE_AFTER`, and
the page says to upload the file again - rows already imported are skipped, so nothing is
created twice. The records themselves are written by ``import_rows`` through
``Gateway.create_many``: one transaction and one audit event per batch, so a job that
stops never leaves half a batch behind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from server.csvio.importer import (
    ColumnPlan,
    ImportReport,
    SourceRow,
    import_rows,
    summary_line,
)
from server.csvio.tables import ImportJob
from server.gateway import Actor, Gateway, GatewayError

log = structlog.get_logger(__name__)

REPORT_KEPT = 500  # report entries stored with the job; the counts cover all of them
STALE_AFTER = dt.timedelta(minutes=2)  # a running job this quiet has lost its worker
JOBS_KEPT = dt.timedelta(days=90)  # the import page's history; the audit log keeps the rest
# Tasks must be referenced until they finish, or the event loop may collect them.
_RUNNING: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class JobView:
    """A job as the page shows it: counts, lines, field names and reasons; no values."""

    id: str
    resource: str
    dry_run: bool
    status: str  # running | done | failed | interrupted
    total_rows: int
    processed_rows: int
    created: int
    skipped: int
    bad_lines: int
    report: list[tuple[int, str, str]]
    report_entries: int
    ignored_columns: dict[str, str]
    error: str
    started_at: dt.datetime
    finished_at: dt.datetime | None

    @property
    def percent(self) -> int:
        if self.total_rows == 0:
            return 100 if self.status == "done" else 0
        return min(100, self.processed_rows * 100 // self.total_rows)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def summary(self) -> str:
        return summary_line(
            self.total_rows, self.created, self.skipped, self.bad_lines, dry_run=self.dry_run
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _view(row: dict[str, Any], now: dt.datetime) -> JobView:
    status = str(row["status"])
    if status == "running" and now - _aware(row["updated_at"]) > STALE_AFTER:
        status = "interrupted"
    report = [(int(e[0]), str(e[1]), str(e[2])) for e in json.loads(row["report"] or "[]")]
    return JobView(
        id=str(row["id"]),
        resource=str(row["resource"]),
        dry_run=bool(row["dry_run"]),
        status=status,
        total_rows=int(row["total_rows"]),
        processed_rows=int(row["processed_rows"]),
        created=int(row["created"]),
        skipped=int(row["skipped"]),
        bad_lines=int(row["bad_lines"]),
        report=report,
        report_entries=int(row["report_entries"]),
        ignored_columns=dict(json.loads(row["ignored_columns"] or "{}")),
        error=str(row["error"]),
        started_at=_aware(row["started_at"]),
        finished_at=_aware(row["finished_at"]) if row["finished_at"] else None,
    )


class ImportJobs:
    """Start an import in the background and report how far it got."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def start(
        self,
        actor: Actor,
        resource: str,
        plan: ColumnPlan,
        rows: Sequence[SourceRow],
        *,
        dry_run: bool,
    ) -> str:
        """Record the job and start it; returns its id at once."""
        job_id = uuid.uuid4()
        now = _now()
        await ImportJob.insert(
            ImportJob(
                id=job_id,
                started_by=actor.user_id or 0,
                resource=resource,
                dry_run=dry_run,
                status="running",
                total_rows=len(rows),
                ignored_columns=json.dumps(plan.ignored),
                started_at=now,
                updated_at=now,
            )
        )
        task = asyncio.create_task(self._run(job_id, actor, resource, plan, rows, dry_run))
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        return str(job_id)

    async def get(self, job_id: str) -> JobView | None:
        try:
            key = uuid.UUID(job_id)
        except ValueError:
            return None
        row = await ImportJob.select().where(ImportJob.id == key).first()
        return _view(row, _now()) if row else None

    async def recent(self, limit: int = 10) -> list[JobView]:
        rows = await ImportJob.select().order_by(ImportJob.started_at, ascending=False).limit(limit)
        now = _now()
        return [_view(r, now) for r in rows]

    async def purge(self, now: dt.datetime | None = None) -> int:
        """Forget jobs that ended more than :data:`JOBS_KEPT` ago (or never ended: a job
        that old lost its worker long since); how many were removed."""
        cutoff = (now or _now()) - JOBS_KEPT
        gone = await ImportJob.delete().where(ImportJob.started_at < cutoff).returning(ImportJob.id)
        return len(gone)

    async def _run(
        self,
        job_id: uuid.UUID,
        actor: Actor,
        resource: str,
        plan: ColumnPlan,
        rows: Sequence[SourceRow],
        dry_run: bool,
    ) -> None:
        processed = 0

        async def advance(n: int) -> None:
            nonlocal processed
            processed += n
            await ImportJob.update(
                {ImportJob.processed_rows: processed, ImportJob.updated_at: _now()}
            ).where(ImportJob.id == job_id)

        try:
            report = await import_rows(
                self.gateway, actor, resource, plan, rows, dry_run=dry_run, progress=advance
            )
        except asyncio.CancelledError:
            await self._stopped(job_id, "interrupted", "the server stopped during the import")
            raise
        except GatewayError as exc:
            await self._stopped(job_id, "failed", exc.message)
        except Exception as exc:  # the job must end in a state the page can explain
            # The exception's text may quote a value from the file: log its type only.
            log.error("import_job_failed", job=str(job_id), error=type(exc).__name__)
            await self._stopped(job_id, "failed", "an internal error stopped the import")
        else:
            await self._finished(job_id, report)

    async def _finished(self, job_id: uuid.UUID, report: ImportReport) -> None:
        entries = report.report_rows()
        now = _now()
        await ImportJob.update(
            {
                ImportJob.status: "done",
                ImportJob.processed_rows: report.rows,
                ImportJob.created: report.created,
                ImportJob.skipped: len(report.skipped),
                ImportJob.bad_lines: len(report.bad_lines),
                ImportJob.report_entries: len(entries),
                ImportJob.report: json.dumps(entries[:REPORT_KEPT]),
                ImportJob.updated_at: now,
                ImportJob.finished_at: now,
            }
        ).where(ImportJob.id == job_id)

    async def _stopped(self, job_id: uuid.UUID, status: str, reason: str) -> None:
        try:
            await ImportJob.update(
                {
                    ImportJob.status: status,
                    ImportJob.error: reason[:300],
                    ImportJob.updated_at: _now(),
                    ImportJob.finished_at: _now(),
                }
            ).where(ImportJob.id == job_id)
        except Exception as exc:  # the stale check shows it as interrupted anyway
            log.warning("import_job_state_lost", job=str(job_id), error=type(exc).__name__)
