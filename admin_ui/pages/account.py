"""My account: profile, password, second factor and the sessions signed in as me.

TOTP enrolment keeps the new secret in the page, not on the server: it travels in a
hidden field sealed by the vault (AES-GCM bound to this user and a timestamp), so the
browser can neither read nor forge it, and a stale or foreign one is refused.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.rendering import flash, render, see_other
from admin_ui.session import PageRedirect, Visit, page_access, provide_visit, with_next
from server.auth import second_factor
from server.auth.passwords import WeakPassword
from server.auth.routes import session_cookie
from server.auth.service import AccountError, SessionState, StaffAccounts
from server.auth.zones import MAX_ZONE_NAME, known_zone, zone_names
from server.gateway.sealing import CiphertextError
from server.web import services_of

PENDING_LABEL = "totp-pending"
PENDING_LIFETIME_SECONDS = 15 * 60
MAX_PASSWORD = 1024
ENROLMENT_STATES = {SessionState.ACTIVE, SessionState.ENROLMENT_REQUIRED}
VISIT = {"visit": Provide(provide_visit)}
# Names of the password form's inputs (the error messages are keyed by them).
CURRENT, NEW, CONFIRM = "current_password", "new_password", "confirm_password"


def _field(form: Any, name: str, limit: int = MAX_PASSWORD) -> str:
    value = form.get(name, "")
    return value[:limit] if isinstance(value, str) else ""


async def account_page(
    request: Request[Any, Any, Any],
    visit: Visit,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    accounts = services_of(request).accounts
    identity = visit.identity
    return await render(
        request,
        "account/index.html",
        visit=visit,
        status=status,
        section="account",
        title="My account",
        sessions=await accounts.list_sessions(identity.user_id, visit.token),
        recovery_left=await accounts.remaining_recovery_codes(identity.user_id)
        if identity.has_totp
        else 0,
        errors=errors or {},
        error_items=list((errors or {}).items()),
        zones=zone_names(),
    )


@get("/account", include_in_schema=False, dependencies=VISIT, opt=page_access())
async def account(request: Request[Any, Any, Any], visit: NamedDependency[Visit]) -> Template:
    return await account_page(request, visit)


@post("/account/time-zone", include_in_schema=False, dependencies=VISIT, opt=page_access())
async def change_time_zone(
    request: Request[Any, Any, Any],
    visit: NamedDependency[Visit],
    *,
    accounts: NamedDependency[StaffAccounts],
) -> Template | Redirect:
    form = await request.form()
    zone = _field(form, "time_zone", MAX_ZONE_NAME + 1)
    if not known_zone(zone):
        errors = {"time_zone": "Choose a time zone from the list."}
        return await account_page(request, visit, errors=errors, status=HTTP_400_BAD_REQUEST)
    await accounts.set_time_zone(visit.identity.user_id, zone)
    await flash(request, visit, f"Times are now shown in {zone.replace('_', ' ')}.")
    return see_other("/account")


@post("/account/password", include_in_schema=False, dependencies=VISIT, opt=page_access())
async def change_password(
    request: Request[Any, Any, Any],
    visit: NamedDependency[Visit],
    *,
    accounts: NamedDependency[StaffAccounts],
) -> Template | Redirect:
    form = await request.form()
    new = _field(form, NEW)
    errors: dict[str, str] = {}
    if new != _field(form, CONFIRM):
        errors[CONFIRM] = "The two new passwords are not the same."
    else:
        try:
            await accounts.change_password(
                visit.info, visit.token, _field(form, CURRENT), new, visit.request_id
            )
        except AccountError:
            errors[CURRENT] = "The current password is not correct."
        except WeakPassword as exc:
            errors[NEW] = str(exc)[:1].upper() + str(exc)[1:]
    if errors:
        return await account_page(request, visit, errors=errors, status=HTTP_400_BAD_REQUEST)
    await flash(request, visit, "Password changed. Your other sessions have been signed out.")
    return see_other("/account")


@post(
    "/account/sessions/{session_id:int}/end",
    include_in_schema=False,
    dependencies=VISIT,
    opt=page_access(),
)
async def end_session(
    request: Request[Any, Any, Any],
    visit: NamedDependency[Visit],
    session_id: FromPath[int],
    *,
    accounts: NamedDependency[StaffAccounts],
) -> Redirect:
    ended = await accounts.end_session(visit.identity, session_id, visit.request_id)
    await flash(
        request,
        visit,
        "Session ended." if ended else "That session had already ended.",
        "success" if ended else "info",
    )
    return see_other("/account")


def _may_enrol(visit: Visit, target: str) -> None:
    """Setting up a second factor replaces the old one: confirm the password first.

    A session that must enrol before doing anything else has just given its password.
    """
    if visit.info.state is SessionState.ACTIVE and not visit.info.recently_authenticated:
        raise PageRedirect(with_next("/reauth", target))


def _seal_pending(request: Request[Any, Any, Any], visit: Visit, secret: str) -> str:
    return services_of(request).gateway.seal_secret(
        PENDING_LABEL, str(visit.identity.user_id), f"{int(time.time())}:{secret}"
    )


def _open_pending(request: Request[Any, Any, Any], visit: Visit, sealed: str) -> str | None:
    """The secret from a sealed field, if it is this user's and recent enough."""
    gateway = services_of(request).gateway
    try:
        issued, _, secret = gateway.open_secret(
            PENDING_LABEL, str(visit.identity.user_id), sealed
        ).partition(":")
        age = time.time() - int(issued)
    except (CiphertextError, ValueError):
        return None
    return secret if secret and 0 <= age <= PENDING_LIFETIME_SECONDS else None


