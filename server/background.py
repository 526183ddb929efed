"""Jobs every server worker runs beside the requests: sealing the audit log, alert rules,
consent expiry, webhook deliveries and Art. 19 notices (server.webhooks.queue), giving
freed heap back to the system once a minute (server/memory.py), and
the daily housekeeping (retention, expired rows, KEK rotation when configured and pruning
of retired KEK versions: docs/backups.md; then the customer scores: docs/analytics-scores.md).

Every worker runs them and the jobs make that safe (each takes a lock or claims its run).
The sealer, which runs several times a second, is also elected (``audit.sealer_lease``):
one worker of the deployment seals, the others watch for a stall and take over when the
lease holder dies, so no worker's loss stops sealing and the others do not poll the log
and queue for the write lock all day. Failures are logged by type and never stop the loop:
an audit log that stays unsealed because of one bad minute would be worse than a noisy log.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
import time
from collections.abc import Iterator
from typing import Any

from audit.alerts.engine import AlertEngine
from audit.sealer_lease import SealerLease, sealer_lease
from audit.trail import AuditTrail, SealRefused
from server import db
from server.csvio.jobs import ImportJobs
from server.leads.webform import SpentTokens
from server.logs import get_logger
from server.mailcapture import jobs as mail_capture
from server.memory import can_trim, release_free_heap
from server.reports import saved as saved_reports
from server.services import Services
from server.webhooks import queue as webhook_queue

log = get_logger("consentry.background")

REFUSED_BACKOFF_SECONDS = 30.0
DEFAULT_STALL_SECONDS = 10.0
ALERT_INTERVAL_SECONDS = 30.0
EXPIRY_INTERVAL_SECONDS = 300.0
MAIL_RETRY_SECONDS = 30.0
RETENTION_CHECK_SECONDS = 3600.0  # the run itself is daily: the first check of a UTC day
RETENTION_START_DELAY_SECONDS = 600.0  # not in the rush of a (re)start
HEAP_TRIM_SECONDS = 60.0
SCHEDULED_REPORT_SECONDS = 900.0  # how often due scheduled reports are looked for
CSAT_SECONDS = 300.0  # how often closed cases are looked for, to send their CSAT question
SLA_SWEEP_SECONDS = 60.0  # how late an SLA warning or breach is flagged at most
WEBHOOK_POLL_SECONDS = 2.0  # how late a queued webhook or notice goes out at most
STOP_GRACE_SECONDS = 10.0
LEASE_RETRY_SECONDS = 1.0  # how often a worker without the sealer lease watches and asks
SUMMARY_SECONDS = 60.0  # the sealer's run times are summed up once a minute


class JobClock:
    """How long one background job's runs take, logged so that creep shows: a line per
    run for jobs that run every few minutes, one summary a minute for the sealer (which
    runs several times a second). Durations and counts only, never what was processed."""

    def __init__(self, job: str, *, summary_seconds: float = 0.0) -> None:
        self.job = job
        self.summary_seconds = summary_seconds
        self._runs = 0
        self._total = 0.0
        self._slowest = 0.0
        self._since = time.monotonic()

    @contextlib.contextmanager
    def run(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.record(time.monotonic() - started)

    def record(self, seconds: float) -> None:
        if not self.summary_seconds:
            log.info("background job ran", job=self.job, duration_ms=round(seconds * 1000, 1))
            return
        self._runs += 1
        self._total += seconds
        self._slowest = max(self._slowest, seconds)
        if time.monotonic() - self._since >= self.summary_seconds:
            log.info(
                "background job runs",
                job=self.job,
                runs=self._runs,
                total_ms=round(self._total * 1000, 1),
                slowest_ms=round(self._slowest * 1000, 1),
            )
            self._runs, self._total, self._slowest = 0, 0.0, 0.0
            self._since = time.monotonic()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def seal_round(
    trail: AuditTrail,
    *,
    alerts: AlertEngine | None = None,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
) -> float:
    """One round of the sealer: sign what is new, report what is wrong (a log line and an
    alert per problem, ids and counts only), say if sealing is stuck, and publish the
    newest head to the witness. Returns how long to wait before the next round (0: the
    usual interval)."""
    delay = 0.0
    newest: tuple[int, Any] | None = None
    head = None
    try:
        newest = await trail.newest_event()
        head = await trail.latest_head()
        if newest is not None and (head is None or head.tree_size < newest[0]):
            head = await trail.seal() or head
    except SealRefused as exc:
        # Someone changed the log under us: say so loudly, and keep refusing to sign.
        log.error(
            "audit log does not fit its signed history; not sealing",
            problem=str(exc),
            kind=str(exc.kind),
            seq=exc.seq,
        )
        delay = REFUSED_BACKOFF_SECONDS
    except Exception as exc:  # a database hiccup: try again on the next tick
        log.warning("audit sealing failed", error=type(exc).__name__)
    findings = trail.take_findings()
    caught_up = newest is None or (head is not None and head.tree_size >= newest[0])
    if not caught_up:  # the usual round signs everything: only then is there more to ask
        try:
            backlog = await trail.unsigned_backlog()
            stalled = trail.stalled(backlog, stall_seconds) if backlog else None
            if stalled is not None:
                findings.append(stalled)
        except Exception as exc:
            log.warning("audit backlog check failed", error=type(exc).__name__)
    for finding in findings:
        log.error(
            "audit integrity problem",
            kind=str(finding.kind),
            seq=finding.seq,
            count=finding.count,
            problem=finding.problem,
        )
        if alerts is not None:
            try:
                await alerts.raise_integrity_alert(finding)
            except Exception as exc:
                log.warning("audit integrity alert failed", error=type(exc).__name__)
    if trail.witness is not None:
        trail.witness.flush()
        if trail.witness.last_error:
            log.error("audit witness not written", error=trail.witness.last_error)
    return delay


async def watch_round(
    trail: AuditTrail,
    *,
    alerts: AlertEngine | None = None,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
) -> None:
    """A worker that does not seal still says when sealing is stuck (the holder of the
    lease may be alive but wedged): a log line and an alert, as the sealer would."""
    try:
        backlog = await trail.unsigned_backlog()
        stalled = trail.stalled(backlog, stall_seconds) if backlog else None
    except Exception as exc:
        log.warning("audit backlog check failed", error=type(exc).__name__)
        return
    if stalled is None:
        return
    log.error(
        "audit integrity problem",
        kind=str(stalled.kind),
        seq=stalled.seq,
        count=stalled.count,
        problem=stalled.problem,
    )
    if alerts is not None:
        try:
            await alerts.raise_integrity_alert(stalled)
        except Exception as exc:
            log.warning("audit integrity alert failed", error=type(exc).__name__)


async def seal_forever(
    trail: AuditTrail,
    interval_seconds: float,
    stop: asyncio.Event | None = None,
    *,
    alerts: AlertEngine | None = None,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    lease: SealerLease | None = None,
    lease_retry_seconds: float = LEASE_RETRY_SECONDS,
) -> None:
    """Sign a head whenever events arrived since the last one (at most ``interval`` late).

    With a ``lease``, only while holding it: otherwise watch for a stall and ask again
    every ``lease_retry_seconds``. Without one (tests, tools), seal regardless.

    Stopped by setting ``stop``, between rounds, never by cancelling: a task cancelled
    while Piccolo is opening a SQLite transaction leaves that connection holding the write
    lock (Piccolo only cleans up once ``BEGIN`` has returned), and every other writer then
    waits out its busy timeout.
    """
    stop = stop or asyncio.Event()
    clock = JobClock("sealer", summary_seconds=SUMMARY_SECONDS)
    leading = False
    try:
        while not stop.is_set():
            if lease is not None and not await lease.acquire():
                if leading:
                    log.warning("sealer lease lost")
                leading = False
                await watch_round(trail, alerts=alerts, stall_seconds=stall_seconds)
                await _pause(stop, lease_retry_seconds)
                continue
            if lease is not None and not leading:
                log.info("sealer lease taken: this worker seals")
                leading = True
            with clock.run():
                delay = await seal_round(trail, alerts=alerts, stall_seconds=stall_seconds)
            # A refused log is re-checked sooner than the back-off while it might be stalling.
            await _pause(stop, max(interval_seconds, min(delay, stall_seconds / 2)))
    finally:
        if lease is not None:
            await lease.release()


async def evaluate_alerts_forever(
    services: Services, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Run the alert rules over new audit events (the engine locks, so every worker may)."""
    clock = JobClock("alerts")
    while not stop.is_set():
        try:
            with clock.run():
                await services.alerts.evaluate()
        except Exception as exc:
            log.warning("alert evaluation failed", error=type(exc).__name__)
        await _pause(stop, interval_seconds)


