"""Preparing Consentry for a run: a fresh home, keys, migrations, data, a staff admin.

Everything goes through Consentry's own entry points: ``consentry keys init`` for the
keys, the real migrations, ``StaffAccounts.create_user`` for the admin (who, like every
admin, must enrol a TOTP second factor before the API lets them in), and
``Gateway.create_many`` (the bulk path) for the data, so every loaded row is validated,
encrypted (contacts and organizations under their own data key, deals and interactions
under their contact's) and covered by an audit event, as in production.
The same settings (environment) are then handed to ``consentry serve``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from audit.tables import AuditCheckpoint, AuditRecord
from bench.datagen import CustomerData
from bench.results_model import LoadedIds, LoadFigures, summary_ms
from server import db
from server.auth.service import LoginStatus, StaffAccounts
from server.dsr.export import EXPORT_JOB, EXPORT_PURPOSE, build_export
from server.gateway import Actor, Gateway
from server.migrate import apply_migrations
from server.services import Services, build_services
from server.settings import Settings, set_settings

ADMIN_EMAIL = "bench.admin@staff.example.com"
TEAM = "hq"
SESSION_COOKIE = "consentry_session"
USER_AGENT = "consentry-bench"


def consentry_env(home: Path, database_url: str) -> dict[str, str]:
    """The environment for both the in-process loader and ``consentry serve``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTRY_")}
    env.update(
        {
            "CONSENTRY_HOME": str(home),
            "CONSENTRY_DATABASE_URL": database_url,
            "CONSENTRY_LOG_LEVEL": "INFO",  # the shipped default: one access-log line a request
            "CONSENTRY_LOG_JSON": "1",
            "CONSENTRY_COOKIE_SECURE": "0",  # plain http on loopback
            "CONSENTRY_CONTROLLER_NAME": "Consentry bench",  # `serve` refuses to start without
        }
    )
    return env