async def enrolment_page(
    request: Request[Any, Any, Any],
    visit: Visit,
    secret: str,
    sealed: str,
    *,
    error: str = "",
    status: int = 200,
) -> Template:
    uri = second_factor.provisioning_uri(secret, visit.identity.email)
    return await render(
        request,
        "account/security.html",
        visit=visit,
        status=status,
        section="account",
        title="Two-factor authentication",
        mode="enrol",
        qr=second_factor.qr_svg_data_uri(uri),
        secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        sealed=sealed,
        error=error,
        required=visit.info.state is SessionState.ENROLMENT_REQUIRED,
    )


@get(
    "/account/security",
    include_in_schema=False,
    dependencies=VISIT,
    opt=page_access(ENROLMENT_STATES),
)
async def security(
    request: Request[Any, Any, Any],
    visit: NamedDependency[Visit],
    *,
    accounts: NamedDependency[StaffAccounts],
) -> Template:
    replacing = request.query_params.get("replace") == "1"
    if visit.identity.has_totp and not replacing:
        return await render(
            request,
            "account/security.html",
            visit=visit,
            section="account",
            title="Two-factor authentication",
            mode="status",
            recovery_left=await accounts.remaining_recovery_codes(visit.identity.user_id),
        )
    _may_enrol(visit, "/account/security?replace=1" if replacing else "/account/security")
    secret = accounts.new_totp_secret()
    return await enrolment_page(request, visit, secret, _seal_pending(request, visit, secret))


@post(
    "/account/security",
    include_in_schema=False,
    dependencies=VISIT,
    opt=page_access(ENROLMENT_STATES),
)
async def enrol(
    request: Request[Any, Any, Any],
    visit: NamedDependency[Visit],
    *,
    accounts: NamedDependency[StaffAccounts],
) -> Template:
    _may_enrol(visit, "/account/security?replace=1")
    form = await request.form()
    sealed = _field(form, "pending", 4096)
    secret = _open_pending(request, visit, sealed)
    if secret is None:
        fresh = accounts.new_totp_secret()
        return await enrolment_page(
            request,
            visit,
            fresh,
            _seal_pending(request, visit, fresh),
            error="This set-up has expired. Scan the new code below and try again.",
            status=HTTP_400_BAD_REQUEST,
        )
    result = await accounts.enrol_totp(
        visit.info,
        visit.token,
        secret,
        _field(form, "code", 32),
        visit.request_id,
        user_agent=request.headers.get("user-agent", ""),
    )
    if result is None:
        return await enrolment_page(
            request,
            visit,
            secret,
            sealed,
            error="That code did not match. Check the time on your device and enter the "
            "current 6-digit code.",
            status=HTTP_400_BAD_REQUEST,
        )
    session, codes = result
    # The old session was replaced: show the codes once, with the new session's cookie.
    return await render(
        request,
        "account/security.html",
        cookies=[session_cookie(request, session)],
        section="account",
        title="Two-factor authentication",
        mode="codes",
        codes=codes,
        user=session.identity,
        nav=True,
    )
