"""``/portal/cases``: a signed-in customer's own cases (issue 21, item 5).

The same one-time-link session as the rest of the portal (its cookie, its CSRF, its
pages). A person sees the cases about their own contact record: the title, kind, state,
reference and the public conversation - their e-mails and portal messages ("You") and
staff replies ("Support team"; never a staff name). Internal notes are never shown. A
case of anyone else answers 404, like one that does not exist. Opening a case or writing
on one counts against ``PORTAL_POSTS_PER_HOUR`` (429 when spent).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from server.datamap import CASE, CASE_KINDS
from server.gateway import GatewayError
from server.portal.routes import PORTAL_COOKIE
from server.portal.service import PortalError, PortalIdentity
from server.servicedesk.service import (
    CONVERSATION_LIMIT,
    MESSAGE_MAX,
    TITLE_MAX,
    DeskError,
    ServiceDesk,
)
from server.web import services_of

STATE_WORDS = {
    "open": "We are working on it",
    "pending": "Waiting for your answer",
    "resolved": "Resolved",
    "closed": "Closed",
}
KIND_WORDS = {
    "service_request": "A question or a request",
    "complaint": "A complaint",
    "product_return": "Returning a product",
    "information_request": "Asking for information",
}
AUTHOR_WORDS = {"email": "You (by e-mail)", "portal": "You", "reply": "Support team"}
DESCRIPTION_MAX = CASE.field("description").max_length


def _page(
    request: Request[Any, Any, Any], template: str, status: int = 200, **context: Any
) -> Template:
    settings = services_of(request).settings
    return Template(
        template_name=f"portal/{template}",
        context={
            "controller": settings.controller_name,
            "controller_contact": settings.controller_contact,
            "signed_in": True,
            "title": "",
            "state_words": STATE_WORDS,
            "kind_words": KIND_WORDS,
            "author_words": AUTHOR_WORDS,
            **context,
        },
        status_code=status,
    )


def _see_other(location: str) -> Redirect:
    return Redirect(location, status_code=HTTP_303_SEE_OTHER)


async def _identity(request: Request[Any, Any, Any]) -> PortalIdentity | None:
    return await services_of(request).portal.session(request.cookies.get(PORTAL_COOKIE, ""))


async def _own_contact(request: Request[Any, Any, Any], identity: PortalIdentity) -> str | None:
    """The person's own contact record id (cases are about contacts), or None."""
    try:
        own = await services_of(request).portal.own_record(identity)
    except PortalError:
        return None
    return own.record_id if own.record_type.resource == "contact" else None


async def _form(request: Request[Any, Any, Any], limits: dict[str, int]) -> dict[str, str]:
    """The named fields, each cut at its limit plus one (so "too long" can be said)."""
    form = await request.form()
    return {
        name: value[: limit + 1]
        for name, limit in limits.items()
        if isinstance(value := form.get(name, ""), str)
    }


