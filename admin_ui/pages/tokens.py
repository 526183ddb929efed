"""API tokens in the admin: personal tokens under My account (``/account/tokens``) and
service accounts under Settings (``/admin/service-accounts``, for the roles the policy
lets manage them).

One page shape for both. Making a token needs a recent password confirmation; its secret
is shown in the answer to that POST only (never flashed: flashes are kept in the session
row) and the page is not cached. Revoking is immediate (:mod:`server.auth.tokens`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_201_CREATED, HTTP_400_BAD_REQUEST

from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit, require_recent_login
from server.auth.tokens import DEFAULT_DAYS, MAX_DAYS, NewToken, TokenError, TokenKind
from server.web import services_of

PAGES = {TokenKind.PERSONAL: "/account/tokens", TokenKind.SERVICE: "/admin/service-accounts"}
TITLES = {TokenKind.PERSONAL: "My API tokens", TokenKind.SERVICE: "Service accounts"}
NO_STORE = {"Cache-Control": "no-store"}


def _kind(request: Request[Any, Any, Any], visit: Visit, kind: TokenKind) -> TokenKind:
    """The kind, if this person may manage it (404 otherwise, like any page they may not see)."""
    if not services_of(request).tokens.may_manage(visit.identity, kind):
        raise NotFoundException()
    return kind


def _text(form: Mapping[str, Any], name: str, limit: int = 200) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


async def tokens_page(
    request: Request[Any, Any, Any],
    visit: Visit,
    kind: TokenKind,
    *,
    values: Mapping[str, Any] | None = None,
    problem: str = "",
    made: NewToken | None = None,
) -> Template:
    tokens = services_of(request).tokens
    roles = tokens.roles_for(visit.identity)
    chosen_role = (values or {}).get("role") or visit.identity.role
    return await render(
        request,
        "account/tokens.html",
        visit=visit,
        status=HTTP_400_BAD_REQUEST if problem else (HTTP_201_CREATED if made else 200),
        headers=NO_STORE,
        section="account" if kind is TokenKind.PERSONAL else "settings",
        title=TITLES[kind],
        kind=kind.value,
        base=PAGES[kind],
        items=await tokens.list(visit.identity, kind),
        roles=roles,
        purposes={role: tokens.purposes_for(role) for role in roles},
        chosen_role=chosen_role if chosen_role in roles else roles[0],
        values=values or {"days": DEFAULT_DAYS},
        max_days=MAX_DAYS,
        problem=problem,
        made=made,
        recent=visit.info.recently_authenticated,
    )


class TokenPages(Controller):
    path = "/"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/account/tokens")
    async def personal(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """My personal tokens: what each may do, when it was last used, revoke."""
        return await tokens_page(request, visit, _kind(request, visit, TokenKind.PERSONAL))

    @get("/admin/service-accounts")
    async def service(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Service accounts: tokens for websites and other systems."""
        return await tokens_page(request, visit, _kind(request, visit, TokenKind.SERVICE))

    @post("/account/tokens")
    async def create_personal(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await self._create(request, visit, TokenKind.PERSONAL)

    @post("/admin/service-accounts")
    async def create_service(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await self._create(request, visit, TokenKind.SERVICE)

    async def _create(
        self, request: Request[Any, Any, Any], visit: Visit, kind: TokenKind
    ) -> Template:
        tokens = services_of(request).tokens
        _kind(request, visit, kind)
        require_recent_login(visit, PAGES[kind])
        form = await request.form()
        fields_text = _text(form, "fields", 2000)
        values: dict[str, Any] = {
            "name": _text(form, "name", 81),
            "role": _text(form, "role", 32),
            "purposes": [p for p in form.getall("purposes", []) if isinstance(p, str)][:20],
            "fields": fields_text,
            "days": _text(form, "days", 4),
        }
        fields = [f for f in fields_text.replace(",", " ").split() if f] or None
        try:
            days = int(values["days"])
        except ValueError:
            return await tokens_page(
                request, visit, kind, values=values, problem=f"Expiry must be 1 to {MAX_DAYS} days."
            )
        try:
            made = await tokens.create(
                visit.identity,
                kind,
                name=values["name"],
                role=values["role"],
                purposes=values["purposes"],
                fields=fields,
                days=days,
                request_id=visit.request_id,
            )
        except TokenError as exc:
            message = str(exc)
            return await tokens_page(
                request, visit, kind, values=values, problem=message[:1].upper() + message[1:] + "."
            )
        return await tokens_page(request, visit, kind, made=made)

    @post("/account/tokens/{token_id:str}/revoke")
    async def revoke_personal(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        token_id: FromPath[str],
    ) -> Redirect:
        return await self._revoke(request, visit, TokenKind.PERSONAL, token_id)

    @post("/admin/service-accounts/{token_id:str}/revoke")
    async def revoke_service(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        token_id: FromPath[str],
    ) -> Redirect:
        return await self._revoke(request, visit, TokenKind.SERVICE, token_id)

    async def _revoke(
        self, request: Request[Any, Any, Any], visit: Visit, kind: TokenKind, token_id: str
    ) -> Redirect:
        _kind(request, visit, kind)
        try:
            info = await services_of(request).tokens.revoke(
                visit.identity, token_id[:64], visit.request_id
            )
        except TokenError:
            raise NotFoundException() from None
        if info.kind is not kind:
            raise NotFoundException()
        await flash(request, visit, f"Token “{info.name}” revoked: it no longer works.", "success")
        return see_other(PAGES[kind])
