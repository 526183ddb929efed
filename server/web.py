"""Request-scoped dependencies and the JSON error format shared by every API route."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.params import QueryParameter
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_429_TOO_MANY_REQUESTS
from litestar.types import Guard

from audit.events import Outcome, audit_event
from server import db
from server.datamap import shown_name
from server.gateway import Actor, Forbidden, GatewayError
from server.gateway.gateway import MAX_PAGE, MAX_PAGE_SIZE
from server.identity import StaffIdentity, TokenRateLimited
from server.logs import get_logger

if TYPE_CHECKING:
    # Only a type: the container is built from the packages that use this module
    # (the acyclic contract ignores this one import; docs/architecture.md).
    from server.services import Services

SESSION_COOKIE = "consentry_session"
PURPOSE_HEADER = "x-consentry-purpose"
log = get_logger("consentry.web")

# The paging parameters of every API list, bounded as the gateway bounds them, so an
# out-of-range page is a 400 naming the limit (and the limits are in the OpenAPI document).
PageNumber = Annotated[
    int, QueryParameter(ge=1, le=MAX_PAGE, description=f"1 to {MAX_PAGE}; 1 is the newest")
]
PageSize = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE, description="records a page")]


def services_of(request: Request[Any, Any, Any]) -> Services:
    """The container, for guards and helpers that only hold a request: handlers ask for
    each service by name instead (``service_dependencies`` in server/services.py)."""
    services: Services = request.app.state.services
    return services


def request_id_of(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


class TooManyCalls(HTTPException):
    status_code = HTTP_429_TOO_MANY_REQUESTS


def bearer_of(request: Request[Any, Any, Any]) -> str | None:
    """The secret of an ``Authorization: Bearer ...`` header (None: no such header)."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else None


IDENTITY_STATE = "consentry_identity"


async def provide_identity(request: Request[Any, Any, Any]) -> StaffIdentity:
    """The caller: an API token (``Authorization: Bearer``) or a staff session cookie.

    A bearer call is never a browser's ambient credential, so it needs no CSRF token; a
    header that is present but does not work is a 401 even if a cookie is sent too.
    Resolved once per request (a route's guard and its handler share it), so a token's
    call counts once against its rate limit."""
    known: StaffIdentity | None = request.scope.get("state", {}).get(IDENTITY_STATE)
    if known is not None:
        return known
    identity = await _resolve_identity(request)
    request.scope.setdefault("state", {})[IDENTITY_STATE] = identity
    return identity


async def _resolve_identity(request: Request[Any, Any, Any]) -> StaffIdentity:
    services = services_of(request)
    secret = bearer_of(request)
    if secret is not None:
        try:
            identity = await services.tokens.resolve(secret)
        except TokenRateLimited as limited:
            raise TooManyCalls(
                "this token made too many calls: try again after Retry-After seconds",
                headers={"Retry-After": str(limited.retry_after)},
            ) from None
        if identity is None:
            raise NotAuthorizedException("the API token is unknown, revoked or expired")
        return identity
    token = request.cookies.get(SESSION_COOKIE, "")
    identity = await services.accounts.resolve(token)
    if identity is None:
        raise NotAuthorizedException(
            "not logged in (or the session expired): POST /api/v1/auth/login, or send "
            "an API token as Authorization: Bearer"
        )
    return identity


async def provide_actor(
    request: Request[Any, Any, Any], identity: NamedDependency[StaffIdentity]
) -> Actor:
    return actor_of(identity, request_id_of(request))


def actor_of(identity: StaffIdentity, request_id: str) -> Actor:
    """The gateway actor of a staff user or an API token (its own id, its limits)."""
    return Actor.staff(
        identity.user_id,
        identity.role,
        identity.team,
        request_id,
        actor_id=identity.actor_id,
        limits=identity.token,
    )


def client_address_of(request: Request[Any, Any, Any]) -> str:
    """The peer address (proxy headers are not trusted unless uvicorn is told to)."""
    return request.client.host if request.client else ""


def purpose_of(request: Request[Any, Any, Any]) -> str | None:
    return request.headers.get(PURPOSE_HEADER) or None


def gateway_error_handler(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.message}
    if exc.problems:
        body["errors"] = [{"field": k, "message": v} for k, v in exc.problems.items()]
    log.info("refused", status=exc.status_code, error=type(exc).__name__)
    return Response(body, status_code=exc.status_code)