class PortalCasePages(Controller):
    path = "/portal/cases"
    include_in_schema = False

    @get("/")
    async def my_cases(self, request: Request[Any, Any, Any]) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        return await self._list(request, identity)

    async def _list(
        self,
        request: Request[Any, Any, Any],
        identity: PortalIdentity,
        *,
        error: str = "",
        typed: dict[str, str] | None = None,
        status: int = 200,
    ) -> Template:
        contact_id = await _own_contact(request, identity)
        cases = []
        if contact_id is not None:
            found = await services_of(request).service_desk.cases_of_contact(contact_id)
            cases = sorted(found, key=lambda pair: pair[0].created_at, reverse=True)
        return _page(
            request,
            "cases.html",
            status,
            title="My cases",
            cases=cases,
            can_open=contact_id is not None,
            kinds=CASE_KINDS,
            error=error,
            typed=typed or {},
            title_max=TITLE_MAX,
            description_max=DESCRIPTION_MAX,
        )

    @post("/", status_code=200)
    async def open_case(
        self, request: Request[Any, Any, Any], *, service_desk: NamedDependency[ServiceDesk]
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        form = await _form(
            request, {"kind": 32, "title": TITLE_MAX, "description": DESCRIPTION_MAX}
        )
        contact_id = await _own_contact(request, identity)
        if contact_id is None:
            return await self._list(
                request, identity, error="Only customers can open cases here.", status=403
            )
        title, description = form.get("title", "").strip(), form.get("description", "").strip()
        problem = ""
        if form.get("kind") not in CASE_KINDS:
            problem = "Choose what your case is about."
        elif not title:
            problem = "Give your case a short title."
        elif len(title) > TITLE_MAX:
            problem = f"The title is longer than {TITLE_MAX} characters."
        elif len(description) > DESCRIPTION_MAX:
            problem = f"The description is longer than {DESCRIPTION_MAX} characters."
        if problem:
            return await self._list(request, identity, error=problem, typed=form, status=400)
        desk = service_desk
        if not await desk.portal_allowance(identity.subject_id):
            return await self._list(
                request,
                identity,
                error="You have written a lot in the last hour. Please try again later.",
                typed=form,
                status=429,
            )
        try:
            case, _ = await desk.open_case(
                contact_id,
                title=title,
                channel="portal",
                kind=form["kind"],
                description=description or None,
            )
        except (DeskError, GatewayError):
            return await self._list(
                request, identity, error="Your case could not be opened.", typed=form, status=400
            )
        await desk.flag_if_request(case, None, f"{title}\n{description}")
        return _see_other(f"/portal/cases/{case.id}")

    @get("/{case_id:str}")
    async def case_page(
        self, request: Request[Any, Any, Any], case_id: FromPath[str]
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        return await self._case(request, identity, case_id)

    async def _case(
        self,
        request: Request[Any, Any, Any],
        identity: PortalIdentity,
        case_id: str,
        *,
        error: str = "",
        typed: str = "",
        status: int = 200,
    ) -> Template:
        desk = services_of(request).service_desk
        contact_id = await _own_contact(request, identity)
        try:
            if contact_id is None:
                raise DeskError("not_found", "No such case.", 404)
            case, state = await desk.case_of_contact(contact_id, case_id)
        except DeskError:
            return _page(request, "case_missing.html", 404, title="Case not found")
        messages = await desk.conversation(desk.actor, case.id, public_only=True)
        return _page(
            request,
            "case.html",
            status,
            title=str(case.values.get("title") or "Your case"),
            case=case,
            desk=state,
            messages=messages,
            limit=CONVERSATION_LIMIT,
            error=error,
            typed=typed,
            message_max=MESSAGE_MAX,
        )

    @post("/{case_id:str}/reply", status_code=200)
    async def reply(
        self,
        request: Request[Any, Any, Any],
        case_id: FromPath[str],
        *,
        service_desk: NamedDependency[ServiceDesk],
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        desk = service_desk
        contact_id = await _own_contact(request, identity)
        try:
            if contact_id is None:
                raise DeskError("not_found", "No such case.", 404)
            case, _ = await desk.case_of_contact(contact_id, case_id)
        except DeskError:
            return _page(request, "case_missing.html", 404, title="Case not found")
        body = (await _form(request, {"body": MESSAGE_MAX})).get("body", "").strip()
        if not body:
            return await self._case(
                request, identity, case.id, error="Write a message first.", status=400
            )
        if len(body) > MESSAGE_MAX:
            return await self._case(
                request,
                identity,
                case.id,
                error=f"The message is longer than {MESSAGE_MAX} characters.",
                typed=body[:MESSAGE_MAX],
                status=400,
            )
        if not await desk.portal_allowance(identity.subject_id):
            return await self._case(
                request,
                identity,
                case.id,
                error="You have written a lot in the last hour. Please try again later.",
                typed=body,
                status=429,
            )
        await desk.customer_wrote(case.id, body, "portal")
        return _see_other(f"/portal/cases/{case.id}#latest")
