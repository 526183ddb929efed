"""Structured JSON logs with request ids - and a PII surface kept as small as possible.

Logs are a place personal data leaks to. So: no request/response bodies, headers, cookies
or query strings are ever logged (Litestar's request-logging middleware is not used and
uvicorn's access log is off; :mod:`server.requests` writes a one-line access log with the
path only), and a structlog processor blanks any key that names personal data.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from server.datamap import RECORD_TYPES

REDACTED = "[redacted]"
_SENSITIVE = {
    "password",
    "new_password",
    "token",
    "cookie",
    "cookies",
    "authorization",
    "set-cookie",
    "secret",
    "session",
    "body",
    "headers",
    "query",
    "query_string",
    "values",
    "data",
}
SENSITIVE_KEYS = frozenset(
    _SENSITIVE | {f.name for rt in RECORD_TYPES.values() for f in rt.fields if f.encrypted}
)


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 5:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in SENSITIVE_KEYS else _redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v, depth + 1) for v in value]
    return value


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Blank values under personal keys, at any depth of nested dicts and lists."""
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_personal_data,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = True  # logs query strings; ours does not
    logging.getLogger("casbin").setLevel(logging.WARNING)  # dumps the whole policy at INFO
    # httpx logs every webhook post with its full URL, which may carry a receiver's token;
    # server.webhooks logs counts and outcome codes instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "litestar"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
