"""Rendering pages, flash messages, redirects and the HTML error pages."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.exceptions.responses import create_exception_response
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from admin_ui.navigation import MenuGroup, main_menu
from admin_ui.security import is_admin_path
from admin_ui.session import PageRedirect, Visit, visit_of
from server.auth.service import SessionState
from server.gateway import Conflict, Forbidden, GatewayError, InvalidInput, NotFound
from server.logs import get_logger
from server.web import services_of, without_echoed_keys

log = get_logger("consentry.admin")


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


async def render(
    request: Request[Any, Any, Any],
    template: str,
    *,
    visit: Visit | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Template:
    """A page in the admin layout, with the flash messages waiting for this session."""
    flashes: list[dict[str, str]] = []
    if visit is not None and not is_htmx(request):
        flashes = await services_of(request).accounts.pop_flash(visit.token)
    base: dict[str, Any] = {
        "user": visit.identity if visit else None,
        "nav": visit is not None and visit.info.state is SessionState.ACTIVE,
        "menu": menu_of(request, visit),
        "flashes": flashes,
        "section": "",
        "title": "",
    }
    return Template(
        template_name=template,
        context={**base, **context},
        status_code=status,
        headers=headers,
        cookies=cookies,
    )


def menu_of(request: Request[Any, Any, Any], visit: Visit | None) -> tuple[MenuGroup, ...]:
    """The sidebar for a fully signed-in visit (nothing while a second factor is pending)."""
    if visit is None or visit.info.state is not SessionState.ACTIVE:
        return ()
    policy = services_of(request).policy
    return main_menu(policy, visit.identity.role, request.url.path)


async def flash(
    request: Request[Any, Any, Any], visit: Visit, text: str, kind: str = "success"
) -> None:
    """A message for the next page. Never put personal data in it: say what, not whom."""
    await services_of(request).accounts.push_flash(visit.token, text, kind)


def see_other(location: str) -> Redirect:
    """The answer to a form POST (303: the browser follows with a GET)."""
    return Redirect(location, status_code=HTTP_303_SEE_OTHER)


def error_page(
    request: Request[Any, Any, Any], status: int, title: str, message: str
) -> Response[Any]:
    visit = visit_of(request)
    context: dict[str, Any] = {
        "user": visit.identity if visit else None,
        "nav": visit is not None and visit.info.state is SessionState.ACTIVE,
        "menu": menu_of(request, visit),
        "flashes": [],
        "section": "",
        "title": title,
        "message": message,
        "status": status,
    }
    return Template(template_name="error.html", context=context, status_code=status)


HTTP_TITLES = {
    400: ("Bad request", "The request could not be understood. Go back and try again."),
    403: ("Not allowed", "You do not have permission to do that."),
    404: ("Page not found", "There is no page at this address, or you do not have access to it."),
    405: ("Not allowed", "This address does not accept that kind of request."),
    413: ("Too large", "What you sent is too large."),
    429: ("Too many requests", "Wait a moment and try again."),
}
CSRF_FAILURE = "CSRF token verification failed"


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """HTML error pages for the admin; the API keeps Litestar's JSON answers unchanged."""
    if not is_admin_path(request.url.path):
        return create_exception_response(request, without_echoed_keys(exc))
    status = exc.status_code
    if status == 403 and exc.detail == CSRF_FAILURE:
        log.info("refused", status=403, error="csrf")
        return error_page(
            request,
            403,
            "Form expired",
            "This form could not be accepted: it has expired or did not come from this site. "
            "Go back, reload the page and try again.",
        )
    title, message = HTTP_TITLES.get(status, ("Something went wrong", "Please try again."))
    return error_page(request, status, title, message)


def gateway_error_handler(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    """Gateway refusals on admin pages. The messages name fields and rules, never values."""
    log.info("refused", status=exc.status_code, error=type(exc).__name__)
    if isinstance(exc, NotFound):
        return error_page(
            request,
            404,
            "Not found",
            "This record does not exist, or it is not one you have access to.",
        )
    if isinstance(exc, Forbidden):
        return error_page(request, 403, "Not allowed", _sentence(exc.message))
    if isinstance(exc, Conflict):
        return error_page(request, 409, "Cannot do that", _sentence(exc.message))
    if isinstance(exc, InvalidInput):
        return error_page(request, 400, "Invalid request", _sentence(exc.message))
    return error_page(request, exc.status_code, "Cannot do that", _sentence(exc.message))


def redirect_handler(request: Request[Any, Any, Any], exc: PageRedirect) -> Response[Any]:
    if is_htmx(request):  # htmx would follow a 303 inside the page; ask for a full load
        return Response(None, status_code=200, headers={"HX-Redirect": exc.location})
    return see_other(exc.location)


def _sentence(message: str) -> str:
    message = message.strip()
    if not message:
        return "That is not possible."
    return message[0].upper() + message[1:] + ("" if message.endswith(".") else ".")
