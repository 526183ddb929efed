"""Browser-facing protections: security headers on every response, and CSRF settings.

The headers are added by a ``before_send`` hook rather than a route middleware, so that
the router's own answers (404, 405) and static files carry them too.
"""

from __future__ import annotations

import hashlib
import hmac

from litestar.config.csrf import CSRFConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.types import BeforeMessageSendHookHandler, Message, Scope

CSRF_COOKIE = "consentry_csrf"
CSRF_FIELD = "_csrf_token"  # the form field name Litestar's CSRF middleware reads
CSRF_HEADER = "x-csrftoken"

# Paths that are not the web admin. The JSON API is protected by SameSite=Lax cookies
# and JSON bodies (a cross-site form cannot send application/json, and server.request_guard
# answers 415 to any other API body); probes and the OpenAPI pages change nothing.
NON_ADMIN_PREFIXES = ("/api/", "/health", "/ready", "/schema", "/static/")
# Consent links (server.consent.routes) are public: the token in the path is the credential,
# and RFC 8058 one-click unsubscribe POSTs come from mail providers without any cookie.
CSRF_EXEMPT = [
    "^/api/",
    "^/health",
    "^/ready",
    "^/schema",
    "^/static/",
    "^/consent/(confirm|withdraw)/",
    "^/notices/acknowledge/",  # Art. 19 acknowledgements: the token is the credential
    # The preference center: the same, its signed expiring token is the credential.
    "^/preferences/",
]

ADMIN_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
# Litestar's Swagger page loads its bundle from jsDelivr and starts it with an inline
# script; only the /schema pages get that allowance.
SWAGGER_CDN = "https://cdn.jsdelivr.net"
SCHEMA_CSP = "; ".join(
    (
        "default-src 'self'",
        f"script-src 'self' 'unsafe-inline' {SWAGGER_CDN}",
        f"style-src 'self' 'unsafe-inline' {SWAGGER_CDN}",
        f"img-src 'self' data: {SWAGGER_CDN}",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)


def is_admin_path(path: str) -> bool:
    """True for web admin pages (HTML), False for the API, probes, OpenAPI and assets."""
    return not path.startswith(NON_ADMIN_PREFIXES)


def csrf_secret(session_secret: bytes) -> str:
    """A key for signing CSRF tokens, derived from (and not equal to) the session secret."""
    return hmac.new(session_secret, b"consentry/csrf/v1", hashlib.sha256).hexdigest()


def csrf_config(session_secret: bytes, *, cookie_secure: bool) -> CSRFConfig:
    return CSRFConfig(
        secret=csrf_secret(session_secret),
        cookie_name=CSRF_COOKIE,
        header_name=CSRF_HEADER,
        cookie_secure=cookie_secure,
        # Pages put the token in forms and in hx-headers; no script needs to read the cookie.
        cookie_httponly=True,
        cookie_samesite="lax",
        exclude=CSRF_EXEMPT,
    )


def security_headers(*, https: bool) -> BeforeMessageSendHookHandler:
    """A ``before_send`` hook adding the security headers to every HTTP response."""

    async def add_headers(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        path = str(scope.get("path", ""))
        headers = MutableScopeHeaders.from_message(message)
        headers["content-security-policy"] = SCHEMA_CSP if path.startswith("/schema") else ADMIN_CSP
        headers["x-frame-options"] = "DENY"
        headers["referrer-policy"] = "same-origin"
        headers["x-content-type-options"] = "nosniff"
        headers["cross-origin-opener-policy"] = "same-origin"
        if https:
            headers["strict-transport-security"] = "max-age=31536000"
        if not path.startswith("/static/") and "cache-control" not in headers:
            # Pages show personal data and one-time secrets: never keep them in a cache.
            headers["cache-control"] = "no-store"

    return add_headers