# --- the error answers in the OpenAPI document ------------------------------------------------

# Route opt: error statuses a route gives beyond those its shape implies (below), e.g. a
# login's 401 for a wrong password and 429 with Retry-After when throttled.
ALSO_ANSWERS = "also_answers"
# Route opt: (schema, media types) of a body the handler parses itself (the public lead
# form takes an HTML form as well as JSON), so the document still says what it takes.
DOCUMENTED_BODY = "documented_body"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ERROR_SCHEMA = Schema(
    title="Error",
    type=OpenAPIType.OBJECT,
    required=["status_code", "detail"],
    properties={
        "status_code": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(
                type=OpenAPIType.OBJECT,
                properties={
                    "field": Schema(type=OpenAPIType.STRING),
                    "message": Schema(type=OpenAPIType.STRING),
                },
            ),
            description="per field: what is wrong (never the submitted value)",
        ),
        "extra": Schema(description="Litestar's validation details (parameter names)"),
    },
    description="Every API error: the status, a message, and for bad fields their names.",
)
ERROR_REFERENCE = Reference(ref="#/components/schemas/Error")  # the one schema of every error
ERROR_MEANINGS = {
    400: "Invalid input: the message names the field or rule",
    401: "Not logged in, the session expired, or the API token is unknown, revoked or expired",
    403: "Your role, the purpose or the person's consent does not allow this",
    404: "No such record in your scope (out of scope looks exactly like absent)",
    409: "The record's state does not allow this now",
    413: "The body is larger than the server accepts",
    415: "The body is not of a media type this endpoint accepts (application/json)",
    429: "Too many attempts or calls: try again after Retry-After seconds",
}


def error_statuses(method: str, handler: HTTPRouteHandler, has_path_ids: bool) -> list[int]:
    """The error answers one API operation can give, from what its handler depends on."""
    statuses = [400]
    if has_path_ids:
        statuses.append(404)
    if "identity" in handler.resolve_dependencies():  # a staff session: policy applies
        statuses += [401, 403, 404, 429]  # 429: an API token over its rate limit
    if method in BODY_METHODS:
        statuses += [409, 413, 415]
    statuses += handler.opt.get(ALSO_ANSWERS, ())
    return sorted(set(statuses))


def document_error_answers(app: Litestar) -> None:
    """Add the API's error answers to every operation of the app's OpenAPI document.

    Litestar documents a handler's success status and a 400 for validation; the 401, 403,
    404, 409, 413, 415 and 429 every client meets were missing, so a client generated from
    the document (and the schema-conformance test, tests/server/test_api_fuzz.py) met answers the
    document said could not happen. Called once, before the document is first served
    (``create_app``)."""
    paths = app.openapi_schema.paths or {}
    as_component(app, ERROR_SCHEMA)
    for route in app.routes:
        item = paths.get(route.path_format)
        if item is None or not isinstance(route, HTTPRoute) or not route.path.startswith("/api/"):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation: Operation | None = getattr(item, method.lower(), None)
                if operation is not None:
                    statuses = error_statuses(method, handler, bool(route.path_parameters))
                    operation.responses = with_error_answers(operation.responses or {}, statuses)
                    documented = handler.opt.get(DOCUMENTED_BODY)
                    if documented is not None:
                        schema, media_types = documented
                        named = as_component(app, schema)
                        operation.request_body = documented_body(named, media_types)


def as_component(app: Litestar, schema: Schema) -> Schema | Reference:
    """A documented body with a ``title`` is a named schema of the document (the record
    types' ``ContactCreate``, ``ContactUpdate``, ...), referred to from its operations."""
    if not schema.title:
        return schema
    components = app.openapi_schema.components
    components.schemas = {**(components.schemas or {}), schema.title: schema}
    return Reference(ref=f"#/components/schemas/{schema.title}")


def documented_body(schema: Schema | Reference, media_types: Iterable[str]) -> RequestBody:
    return RequestBody(
        content={t: OpenAPIMediaType(schema=schema) for t in sorted(media_types)}, required=True
    )


_SCALARS = {"string": OpenAPIType.STRING, "integer": OpenAPIType.INTEGER}


