"""Request-scoped dependencies and the JSON error format shared by every API route."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import QueryParameter

from server.auth.service import StaffIdentity
from server.gateway import Actor, GatewayError
from server.gateway.gateway import MAX_PAGE, MAX_PAGE_SIZE
from server.logs import get_logger
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
    services: Services = request.app.state.services
    return services


def request_id_of(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


async def provide_identity(request: Request[Any, Any, Any]) -> StaffIdentity:
    token = request.cookies.get(SESSION_COOKIE, "")
    identity = await services_of(request).accounts.resolve(token)
    if identity is None:
        raise NotAuthorizedException(
            "not logged in (or the session expired): POST /api/v1/auth/login"
        )
    return identity


async def provide_actor(
    request: Request[Any, Any, Any], identity: NamedDependency[StaffIdentity]
) -> Actor:
    return Actor.staff(identity.user_id, identity.role, identity.team, request_id_of(request))


async def provide_services(request: Request[Any, Any, Any]) -> Services:
    return services_of(request)


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
