"""``/api/v1/staff``: staff accounts over REST, for the roles the policy lets manage them
(``staff manage``: admins). Thin routes over :class:`server.auth.service.StaffAccounts`,
which audits every change. As on the admin's Users pages, a change needs a recent sign-in
(the session's password was confirmed within the re-authentication window): 403 says so.
A new account gets no password: the answer carries a single-use link (valid an hour) for
the person to choose one, shown once."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from policy.enforcer import ROLES
from server.auth.service import USERS_PAGE_SIZE, AccountError, StaffAccounts, StaffIdentity
from server.gateway import InvalidInput
from server.settings import Settings
from server.web import (
    SESSION_COOKIE,
    PageNumber,
    PageSize,
    policy_guard,
    provide_identity,
    request_id_of,
    services_of,
)

NO_ACCESS = "your role may not manage staff accounts"
NOT_RECENT = "confirm your password first: sign in again, then retry within a few minutes"
MAX_QUERY = 100
MAX_ID = 2**31 - 1


class StaffAccountOut(msgspec.Struct):
    id: int
    email: str
    display_name: str
    role: str
    team: str
    active: bool
    second_factor: bool


class StaffAccountList(msgspec.Struct):
    items: list[StaffAccountOut]
    total: int
    page: int
    page_size: int


class StaffAccountIn(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    role: str
    team: str = "default"
    display_name: str = ""


class StaffAccountCreated(msgspec.Struct):
    account: StaffAccountOut
    password_link: str  # single use, valid an hour: the person chooses their password there


class StaffAccountChange(msgspec.Struct, forbid_unknown_fields=True):
    role: str | None = None
    team: str | None = None
    active: bool | None = None


def _out(identity: StaffIdentity, active: bool) -> StaffAccountOut:
    return StaffAccountOut(
        identity.user_id,
        identity.email,
        identity.display_name,
        identity.role,
        identity.team,
        active,
        identity.has_totp,
    )


async def _recent(request: Request[Any, Any, Any]) -> None:
    info = await services_of(request).accounts.session_info(request.cookies.get(SESSION_COOKIE, ""))
    if info is None or not info.recently_authenticated:
        raise PermissionDeniedException(NOT_RECENT)


async def _account(request: Request[Any, Any, Any], user_id: int) -> StaffAccountOut:
    if not 1 <= user_id <= MAX_ID:  # beyond the id column: no such account
        raise NotFoundException("staff account not found")
    found = await services_of(request).accounts.get_user(user_id)
    if found is None:
        raise NotFoundException("staff account not found")
    return _out(*found)


class StaffRoutes(Controller):
    path = "/api/v1/staff"
    tags = ["staff"]
    guards = [policy_guard("staff", "manage", NO_ACCESS)]
    dependencies = {"identity": Provide(provide_identity)}

    @get("/", description="Staff accounts, by e-mail or name (`q`) and `role`, a page at a time.")
    async def list_staff(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        q: Annotated[str, QueryParameter(description="part of an e-mail or name")] = "",
        role: Annotated[str, QueryParameter(description="only this role")] = "",
        page: PageNumber = 1,
        page_size: PageSize = USERS_PAGE_SIZE,
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> StaffAccountList:
        result = await accounts.list_users(
            query=q[:MAX_QUERY], role=role if role in ROLES else "", page=page, page_size=page_size
        )
        return StaffAccountList(
            [_out(i, result.active.get(i.user_id, False)) for i in result.items],
            result.total,
            result.page,
            page_size,
        )

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        description=(
            "Create a staff account (`email`, `role`: " + ", ".join(ROLES) + ", `team`, "
            "`display_name`). The answer's `password_link` lets the person choose a password; "
            "it is shown once."
        ),
    )
    async def create_staff(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        data: JSONBody[StaffAccountIn],
        *,
        accounts: NamedDependency[StaffAccounts],
        settings: NamedDependency[Settings],
    ) -> StaffAccountCreated:
        await _recent(request)
        try:
            user, _ = await accounts.create_user(
                data.email,
                data.role,
                team=data.team,
                display_name=data.display_name,
                actor_id=identity.actor_id,
                actor_role=identity.role,
                request_id=request_id_of(request),
            )
            token = await accounts.issue_reset_link(
                user.user_id, by=identity, request_id=request_id_of(request)
            )
        except AccountError as exc:
            raise InvalidInput(str(exc)) from None
        link = f"{settings.public_url}/reset/{token}"
        return StaffAccountCreated(_out(user, True), link)

    @get("/{user_id:int}", description="One staff account.")
    async def get_staff(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        user_id: FromPath[int],
    ) -> StaffAccountOut:
        return await _account(request, user_id)

    @patch(
        "/{user_id:int}",
        description=(
            "Change a staff account's `role` (and `team`), or disable it (`active`: false "
            "ends its sessions at once) or enable it again. Not your own role or account."
        ),
    )
    async def change_staff(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        user_id: FromPath[int],
        data: JSONBody[StaffAccountChange],
        *,
        accounts: NamedDependency[StaffAccounts],
    ) -> StaffAccountOut:
        await _recent(request)
        await _account(request, user_id)
        try:
            if data.role is not None:
                await accounts.change_role(
                    user_id, data.role, by=identity, team=data.team,
                    request_id=request_id_of(request),
                )  # fmt: skip
            elif data.team is not None:
                raise AccountError("team: change it together with the role")
            if data.active is not None:
                await accounts.set_active(
                    user_id, data.active, by=identity, request_id=request_id_of(request)
                )
        except AccountError as exc:
            raise InvalidInput(str(exc)) from None
        return await _account(request, user_id)
