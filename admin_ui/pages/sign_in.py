"""Signing in and out: password, second factor, re-authentication and reset links.

The account service does the work (throttling, constant-time checks, fresh session ids,
audit); these handlers turn forms into calls and results into pages and cookies.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_404_NOT_FOUND

from admin_ui.rendering import render, see_other
from admin_ui.security import CSRF_COOKIE
from admin_ui.session import ANY_STATE, Visit, page_access, provide_visit, safe_next, with_next
from server.auth.passwords import WeakPassword
from server.auth.routes import session_cookie
from server.auth.service import AccountError, LoginStatus, NewSession, SessionState, StaffAccounts
from server.auth.zones import MAX_ZONE_NAME, known_zone
from server.web import SESSION_COOKIE, client_address_of, request_id_of

MAX_EMAIL = 254
MAX_PASSWORD = 1024
MAX_CODE = 32
NOTICES = {  # fixed texts chosen by a query parameter: nothing from the URL is echoed
    "signed_out": "You have signed out.",
    "password_set": "Your new password is set. Sign in with it.",
    "expired": "Your sign-in took too long. Please start again.",
}
BAD_CODE = (
    "That code is not valid. Enter the current 6-digit code from your authenticator app, "
    "or one of your unused recovery codes."
)
INVALID_RESET_LINK = (
    "This reset link is invalid, has expired or has already been used. "
    "Ask an administrator for a new one."
)


def field(form: Any, name: str, limit: int) -> str:
    value = form.get(name, "")
    return value[:limit] if isinstance(value, str) else ""


def signed_in(
    request: Request[Any, Any, Any], session: NewSession, location: str, *, rotate_csrf: bool
) -> Redirect:
    """Redirect with the new session cookie (a fresh id at every sign-in step)."""
    response = see_other(location)
    response.set_cookie(session_cookie(request, session))
    if rotate_csrf:  # a new CSRF token for the new session (issued by the next page)
        response.delete_cookie(CSRF_COOKIE, path="/")
    return response


def signed_out(location: str) -> Redirect:
    response = see_other(location)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


class SignInPages(Controller):
    include_in_schema = False

    @get("/login")
    async def login_form(
        self, request: Request[Any, Any, Any], *, accounts: NamedDependency[StaffAccounts]
    ) -> Template | Redirect:
        target = safe_next(request.query_params.get("next"))
        info = await accounts.session_info(request.cookies.get(SESSION_COOKIE, ""))
        if info is not None and info.state is SessionState.ACTIVE:
            return see_other(target)
        notice = NOTICES.get(request.query_params.get("notice", ""), "")
        return await render(
            request, "login.html", title="Sign in", next=target, email="", error="", notice=notice
        )

    @post("/login")
    async def login(
        self, request: Request[Any, Any, Any], *, accounts: NamedDependency[StaffAccounts]
    ) -> Template | Redirect:
        form = await request.form()
        email = field(form, "email", MAX_EMAIL)
        password = field(form, "password", MAX_PASSWORD + 1)
        target = safe_next(field(form, "next", 2000))
        result = await accounts.login(
            email,
            password[:MAX_PASSWORD],
            request_id_of(request),
            client_address=client_address_of(request),
            user_agent=request.headers.get("user-agent", ""),
        )
        session = result.session
        if session is None or result.status in (LoginStatus.INVALID, LoginStatus.THROTTLED):
            throttled = result.status is LoginStatus.THROTTLED
            return await render(
                request,
                "login.html",
                status=429 if throttled else HTTP_400_BAD_REQUEST,
                headers={"retry-after": str(result.retry_after)} if throttled else None,
                title="Sign in",
                next=target,
                email=email,
                error=result.message or "Invalid e-mail or password.",
                notice="",
            )
        browser_zone = field(form, "time_zone", MAX_ZONE_NAME)
        if known_zone(browser_zone):  # filled in by /static/time-zone.js; never chosen yet
            await accounts.set_time_zone(session.identity.user_id, browser_zone, if_unset=True)
        if result.status is LoginStatus.MFA_REQUIRED:
            location = with_next("/login/code", target)
        elif result.status is LoginStatus.ENROLMENT_REQUIRED:
            location = "/account/security"
        else:
            location = target
        return signed_in(request, session, location, rotate_csrf=True)

    @get(
        "/login/code",
        dependencies={"visit": Provide(provide_visit)},
        opt=page_access({SessionState.MFA_REQUIRED}),
    )
    async def code_form(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        target = safe_next(request.query_params.get("next"))
        return await render(
            request, "login_code.html", title="Two-factor authentication", next=target, error=""
        )

    @post(
        "/login/code",
        dependencies={"visit": Provide(provide_visit)},
        opt=page_access({SessionState.MFA_REQUIRED}),
    )
    async def code(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Template | Redirect:
        form = await request.form()
        target = safe_next(field(form, "next", 2000))
        result = await accounts.complete_second_factor(
            visit.token,
            field(form, "code", MAX_CODE),
            request_id_of(request),
            client_address=client_address_of(request),
            user_agent=request.headers.get("user-agent", ""),
        )
        if result.session is None:
            throttled = result.status is LoginStatus.THROTTLED
            return await render(
                request,
                "login_code.html",
                status=429 if throttled else HTTP_400_BAD_REQUEST,
                headers={"retry-after": str(result.retry_after)} if throttled else None,
                title="Two-factor authentication",
                next=target,
                error=result.message if throttled else BAD_CODE,
            )
        return signed_in(request, result.session, target, rotate_csrf=False)

    @post("/logout", dependencies={"visit": Provide(provide_visit)}, opt=page_access(ANY_STATE))
    async def logout(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Redirect:
        await accounts.logout(visit.token, visit.identity, visit.request_id)
        return signed_out("/login?notice=signed_out")

    @post("/logout/everywhere", dependencies={"visit": Provide(provide_visit)}, opt=page_access())
    async def logout_everywhere(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Redirect:
        await accounts.logout(visit.token, visit.identity, visit.request_id, everywhere=True)
        return signed_out("/login?notice=signed_out")

    @get("/reauth", dependencies={"visit": Provide(provide_visit)}, opt=page_access())
    async def reauth_form(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        target = safe_next(request.query_params.get("next"))
        return await render(
            request, "reauth.html", visit=visit, title="Confirm it is you", next=target, error=""
        )

    @post("/reauth", dependencies={"visit": Provide(provide_visit)}, opt=page_access())
    async def reauth(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Template | Redirect:
        form = await request.form()
        target = safe_next(field(form, "next", 2000))
        session = await accounts.reauthenticate(
            visit.token,
            field(form, "password", MAX_PASSWORD),
            field(form, "code", MAX_CODE),
            visit.request_id,
            user_agent=request.headers.get("user-agent", ""),
        )
        if session is None:
            return await render(
                request,
                "reauth.html",
                visit=visit,
                status=HTTP_400_BAD_REQUEST,
                title="Confirm it is you",
                next=target,
                error="The password or the code is not correct.",
            )
        return signed_in(request, session, target, rotate_csrf=False)

    @get("/reset/{token:str}")
    async def reset_form(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Template:
        if not await accounts.reset_link_is_valid(token):
            return await render(
                request,
                "reset.html",
                status=HTTP_404_NOT_FOUND,
                title="Reset link not valid",
                valid=False,
                error=INVALID_RESET_LINK,
            )
        return await render(
            request, "reset.html", title="Choose a new password", valid=True, error=""
        )

    @post("/reset/{token:str}")
    async def reset(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Response[Any] | Redirect:
        form = await request.form()
        password = field(form, "password", MAX_PASSWORD)
        if password != field(form, "confirm", MAX_PASSWORD):
            error = "The two passwords are not the same."
        else:
            try:
                await accounts.redeem_reset_link(token, password, request_id_of(request))
            except AccountError:
                return await render(
                    request,
                    "reset.html",
                    status=HTTP_404_NOT_FOUND,
                    title="Reset link not valid",
                    valid=False,
                    error=INVALID_RESET_LINK,
                )
            except WeakPassword as exc:
                error = str(exc)[0].upper() + str(exc)[1:]
            else:
                return see_other("/login?notice=password_set")
        return await render(
            request,
            "reset.html",
            status=HTTP_400_BAD_REQUEST,
            title="Choose a new password",
            valid=True,
            error=error,
        )