async def expire_consents_forever(
    services: Services, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Record ``expired`` in the ledger for grants past their expiry. The gateway already
    treats them as no basis the moment they lapse; this writes the evidence of it."""
    clock = JobClock("consent-expiry")
    while not stop.is_set():
        try:
            with clock.run():
                await services.consent.expire_due()
        except Exception as exc:
            log.warning("consent expiry failed", error=type(exc).__name__)
        await _pause(stop, interval_seconds)


async def deliver_mail_forever(
    services: Services, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Retry the queued e-mails whose wait is over (each row is claimed before an attempt,
    so every worker may run this)."""
    outbox = services.mail_outbox
    if outbox is None:
        return
    clock = JobClock("mail-outbox")
    while not stop.is_set():
        try:
            with clock.run():
                await outbox.deliver_due()
        except Exception as exc:
            log.warning("mail outbox run failed", error=type(exc).__name__)
        await _pause(stop, interval_seconds)


async def send_scheduled_reports_forever(
    services: Services, interval_seconds: float, stop: asyncio.Event
) -> None:
    """E-mail the saved reports whose schedule is due to their owners: counts only, run
    under the owner's role and scope, small groups suppressed (server.reports.saved)."""
    clock = JobClock("scheduled-reports")
    builder = services.report_builder
    while not stop.is_set():
        try:
            with clock.run():
                await saved_reports.send_due(builder, services.mailer.send)
        except Exception as exc:
            log.warning("scheduled reports failed", error=type(exc).__name__)
        await _pause(stop, interval_seconds)


async def send_csat_forever(
    services: Services, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Send the CSAT question of cases closed recently (server.feedback): at most
    ``CSAT_BATCH`` per run, each case claimed first so no two workers ask twice. Logged
    with the run's duration and counts, never a case or a person."""
    clock = JobClock("feedback-csat")
    feedback = services.feedback
    while not stop.is_set():
        try:
            with clock.run():
                run = await feedback.send_csat_due()
                await feedback.remove_expired()
            if run.scanned:
                log.info("csat questions", sent=run.sent, skipped=run.skipped)
        except Exception as exc:
            log.warning("csat run failed", error=type(exc).__name__)
        await _pause(stop, interval_seconds)


async def deliver_webhooks_forever(
    services: Services, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Post the due webhook deliveries and send the due Art. 19 notices (each claimed by
    one worker with a lease: server.webhooks.queue), then wait a moment."""
    clock = JobClock("webhooks", summary_seconds=SUMMARY_SECONDS)
    while not stop.is_set():
        busy = 0
        try:
            with clock.run():
                busy += await services.recipients.send_due()
                busy += await services.webhooks.sender.deliver_due()
        except Exception as exc:
            log.warning("webhook delivery failed", error=type(exc).__name__)
        if not busy:
            await _pause(stop, interval_seconds)
    await services.webhooks.sender.close()


async def sync_mailboxes_forever(
    services: Services, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Sync the connected staff mailboxes (server.mailcapture): each mailbox is claimed by
    one worker per run, and a run does a bounded number of messages; counts only logged."""
    clock = JobClock("mail-sync")
    while not stop.is_set():
        try:
            with clock.run():
                totals = await mail_capture.sync_all(services)
            if totals.mailboxes:
                log.info(
                    "mailboxes synced",
                    mailboxes=totals.mailboxes,
                    seen=totals.seen,
                    captured=totals.captured,
                    failed=totals.failed,
                )
        except Exception as exc:
            log.warning("mailbox sync failed", error=type(exc).__name__)
        await _pause(stop, interval_seconds)


async def sweep_service_desk_forever(
    services: Services, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Flag SLA warnings and breaches, escalate breaches to the team lead
    (server.servicedesk: a bounded batch per run; each change is a conditional update,
    so every worker may run this)."""
    clock = JobClock("service-desk-sla")
    while not stop.is_set():
        try:
            with clock.run():
                await services.service_desk.sweep()
        except Exception as exc:
            log.warning("service desk sweep failed", error=type(exc).__name__)
        await _pause(stop, interval_seconds)


async def trim_heap_forever(interval_seconds: float, stop: asyncio.Event) -> None:
    """Give malloc's free pages back to the system once a minute (server/memory.py says
    why), and log the worker's resident memory before and after, so that growth shows in
    the logs long before it shows on a dashboard."""
    clock = JobClock("heap-trim")
    while not stop.is_set():
        await _pause(stop, interval_seconds)
        if stop.is_set():
            return
        with clock.run():
            trimmed = release_free_heap()
        if trimmed is not None:
            log.info(
                "worker memory",
                rss_mib=round(trimmed.rss_after / 2**20, 1),
                released_mib=round(trimmed.released / 2**20, 1),
            )


async def remove_expired_rows(services: Services) -> dict[str, int]:
    """Delete rows that have outlived their use and hold no evidence: portal links and
    sessions past their end, import jobs older than 90 days, spent web form tokens that
    are refused as expired anyway, webhook deliveries done or given up more than 30 days ago.
    Counts removed, by kind."""
    links, sessions = await services.portal.purge_expired()
    jobs = await ImportJobs(services.gateway).purge()
    form_tokens = await SpentTokens.purge_expired()
    return {
        "portal_links": links,
        "portal_sessions": sessions,
        "import_jobs": jobs,
        "spent_form_tokens": form_tokens,
        "webhook_deliveries": await webhook_queue.purge(),
    }


async def rotate_kek_if_due(services: Services, now: dt.datetime | None = None) -> bool:
    """Rotate the KEK when ``CONSENTRY_KEK_ROTATION_DAYS`` have passed since the active
    version was created (or finish an unfinished rotation); off when the setting is 0."""
    rotation = services.key_rotation
    days = services.settings.kek_rotation_days
    if rotation is None or days <= 0:
        return False
    return await rotation.rotate_if_due(dt.timedelta(days=days), now=now)


async def prune_retired_keks(services: Services, now: dt.datetime | None = None) -> list[str]:
    """Destroy KEK versions retired longer ago than the backup retention period (the
    daily housekeeping; ``consentry keys prune`` by hand). ``now`` is injectable for tests.
    Nothing to do when the master key comes from the environment."""
    rotation = services.key_rotation
    if rotation is None:
        return []
    retention = dt.timedelta(days=services.settings.backup_retention_days)
    report = await rotation.prune(retention, now=now)
    return list(report.destroyed)


SCORING_TIMEOUT_SECONDS = 6 * 3600.0  # a stuck scoring child is stopped, not waited on forever


async def score_customers_in_child() -> int:
    """The daily scoring in a child process (``consentry analytics score``), not in the
    server worker: scikit-learn and numpy are about 100 MiB resident once imported and a
    worker never gives that back, so a worker that ran the daily job would carry it until
    restarted (the soak saw one worker step from 132 to 230 MiB at the first daily run).
    The child reads the same settings from the same environment; its output is counts
    and the model's figure only. Returns the child's exit code (0 on success)."""
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "analytics",
        "score",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, errors = await asyncio.wait_for(child.communicate(), SCORING_TIMEOUT_SECONDS)
    except (TimeoutError, asyncio.CancelledError):
        child.kill()
        await child.wait()
        raise
    code = child.returncode if child.returncode is not None else -1
    # A failing CLI ends with a one-line reason (a configuration error, never a record).
    reason = errors.decode("utf-8", "replace").strip().splitlines()[-1:] if code else []
    log.info(
        "customer scoring child finished",
        exit_code=code,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        **({"reason": reason[0][:200]} if reason else {}),
    )
    return code


async def retention_daily(services: Services, interval_seconds: float, stop: asyncio.Event) -> None:
    """Apply the retention rules once per UTC day. Every worker checks; the first to claim
    the day (a unique row in ``retention_run``) runs it, the others skip."""
    await _pause(stop, RETENTION_START_DELAY_SECONDS)
    clock = JobClock("retention")
    while not stop.is_set():
        try:
            with clock.run():
                report = await services.retention.run_daily()
            if report is not None:
                log.info("retention run finished", **report.totals())
                # The same day's housekeeping, by the worker that claimed the day.
                log.info("expired rows removed", **await remove_expired_rows(services))
                if await rotate_kek_if_due(services):
                    log.info("KEK rotated", every_days=services.settings.kek_rotation_days)
                destroyed = await prune_retired_keks(services)
                if destroyed:
                    log.info("retired KEK versions destroyed", versions=",".join(destroyed))
                await score_customers_in_child()
        except Exception as exc:
            log.warning("retention run failed", error=type(exc).__name__)
        await _pause(stop, interval_seconds)


class BackgroundJobs:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._stop.clear()
        interval = self.services.settings.seal_interval_ms / 1000
        self._tasks = [
            asyncio.create_task(
                seal_forever(
                    self.services.audit_trail,
                    interval,
                    self._stop,
                    alerts=self.services.alerts,
                    stall_seconds=self.services.settings.audit_stall_seconds,
                    lease=sealer_lease(db.get_engine()),
                ),
                name="sealer",
            ),
            asyncio.create_task(
                evaluate_alerts_forever(self.services, ALERT_INTERVAL_SECONDS, self._stop),
                name="alerts",
            ),
            asyncio.create_task(
                expire_consents_forever(self.services, EXPIRY_INTERVAL_SECONDS, self._stop),
                name="consent-expiry",
            ),
            asyncio.create_task(
                retention_daily(self.services, RETENTION_CHECK_SECONDS, self._stop),
                name="retention",
            ),
            asyncio.create_task(
                deliver_mail_forever(self.services, MAIL_RETRY_SECONDS, self._stop),
                name="mail-outbox",
            ),
            asyncio.create_task(
                deliver_webhooks_forever(self.services, WEBHOOK_POLL_SECONDS, self._stop),
                name="webhooks",
            ),
            asyncio.create_task(
                send_scheduled_reports_forever(self.services, SCHEDULED_REPORT_SECONDS, self._stop),
                name="scheduled-reports",
            ),
            asyncio.create_task(
                sync_mailboxes_forever(
                    self.services, self.services.settings.mail_sync_interval_seconds, self._stop
                ),
                name="mail-sync",
            ),
            asyncio.create_task(
                send_csat_forever(self.services, CSAT_SECONDS, self._stop), name="feedback-csat"
            ),
            asyncio.create_task(
                sweep_service_desk_forever(self.services, SLA_SWEEP_SECONDS, self._stop),
                name="service-desk-sla",
            ),
        ]
        if can_trim():
            self._tasks.append(
                asyncio.create_task(
                    trim_heap_forever(HEAP_TRIM_SECONDS, self._stop), name="heap-trim"
                )
            )

    async def stop(self) -> None:
        self._stop.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE_SECONDS)
        for task in pending:  # a round stuck on the database: give up on it
            task.cancel()
        self._tasks.clear()
        # Events written while the jobs wound down (an alert's last update) are signed now,
        # not at the next start.
        try:
            await asyncio.wait_for(
                seal_round(self.services.audit_trail), timeout=STOP_GRACE_SECONDS
            )
        except Exception as exc:
            log.warning("final audit sealing failed", error=type(exc).__name__)
