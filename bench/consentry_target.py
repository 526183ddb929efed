"""Preparing Consentry for a run: a fresh home, keys, migrations, data, a staff admin.

Everything goes through Consentry's own entry points: ``consentry keys init`` for the
keys, the real migrations, ``StaffAccounts.create_user`` for the admin (who, like every
admin, must enrol a TOTP second factor before the API lets them in), and
``Gateway.create_many`` (the bulk path) for the data, so every loaded row is validated,
encrypted under its own data key and covered by an audit event, as in production.
The same settings (environment) are then handed to ``consentry serve``.
"""

from __future__ import annotations

import os
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
from server.gateway import Actor, Gateway
from server.migrate import apply_migrations
from server.services import build_services
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
    """Organizations then contacts through ``create_many``, ``batch_size`` rows a call."""
    actor = Actor.system("bench")
    ids = LoadedIds()
    started = time.perf_counter()
    for batch in data.organization_batches(batch_size):
        result = await gateway.create_many(
            actor, "organization", batch, owner_id=owner_id, team=TEAM
        )
        _no_rejects("organization", result.rejected)
        ids.organizations.extend(result.created)
        progress(len(batch))
    org_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for span, batch in data.contact_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            values["organization_id"] = ids.organizations[data.organization_of(index)]
        result = await gateway.create_many(actor, "contact", batch, owner_id=owner_id, team=TEAM)
        _no_rejects("contact", result.rejected)
        ids.contacts.extend(result.created)
        progress(len(batch))
    contact_seconds = time.perf_counter() - started
    figures = LoadFigures.of(
        len(ids.organizations), org_seconds, len(ids.contacts), contact_seconds
    )
    return figures, ids


def _no_rejects(resource: str, rejected: dict[int, dict[str, str]]) -> None:
    if rejected:
        index, problems = next(iter(rejected.items()))
        raise RuntimeError(
            f"Consentry rejected {len(rejected)} generated {resource} row(s), "
            f"e.g. row {index}: {problems}"
        )


async def seal_lag() -> dict[str, Any]:
    """How long each event of the load run waited for a signed head covering it.

    For every event: the signing time of the first head whose size covers it, minus the
    event's own time. Events no head covered when the server stopped are counted apart.
    """
    events = await AuditRecord.select(AuditRecord.seq, AuditRecord.ts).order_by(AuditRecord.seq)
    heads = await AuditCheckpoint.select(
        AuditCheckpoint.tree_size, AuditCheckpoint.signed_at
    ).order_by(AuditCheckpoint.tree_size)
    lags_ns: list[int] = []
    uncovered = 0
    index = 0
    for event in events:
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
        "events": len(events),
        "heads": len(heads),
        "unsealed_at_stop": uncovered,
        "what": "time from an event to the signing of the first head covering it, over every "
        "event of the load run (all server workers sealing every "
        f"{Settings().seal_interval_ms} ms)",
    }


async def after_run(env: dict[str, str], admin_user_id: int, victims: list[str]) -> dict[str, Any]:
    """Figures taken on the load-tested database once the server has stopped.

    * audit verification rate over the whole chain the run produced;
    * the erasure proxy: ``gateway.delete`` (record delete + data-key shred + audit event)
      of ``victims``, one at a time, as an admin would.
    """
    settings, engine = _start_engine(env)
    await db.start(engine)
    try:
        services = build_services(settings)
        lag = await seal_lag()  # before anything here seals: what the server's workers did
        await services.audit_trail.seal_all()
        started = time.perf_counter()
        report = await services.audit_trail.verify()
        seconds = time.perf_counter() - started
        actor = Actor.staff(admin_user_id, "admin", TEAM, "bench-erasure")
        samples: list[int] = []
        for record_id in victims:
            t0 = time.perf_counter_ns()
            await services.gateway.delete(actor, "contact", record_id)
            samples.append(time.perf_counter_ns() - t0)
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
        "erasure_proxy": {
            **summary_ms(samples),
            "what": "gateway.delete of one contact (row delete + data-key shred + audit event); "
            "full erasure (index removal, tombstone, legal holds) is not built yet",
        },
    }
