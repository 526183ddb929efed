"""One gate for client text before any handler sees it: decodable, shallow, NUL-free, JSON.

Every route used to parse its own input, and the probe of issue 14 found the gaps between
them: invalid UTF-8 and 1,000-deep JSON raised inside the JSON decoder (500), lead
conversion parsed its body with no ``try`` at all, and NUL characters reached PostgreSQL,
which refuses them in text (500, and one CSV export cut mid-stream). The checks live here,
once, as an app-wide middleware that runs after routing (so the router's own 404/405
answers are unchanged) and before the handler:

- the path, the query string and form bodies must be UTF-8 without NUL (a multipart
  form's text fields; its files are the upload's parser's business);
- a JSON body must be UTF-8, parse, nest at most ``MAX_JSON_DEPTH`` deep and carry no NUL
  in any key or string;
- on the JSON API (``/api/``), a POST/PUT/PATCH/DELETE that has a body must declare
  ``application/json`` (415 otherwise). A cross-site HTML form can only send url-encoded,
  multipart or text/plain bodies, so refusing them is what keeps the API out of reach of
  CSRF (README, "Web admin"). A route that must take HTML forms says so with
  ``opt={ACCEPTS: ...}`` - only the public lead form does, and it needs no session.

Refusals are 400 (``InvalidInput``, rendered like any other) or 415, in the API's error
shape ``{"status_code", "detail"}``; the message names the rule, never the submitted value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

import msgspec
from litestar import Request
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import ASGIApp, Receive, Scope, Send

from server.gateway.errors import InvalidInput
from server.logs import get_logger

ACCEPTS = "accepts"  # route opt: the request media types a JSON API route also accepts
JSON = "application/json"
URL_ENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
HTML_FORM_OR_JSON = frozenset({JSON, URL_ENCODED, MULTIPART})
API_PREFIX = "/api/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The deepest body any route takes is a lead conversion's `deal` object (2 levels); 32
# leaves room for growth while keeping every later walk over the value cheap and shallow.
MAX_JSON_DEPTH = 32
NUL = "\x00"
log = get_logger("consentry.web")


class UnsupportedMediaType(HTTPException):
    status_code = HTTP_415_UNSUPPORTED_MEDIA_TYPE


def media_type_of(scope: Scope) -> str:
    """The request's media type, lower-cased, without parameters ("" when absent)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


def check_percent_encoded(raw: bytes, where: str) -> None:
    """Percent-encoded text (a query string, a url-encoded form) must decode to UTF-8
    without NUL once unquoted - that is what handlers and the database will see."""
    decoded = unquote_to_bytes(raw.replace(b"+", b" "))
    if b"\x00" in decoded:
        raise InvalidInput(f"the {where} contains a NUL character, which is not accepted")
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"the {where} is not valid UTF-8") from None


def _nested(value: Any, depth: int) -> Iterator[tuple[Any, int]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, depth
            yield item, depth + 1
    elif isinstance(value, list):
        for item in value:
            yield item, depth + 1


def check_json_value(value: Any) -> None:
    """No container deeper than ``MAX_JSON_DEPTH``, no NUL in a key or string.

    Iterative, so that checking a deep value cannot itself exhaust the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if NUL in item:
                raise InvalidInput("the body contains a NUL character, which is not accepted")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidInput(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
            pending.extend(_nested(item, depth))


def check_json_body(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the body is not valid UTF-8") from None
    try:
        value = msgspec.json.decode(body)
    except RecursionError:  # msgspec gives up around 1,000 levels, before any check of ours
        raise InvalidInput(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except msgspec.DecodeError:
        raise InvalidInput("the body is not valid JSON") from None
    check_json_value(value)


def check_media_type(scope: Scope, media_type: str) -> None:
    accepted: frozenset[str] = scope["route_handler"].opt.get(ACCEPTS, frozenset({JSON}))
    if media_type not in accepted:
        log.info("refused", status=HTTP_415_UNSUPPORTED_MEDIA_TYPE, error="media_type")
        raise UnsupportedMediaType(
            "this endpoint accepts " + " or ".join(sorted(accepted)) + " bodies only"
        )


class RequestInputGuard(ASGIMiddleware):
    """Refuses undecodable, NUL-bearing, too-deep or malformed input, and non-JSON API
    bodies, before a handler (or the database) sees them."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if NUL in scope["path"]:
            raise InvalidInput("the path contains a NUL character, which is not accepted")
        check_percent_encoded(scope.get("query_string", b""), "query string")
        if scope.get("method", "GET") in BODY_METHODS:
            await self.check_body(scope, receive)
        await next_app(scope, receive, send)

    async def check_body(self, scope: Scope, receive: Receive) -> None:
        media_type = media_type_of(scope)
        on_api = scope["path"].startswith(API_PREFIX)
        if not on_api and media_type not in (JSON, URL_ENCODED):
            return  # multipart uploads and the like: the page's own parser decides
        # Read once; Litestar keeps the body (and the parsed form) in the connection state
        # for the handler, and enforces the route's maximum body size (413) while reading.
        request = Request[Any, Any, Any](scope, receive)
        body = await request.body()
        if not body:
            return  # a DELETE or POST without a body needs no content type
        if on_api:
            check_media_type(scope, media_type)
        if media_type == JSON:
            check_json_body(body)
        elif media_type == URL_ENCODED:
            check_percent_encoded(body, "form body")
        elif media_type == MULTIPART:
            await check_multipart(request)


async def check_multipart(request: Request[Any, Any, Any]) -> None:
    try:
        form = await request.form()
    except UnicodeDecodeError:  # a text field's bytes (Litestar decodes them as it parses)
        raise InvalidInput("the form body is not valid UTF-8") from None
    if any(isinstance(value, str) and NUL in value for _, value in form.multi_items()):
        raise InvalidInput("the form body contains a NUL character, which is not accepted")