def consentry_cli() -> list[str]:
    """The ``consentry`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("consentry")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server.cli"]


def init_keys(env: dict[str, str], cwd: Path) -> None:
    Path(env["CONSENTRY_HOME"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603 - our own console script
        [*consentry_cli(), "keys", "init"], env=env, cwd=cwd, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"consentry keys init failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class PreparedConsentry:
    figures: LoadFigures
    ids: LoadedIds
    admin_user_id: int
    admin_password: str = field(repr=False)
    totp_secret: str = field(repr=False)


def _start_engine(env: dict[str, str]) -> tuple[Settings, Any]:
    settings = set_settings(Settings.from_env(env))
    return settings, db.set_engine(db.engine_for_url(settings.resolved_database_url))


async def prepare(
    env: dict[str, str],
    data: CustomerData,
    *,
    batch_size: int,
    progress: Callable[[int], None],
) -> PreparedConsentry:
    settings, engine = _start_engine(env)
    await db.start(engine)
    try:
        await apply_migrations()
        services = build_services(settings)
        identity, password = await services.accounts.create_user(
            ADMIN_EMAIL, "admin", team=TEAM, display_name="Benchmark admin"
        )
        totp_secret = await enrol_second_factor(services.accounts, password)
        figures, ids = await load(
            services.gateway, data, identity.user_id, batch_size=batch_size, progress=progress
        )
    finally:
        await db.stop(engine)
    return PreparedConsentry(figures, ids, identity.user_id, password, totp_secret)


async def enrol_second_factor(accounts: StaffAccounts, password: str) -> str:
    """Enrol a TOTP authenticator for the admin; returns its secret.

    Admin accounts must have a second factor before the API lets them in. This takes the
    same service path a person takes: sign in (a session that can only enrol), then
    confirm a fresh secret with a first code.
    """
    result = await accounts.login(ADMIN_EMAIL, password, "bench-enrol", user_agent=USER_AGENT)
    session = result.session
    if session is None or result.status is not LoginStatus.ENROLMENT_REQUIRED:
        raise RuntimeError(f"expected a sign-in that requires enrolment, got {result.status}")
    info = await accounts.session_info(session.token)
    if info is None:
        raise RuntimeError("the enrolment session vanished")
    secret = accounts.new_totp_secret()
    code = pyotp.TOTP(secret).now()
    if await accounts.enrol_totp(info, session.token, secret, code, user_agent=USER_AGENT) is None:
        raise RuntimeError("TOTP enrolment refused the first code")
    return secret


def login_code(totp_secret: str) -> str:
    """A code for the *next* 30-second step.

    The replay guard accepts only steps later than the last one used (the enrolment's),
    and tolerates one step of clock drift, so the next step's code is always accepted.
    """
    return str(pyotp.TOTP(totp_secret).at(time.time() + 30))


async def load(
    gateway: Gateway,
    data: CustomerData,
    owner_id: int,
    *,
    batch_size: int,
    progress: Callable[[int], None],
) -> tuple[LoadFigures, LoadedIds]:
    """Organizations, contacts, deals, interactions through ``create_many``, in that order
    (each refers to rows of the ones before), ``batch_size`` rows a call.

    Deals and interactions are sealed under their contact's data key: ``create_many``
    looks each contact up (it must exist and be visible) and takes its subject from it.
    """
    actor = Actor.system("bench")
    ids = LoadedIds()
    figures = LoadFigures()

    async def create(resource: str, batch: list[dict[str, Any]]) -> list[str]:
        async with db.write_transaction():
            result = await gateway.create_many(actor, resource, batch, owner_id=owner_id, team=TEAM)
        _no_rejects(resource, result.rejected)
        progress(len(batch))
        return result.created

    started = time.perf_counter()
    for batch in data.organization_batches(batch_size):
        ids.organizations.extend(await create("organization", batch))
    figures.add("organization", len(ids.organizations), time.perf_counter() - started)

    started = time.perf_counter()
    for span, batch in data.contact_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            values["organization_id"] = ids.organizations[data.organization_of(index)]
        ids.contacts.extend(await create("contact", batch))
    figures.add("contact", len(ids.contacts), time.perf_counter() - started)

    started = time.perf_counter()
    for span, batch in data.deal_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            contact = data.deal_contact(index)
            values["contact_id"] = ids.contacts[contact]
            values["organization_id"] = ids.organizations[data.organization_of(contact)]
        ids.deals.extend(await create("deal", batch))
    figures.add("deal", len(ids.deals), time.perf_counter() - started)

    started = time.perf_counter()
    for span, batch in data.interaction_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            contact = data.interaction_contact(index)
            values["contact_id"] = ids.contacts[contact]
            deal = data.deal_of(contact)
            if deal is not None:
                values["deal_id"] = ids.deals[deal]
        ids.interactions += len(await create("interaction", batch))
    figures.add("interaction", ids.interactions, time.perf_counter() - started)
    return figures, ids


def _no_rejects(resource: str, rejected: dict[int, dict[str, str]]) -> None:
    if rejected:
        index, problems = next(iter(rejected.items()))
        raise RuntimeError(
            f"Consentry rejected {len(rejected)} generated {resource} row(s), "
            f"e.g. row {index}: {problems}"
        )


async def seal_lag(since: dt.datetime | None = None) -> dict[str, Any]:
    """How long each event of the load run waited for a signed head covering it.

    For every event written since ``since`` (the server's start: events of the data load
    were written before any sealer existed, and would only measure how long the load
    took): the signing time of the first head whose size covers it, minus the event's own
    time. Events no head covered when the server stopped are counted apart.
    """
    events = await AuditRecord.select(AuditRecord.seq, AuditRecord.ts).order_by(AuditRecord.seq)
    heads = await AuditCheckpoint.select(
        AuditCheckpoint.tree_size, AuditCheckpoint.signed_at
    ).order_by(AuditCheckpoint.tree_size)
    lags_ns: list[int] = []
    uncovered = 0
    before_server = 0
    index = 0
    for event in events:
        if since is not None and event["ts"] < since:
            before_server += 1
            continue
        while index < len(heads) and heads[index]["tree_size"] < event["seq"]:
            index += 1
        if index == len(heads):
            uncovered += 1
            continue
        waited = heads[index]["signed_at"] - event["ts"]
        lags_ns.append(max(0, int(waited.total_seconds() * 1e9)))
    return {
        **summary_ms(lags_ns),
        "max_ms": round(max(lags_ns) / 1e6, 3) if lags_ns else 0.0,
        "events": len(events) - before_server,
        "events_before_server": before_server,
        "heads": len(heads),
        "unsealed_at_stop": uncovered,
        "what": "time from an event to the signing of the first head covering it, over every "
        "event written while the server ran (the worker holding the sealer lease sealing every "
        f"{Settings().seal_interval_ms} ms)",
    }


async def after_run(
    env: dict[str, str],
    admin_user_id: int,
    data: CustomerData,
    victims: list[str],
    *,
    export_interactions: int,
    export_repeats: int,
    server_started: dt.datetime | None = None,
) -> dict[str, Any]:
    """Figures taken on the load-tested database (the bench size) once the server stopped.

    * audit verification rate over the whole chain the run produced;
    * erasure of ``victims`` (contact ids), one person at a time, through
      ``services.erasure.erase`` - the same call the request workflow and the CLI make;
    * subject export of one person given ``export_interactions`` interactions.
    """
    settings, engine = _start_engine(env)
    await db.start(engine)
    try:
        services = build_services(settings)
        # Before anything here seals: what the server's workers did.
        lag = await seal_lag(server_started)
        await services.audit_trail.seal_all()
        started = time.perf_counter()
        report = await services.audit_trail.verify()
        seconds = time.perf_counter() - started
        admin = Actor.staff(admin_user_id, "admin", TEAM, "bench-erasure")
        erasure = await erasure_figures(services, admin, victims)
        export = await export_figures(
            services, data, admin_user_id, export_interactions, repeats=export_repeats
        )
    finally:
        await db.stop(engine)
    return {
        "seal_lag": lag,
        "audit_verify": {
            "events": report.checked,
            "ok": report.ok,
            "seconds": round(seconds, 3),
            "events_per_s": round(report.checked / seconds, 1) if seconds > 0 else 0.0,
            "what": "AuditTrail.verify(): every entry recomputed, Merkle tree rebuilt and every "
            "signed head checked, over this run's Consentry database",
        },
        "erasure": erasure,
        "export": export,
    }


async def erasure_figures(services: Services, admin: Actor, victims: list[str]) -> dict[str, Any]:
    """Erase each victim completely and time the whole call and each of its steps.

    The steps are timed with the erasure's own ``after_step`` hook (called as each step
    is recorded as done), so nothing is re-implemented here. Mention scrubbing decrypts
    the free text of the records the mention index names as candidates (every other
    person's records while the index is incomplete: ``python -m bench mentions`` compares
    the two); the other steps touch only the person's own rows.
    """
    marks: dict[str, int] = {}

    async def mark(step: str) -> None:
        marks[step] = time.perf_counter_ns()

    services.erasure.after_step = mark
    totals: list[int] = []
    mentions: list[int] = []
    rest: list[int] = []
    scanned: list[int] = []
    erased: dict[str, int] = {}
    try:
        for record_id in victims:
            subject = (await services.gateway.read(admin, "contact", record_id)).subject_id
            marks.clear()
            started = time.perf_counter_ns()
            result = await services.erasure.erase(subject, by="system:bench")
            finished = time.perf_counter_ns()
            if not result.complete:
                raise RuntimeError(f"the erasure of a benchmark subject ended {result.state}")
            totals.append(finished - started)
            mentions.append(marks["mentions"] - started)
            rest.append(finished - marks["mentions"])
            scanned.append(await _last_scan_size())
            for resource, n in result.erased.items():
                erased[resource] = erased.get(resource, 0) + n
    finally:
        services.erasure.after_step = None
    per_subject = {r: round(n / len(victims), 2) for r, n in erased.items()} if victims else {}
    scan_rows = round(statistics.median(scanned)) if scanned else 0
    scan_s = statistics.median(mentions) / 1e9 if mentions else 0.0
    return {
        "total": summary_ms(totals),
        "mention_scrub": {
            **summary_ms(mentions),
            "rows_scanned": scan_rows,
            "rows_per_s": round(scan_rows / scan_s, 1) if scan_s > 0 else 0.0,
        },
        "without_mention_scrub": summary_ms(rest),
        "records_per_subject": per_subject,
        "what": "Erasure.erase of one person (a contact with a deal and their interactions): "
        "mention scrub over the mention index's candidates, tombstones, key shredding, job "
        "bookkeeping and audit events",
    }


async def _last_scan_size() -> int:
    """Rows the last mention scrub read, from its own audit event (ids and counts only)."""
    row = (
        await AuditRecord.select(AuditRecord.detail)
        .where(AuditRecord.action == "erase_mentions")
        .order_by(AuditRecord.seq, ascending=False)
        .first()
    )
    return int(json.loads(row["detail"]).get("scanned", 0)) if row else 0


async def export_figures(
    services: Services, data: CustomerData, owner_id: int, interactions: int, *, repeats: int
) -> dict[str, Any]:
    """One more person with ``interactions`` interactions, then their export, timed.

    Two figures: ``build_export`` (what the portal and ``consentry dsr export`` produce:
    records, consent history, access log, processing summary, CSV/HTML files, signed
    manifest, ZIP) and ``Gateway.export_subject`` alone (reading and decrypting records).
    """
    actor = Actor.system("bench")
    person = await services.gateway.create(
        actor, "contact", data.contact(data.contacts), owner_id=owner_id, team=TEAM
    )
    first = data.interactions  # generator rows past the loaded ones: same shape, new rows
    started = time.perf_counter()
    for start in range(0, interactions, 1000):
        batch = [
            {**data.interaction(first + i), "contact_id": person.id}
            for i in range(start, min(start + 1000, interactions))
        ]
        async with db.write_transaction():
            result = await services.gateway.create_many(
                actor, "interaction", batch, owner_id=owner_id, team=TEAM
            )
        _no_rejects("interaction", result.rejected)
    load_s = time.perf_counter() - started
    bundles: list[int] = []
    size = records = 0
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        bundle = await build_export(services, person.subject_id, requested_by="system:bench")
        bundles.append(time.perf_counter_ns() - t0)
        size, records = len(bundle.zip_bytes), sum(bundle.records.values())
    reads: list[int] = []
    exporter = Actor.system(EXPORT_JOB)
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        found = await services.gateway.export_subject(
            exporter, person.subject_id, purpose=EXPORT_PURPOSE
        )
        reads.append(time.perf_counter_ns() - t0)
        if len(found) != interactions + 1:
            raise RuntimeError(f"export found {len(found)} records, not {interactions + 1}")
    return {
        "interactions": interactions,
        "records": records,
        "zip_bytes": size,
        "setup_seconds": round(load_s, 3),
        "build_export": summary_ms(bundles),
        "export_subject": summary_ms(reads),
        "what": "build_export (the signed ZIP of the portal and CLI) and "
        "Gateway.export_subject alone, for one contact with this many interactions",
    }
