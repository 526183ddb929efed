"""Login, logout and "who am I" for the API. The web admin (separate issue) reuses them."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from server.auth.service import StaffIdentity
from server.web import SESSION_COOKIE, provide_identity, request_id_of, services_of


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: str = msgspec.field()
    password: str = msgspec.field()


class StaffUserOut(msgspec.Struct):
    id: int
    email: str
    display_name: str
    role: str
    team: str


def _out(identity: NamedDependency[StaffIdentity]) -> StaffUserOut:
    return StaffUserOut(
        identity.user_id, identity.email, identity.display_name, identity.role, identity.team
    )


class AuthRoutes(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/login", status_code=HTTP_200_OK)
    async def login(
        self, request: Request[Any, Any, Any], data: JSONBody[LoginRequest]
    ) -> Response[Any]:
        """Exchange e-mail and password for a session cookie (HttpOnly, SameSite=Lax)."""
        services = services_of(request)
        if len(data.password) > 1024 or len(data.email) > 254:
            raise NotAuthorizedException("invalid e-mail or password")
        session = await services.accounts.login(data.email, data.password, request_id_of(request))
        if session is None:
            raise NotAuthorizedException("invalid e-mail or password")
        cookie = Cookie(
            key=SESSION_COOKIE,
            value=session.token,
            httponly=True,
            samesite="lax",
            secure=services.settings.cookie_secure,
            path="/",
            max_age=int(services.accounts.absolute.total_seconds()),
        )
        return Response(_out(session.identity), cookies=[cookie])

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        dependencies={"identity": Provide(provide_identity)},
    )
    async def logout(
        self, request: Request[Any, Any, Any], identity: NamedDependency[StaffIdentity]
    ) -> Response[None]:
        """End this session on the server and clear the cookie."""
        token = request.cookies.get(SESSION_COOKIE, "")
        await services_of(request).accounts.logout(token, identity, request_id_of(request))
        response: Response[None] = Response(None, status_code=HTTP_204_NO_CONTENT)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @get("/me", dependencies={"identity": Provide(provide_identity)})
    async def me(self, identity: NamedDependency[StaffIdentity]) -> StaffUserOut:
        """The logged-in staff user."""
        return _out(identity)
