"""Staff accounts, administered by admins. Everyone else gets a 404 for these pages.

Changes to accounts (create, enable/disable, role, force reset) need a recent password
confirmation; the account service audits every one of them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.rendering import flash, render, see_other
from admin_ui.rights import STAFF_RIGHT
from admin_ui.session import Visit, page_access, provide_visit, require_recent_login
from policy.enforcer import NEW_STAFF_ROLE, ROLES
from server.auth.service import USERS_PAGE_SIZE, AccountError, StaffAccounts, StaffIdentity

MAX_QUERY = 100


def _field(form: Any, name: str, limit: int = 254) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def reset_url(request: Request[Any, Any, Any], token: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/reset/{token}"


class UserPages(Controller):
    path = "/admin/users"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=STAFF_RIGHT)

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Template:
        params = request.query_params
        query = params.get("q", "").strip()[:MAX_QUERY]
        role = params.get("role", "")
        role = role if role in ROLES else ""
        try:
            page = max(1, min(int(params.get("page", "1")), 1_000_000))
        except ValueError:
            page = 1
        result = await accounts.list_users(query=query, role=role, page=page)
        pages = max(1, (result.total + USERS_PAGE_SIZE - 1) // USERS_PAGE_SIZE)
        kept = {k: v for k, v in {"q": query, "role": role}.items() if v}

        def link(number: int) -> str:
            return "/admin/users?" + urlencode({**kept, "page": number})

        return await render(
            request,
            "users/list.html",
            visit=visit,
            section="users",
            title="Staff accounts",
            users=result.items,
            active=result.active,
            total=result.total,
            page=page,
            pages=pages,
            query=query,
            role=role,
            roles=ROLES,
            prev_link=link(page - 1) if page > 1 else "",
            next_link=link(page + 1) if page < pages else "",
        )

    @get("/new")
    async def new_form(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await render(
            request,
            "users/new.html",
            visit=visit,
            section="users",
            title="New staff account",
            roles=ROLES,
            values={"team": "default", "role": NEW_STAFF_ROLE},
            error="",
        )

    @post("/new")
    async def create(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Template:
        require_recent_login(visit, "/admin/users/new")
        form = await request.form()
        values = {
            "email": _field(form, "email"),
            "display_name": _field(form, "display_name", 120),
            "role": _field(form, "role", 32),
            "team": _field(form, "team", 64),
        }
        try:
            user, _ = await accounts.create_user(
                values["email"],
                values["role"],
                team=values["team"],
                display_name=values["display_name"],
                actor_id=visit.identity.actor_id,
                actor_role=visit.identity.role,
                request_id=visit.request_id,
            )
        except AccountError as exc:
            return await render(
                request,
                "users/new.html",
                visit=visit,
                status=HTTP_400_BAD_REQUEST,
                section="users",
                title="New staff account",
                roles=ROLES,
                values=values,
                error=str(exc)[:1].upper() + str(exc)[1:] + ".",
            )
        # Nobody learns the generated password: the new user chooses one through a link.
        token = await accounts.issue_reset_link(
            user.user_id, by=visit.identity, request_id=visit.request_id
        )
        return await link_page(request, visit, user, reset_url(request, token), created=True)

    @get("/{user_id:int}")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        user_id: FromPath[int],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Template:
        found = await accounts.get_user(user_id)
        if found is None:
            raise NotFoundException()
        user, is_active = found
        return await render(
            request,
            "users/detail.html",
            visit=visit,
            section="users",
            title="Staff account",
            account=user,
            is_active=is_active,
            is_self=user.user_id == visit.identity.user_id,
            roles=ROLES,
            recent=visit.info.recently_authenticated,
        )

    @post("/{user_id:int}/active")
    async def set_active(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        user_id: FromPath[int],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Redirect:
        require_recent_login(visit, f"/admin/users/{user_id}")
        active = (await request.form()).get("active") == "1"
        try:
            await accounts.set_active(
                user_id, active, by=visit.identity, request_id=visit.request_id
            )
        except AccountError as exc:
            return await _refused(request, visit, user_id, exc)
        message = "Account enabled." if active else "Account disabled and signed out everywhere."
        await flash(request, visit, message)
        return see_other(f"/admin/users/{user_id}")

    @post("/{user_id:int}/role")
    async def change_role(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        user_id: FromPath[int],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Redirect:
        require_recent_login(visit, f"/admin/users/{user_id}")
        form = await request.form()
        team = _field(form, "team", 65)
        try:
            await accounts.change_role(
                user_id,
                _field(form, "role", 32),
                by=visit.identity,
                team=team or None,
                request_id=visit.request_id,
            )
        except AccountError as exc:
            return await _refused(request, visit, user_id, exc)
        await flash(request, visit, "Role and team saved. They apply from the user's next request.")
        return see_other(f"/admin/users/{user_id}")

    @post("/{user_id:int}/reset")
    async def force_reset(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        user_id: FromPath[int],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> Template | Redirect:
        require_recent_login(visit, f"/admin/users/{user_id}")
        found = await accounts.get_user(user_id)
        if found is None:
            raise NotFoundException()
        try:
            token = await accounts.issue_reset_link(
                user_id, by=visit.identity, request_id=visit.request_id
            )
        except AccountError as exc:
            return await _refused(request, visit, user_id, exc)
        return await link_page(request, visit, found[0], reset_url(request, token), created=False)


async def link_page(
    request: Request[Any, Any, Any],
    visit: Visit,
    user: StaffIdentity,
    link: str,
    *,
    created: bool,
) -> Template:
    """The one-time link, shown once (the page is not cached and the link is not stored)."""
    return await render(
        request,
        "users/link.html",
        visit=visit,
        section="users",
        title="Account created" if created else "Password reset",
        account=user,
        link=link,
        created=created,
    )


async def _refused(
    request: Request[Any, Any, Any], visit: Visit, user_id: int, exc: AccountError
) -> Redirect:
    if str(exc) == "no such staff user":
        raise NotFoundException()
    await flash(request, visit, str(exc)[:1].upper() + str(exc)[1:] + ".", "error")
    return see_other(f"/admin/users/{user_id}")
