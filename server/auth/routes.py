"""Login, logout and "who am I" for the API. The web admin has its own pages for these."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from server.auth.service import LoginResult, LoginStatus, NewSession, StaffAccounts, StaffIdentity
from server.web import (
    ALSO_ANSWERS,
    SESSION_COOKIE,
    TooManyCalls,
    client_address_of,
    provide_identity,
    request_id_of,
    services_of,
)


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    password: str
    totp_code: str | None = None  # required for accounts with a second factor


class StaffUserOut(msgspec.Struct):
    id: int
    email: str
    display_name: str
    role: str
    team: str


def _out(identity: StaffIdentity) -> StaffUserOut:
    return StaffUserOut(
        identity.user_id, identity.email, identity.display_name, identity.role, identity.team
    )


def session_cookie(request: Request[Any, Any, Any], session: NewSession) -> Cookie:
    services = services_of(request)
    return Cookie(
        key=SESSION_COOKIE,
        value=session.token,
        httponly=True,
        samesite="lax",
        secure=services.settings.cookie_secure,
        path="/",
        max_age=int(services.accounts.absolute.total_seconds()),
    )


def _throttled(result: LoginResult) -> TooManyCalls:
    """429 with Retry-After, for a wrong password or code that locked, or a lock in force."""
    return TooManyCalls(result.message, headers={"Retry-After": str(result.retry_after)})


class AuthRoutes(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/login", status_code=HTTP_200_OK, opt={ALSO_ANSWERS: (401, 429)})
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[LoginRequest],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Response[StaffUserOut]:
        """Exchange e-mail, password (and a TOTP code where enrolled) for a session cookie.

        Failed attempts, wrong codes included, are throttled per account and per client
        address (429 with Retry-After). Accounts whose role the policy requires a second
        factor for (`mfa, required`: admins and compliance officers as shipped) must enrol
        one in the web admin before they can use the API.
        """
        if len(data.password) > 1024 or len(data.email) > 254:
            raise NotAuthorizedException("Invalid e-mail or password.")
        result = await accounts.login(
            data.email,
            data.password,
            request_id_of(request),
            client_address=client_address_of(request),
            user_agent=request.headers.get("user-agent", ""),
        )
        session = result.session
        if result.status is LoginStatus.THROTTLED:
            raise _throttled(result)
        if session is None:
            raise NotAuthorizedException(result.message)
        if result.status is LoginStatus.ENROLMENT_REQUIRED:
            await accounts.logout(session.token, session.identity, request_id_of(request))
            raise PermissionDeniedException(
                "your role requires a second factor: sign in to the web admin and enrol one "
                "under My account first"
            )
        if result.status is LoginStatus.MFA_REQUIRED:
            completed = LoginResult(LoginStatus.INVALID)
            if data.totp_code:
                completed = await accounts.complete_second_factor(
                    session.token,
                    data.totp_code,
                    request_id_of(request),
                    client_address=client_address_of(request),
                    user_agent=request.headers.get("user-agent", ""),
                )
            if completed.session is None:
                await accounts.logout(session.token, session.identity, request_id_of(request))
                if completed.status is LoginStatus.THROTTLED:
                    raise _throttled(completed)
                raise NotAuthorizedException(
                    "a valid authenticator code is required: send it as totp_code"
                )
            session = completed.session
        return Response(_out(session.identity), cookies=[session_cookie(request, session)])

    @post(
        "/logout",
        status_code=HTTP_204_NO_CONTENT,
        dependencies={"identity": Provide(provide_identity)},
    )
    async def logout(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Response[None]:
        """End this session on the server and clear the cookie."""
        token = request.cookies.get(SESSION_COOKIE, "")
        await accounts.logout(token, identity, request_id_of(request))
        response: Response[None] = Response(None, status_code=HTTP_204_NO_CONTENT)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @get("/me", dependencies={"identity": Provide(provide_identity)})
    async def me(self, identity: NamedDependency[StaffIdentity]) -> StaffUserOut:
        """The logged-in staff user."""
        return _out(identity)
