"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from server.db import get_engine, pool_status
from server.migrate import pending_migrations
from server.services import Services


class Health(msgspec.Struct):
    status: str  # "ok"


class DatabasePool(msgspec.Struct):
    """This worker's connections: enough to see a pool run full, nothing about where the
    database is or who connects to it."""

    engine: str  # "sqlite" | "postgres"
    size: int  # CONSENTRY_DB_POOL_SIZE (SQLite: readers, plus one writer)
    in_use: int  # lent to a query or transaction right now


class Readiness(msgspec.Struct):
    status: str  # "ready" | "not ready"
    checks: dict[str, str]  # database, migrations, audit_sealing: "ok" or what is wrong
    database_pool: DatabasePool


@get("/health", tags=["operations"], sync_to_thread=False)
def health() -> Health:
    """The process is up."""
    return Health(status="ok")


@get("/ready", tags=["operations"])
async def ready(request: Request[Any, Any, Any]) -> Response[Readiness]:
    """Ready to serve: database reachable, migrations current, and the audit log being
    signed (no entry left unsigned for longer than ``CONSENTRY_AUDIT_STALL_SECONDS``)."""
    checks: dict[str, str] = {}
    try:
        await get_engine().run_ddl("SELECT 1")
        checks["database"] = "ok"
        pending = await pending_migrations()
        checks["migrations"] = "ok" if not pending else f"{len(pending)} pending"
        if not pending:
            checks["audit_sealing"] = await _audit_sealing(request)
    except Exception as exc:  # any failure means not ready; the type is enough to diagnose
        checks["database"] = f"unreachable ({type(exc).__name__})"
    ok = all(v == "ok" for v in checks.values())
    pool = pool_status()
    return Response(
        Readiness(
            status="ready" if ok else "not ready",
            checks=checks,
            database_pool=DatabasePool(engine=pool.engine, size=pool.size, in_use=pool.in_use),
        ),
        status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )


async def _audit_sealing(request: Request[Any, Any, Any]) -> str:
    """ "ok", or how many entries have waited how long for a signature (ids, counts)."""
    services: Services = request.app.state.services
    trail = services.audit_trail
    backlog = await trail.unsigned_backlog()
    if backlog is None:
        return "ok"
    stalled = trail.stalled(backlog, services.settings.audit_stall_seconds, once=False)
    return "ok" if stalled is None else f"stalled: {stalled.problem}"