def struct_schema(struct: type[msgspec.Struct]) -> Schema:
    """The OpenAPI schema of a flat Struct of text and number fields (msgspec's JSON schema
    of it, in Litestar's types): for a body a handler parses itself (``DOCUMENTED_BODY``)."""
    _, components = msgspec.json.schema_components([struct])
    found = components[struct.__name__]
    properties: dict[str, Schema | Reference] = {}
    for name, spec in found["properties"].items():
        kinds = [k["type"] for k in spec.get("anyOf", [spec]) if k.get("type") in _SCALARS]
        properties[name] = Schema(type=_SCALARS[kinds[0]], description=spec.get("description"))
    return Schema(
        type=OpenAPIType.OBJECT,
        properties=properties,
        required=found.get("required"),
        additional_properties=False if struct.__struct_config__.forbid_unknown_fields else None,
        description=found.get("description"),
    )


_UNKNOWN_KEY = re.compile(r"^(Object contains unknown field `)(.*)(`.*)$", re.DOTALL)


def without_echoed_keys(exc: HTTPException) -> HTTPException:
    """A msgspec body error names an unknown key; a key is client input (someone may type an
    e-mail address into it), so it comes back only if it looks like a field name."""
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        for item in exc.extra:
            message = item.get("message") if isinstance(item, dict) else None
            found = _UNKNOWN_KEY.match(message) if isinstance(message, str) else None
            if found and isinstance(item, dict):
                item["message"] = found[1] + shown_name(found[2]) + found[3]
    return exc


def with_error_answers(responses: dict[str, Any], statuses: list[int]) -> dict[str, Any]:
    for status in statuses:
        responses[str(status)] = OpenAPIResponse(
            description=ERROR_MEANINGS[status],
            content={"application/json": OpenAPIMediaType(schema=ERROR_REFERENCE)},
        )
    no_content = responses.get("204")
    if isinstance(no_content, OpenAPIResponse):
        # Litestar documents a ``Response[None]`` as JSON ``null``; a 204 has no body at
        # all (logout's answer was "missing Content-Type").
        no_content.content = None
    return responses


# --- the right to call an API family (consent, requests, audit) ------------------------------


def policy_guard(resource: str, action: str, refusal: str = "") -> Guard:
    """A route guard: the caller must be signed in (401: a session or an API token) and
    their role must have ``(resource, action)`` in the policy (403, audited, with
    ``refusal`` as its one-line reason when given). Guards run before the body is parsed,
    so a refused caller learns nothing from validation errors."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        request = Request[Any, Any, Any](connection.scope, connection.receive)
        identity = await provide_identity(request)
        services = services_of(request)
        if services.policy.allows(identity.role, resource, action):
            return
        actor = actor_of(identity, request_id_of(request))
        await require_right(request, actor, resource, action, refusal=refusal)

    return guard


async def require_right(
    request: Request[Any, Any, Any],
    actor: Actor,
    resource: str,
    action: str,
    *,
    purpose: str = "",
    audit_allowed: bool = True,
    refusal: str = "",
) -> None:
    """The policy's answer for ``(role, resource, action)``, audited either way.

    A refusal is a 403 with a denied event. ``purpose`` (if the call acts for one) must be
    among an API token's purposes as well. An allowed call leaves an event too, unless the
    service it calls audits it itself (``audit_allowed=False``): every call, and a token's
    above all, is in the trail with its own actor id."""
    services = services_of(request)
    reason = ""
    if not services.policy.allows(actor.role, resource, action):
        reason = "action_not_allowed"
    elif purpose and actor.limits is not None and purpose not in actor.limits.purposes:
        reason = "purpose_not_allowed_for_token"
    if reason or audit_allowed:
        async with db.write_transaction():
            await services.audit.append(
                audit_event(
                    actor_id=actor.id,
                    actor_role=actor.role,
                    action=f"{resource}.{action}",
                    resource_type=resource,
                    outcome=Outcome.DENIED if reason else Outcome.ALLOWED,
                    purpose=purpose,
                    reason=reason or "allowed",
                    request_id=actor.request_id,
                )
            )
    if reason == "purpose_not_allowed_for_token":
        raise Forbidden(f"this API token may not act for the purpose {purpose}")
    if reason:
        raise Forbidden(refusal or f"your role may not {action} {resource.replace('_', ' ')}")
