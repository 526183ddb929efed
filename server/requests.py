"""Per-request plumbing: a request id on every log line and audit event, and an access log.

The access log records method, path, status and duration. Not the query string (search
terms could be personal data), not headers or cookies.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from server.logs import get_logger

REQUEST_ID_HEADER = "x-request-id"
# Paths that carry a bearer secret (one-time links): the token is cut from the access log.
# Paths whose last segments are bearer tokens: whoever reads the log could use them.
SECRET_PATH_PREFIXES = (
    "/reset/",
    "/portal/enter/",
    "/portal/download/",
    "/consent/confirm/",
    "/consent/withdraw/",
    "/preferences/",
    "/portal/survey/",  # survey links (server.feedback): one per person, used once
)


def loggable_path(path: str) -> str:
    """The request path with one-time tokens removed (they grant access until used)."""
    for prefix in SECRET_PATH_PREFIXES:
        if path.startswith(prefix):
            return prefix + "[token]"
    return path


_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
log = get_logger("consentry.access")


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                method=scope.get("method", ""),
                path=loggable_path(scope["path"]),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")

    return middleware
