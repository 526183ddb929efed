"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from server.db import get_engine
from server.migrate import pending_migrations


@get("/health", tags=["operations"], sync_to_thread=False)
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/ready", tags=["operations"])
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Ready to serve: database reachable and migrations current."""
    checks: dict[str, str] = {}
    try:
        await get_engine().run_ddl("SELECT 1")
        checks["database"] = "ok"
        pending = await pending_migrations()
        checks["migrations"] = "ok" if not pending else f"{len(pending)} pending"
    except Exception as exc:  # any failure means not ready; the type is enough to diagnose
        checks["database"] = f"unreachable ({type(exc).__name__})"
    ok = all(v == "ok" for v in checks.values())
    return Response(
        {"status": "ready" if ok else "not ready", "checks": checks},
        status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )
