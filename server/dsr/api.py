"""Data-subject requests over REST: open, list, read, move along the workflow, and
download the person's export.

Thin routes over :class:`DataSubjectRequests` (which checks every move and audits it) for
the roles the policy grants ``dsr manage``; refusals are audited 403s. The person a
request is about is found through the gateway (a contact the caller can see, read under
the ``compliance`` purpose without any field). Erasure is irreversible, so it is carried
out from the web admin's confirmation page only, never by one API call. The export is the
person's whole data: a staff session must have entered its password in the last few
minutes, a token must have been given the ``compliance`` purpose.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from server.auth.service import StaffAccounts
from server.dsr.export import InvalidSubject, NoRecords, SubjectExports
from server.dsr.requests import (
    PURPOSE,
    DataRequest,
    DataSubjectRequests,
    RequestError,
    RequestNotFound,
)
from server.gateway import Actor, Conflict, Forbidden, Gateway, InvalidInput, NotFound
from server.web import (
    SESSION_COOKIE,
    policy_guard,
    provide_actor,
    provide_identity,
    require_right,
    services_of,
)

RESOURCE = "dsr"
Reason = Annotated[str, msgspec.Meta(max_length=64)]


class HistoryOut(msgspec.Struct):
    from_state: str
    to_state: str
    actor: str  # "user:7", "token:<id>", "subject", "system:..."
    at: dt.datetime
    reason: str


class RequestOut(msgspec.Struct):
    id: str
    subject_id: str
    contact_id: str | None
    kind: str
    state: str
    channel: str
    received_at: dt.datetime
    due_at: dt.datetime
    deadline: dt.datetime
    overdue: bool
    verification: str
    next_states: list[str]
    history: list[HistoryOut]


class RequestOpen(msgspec.Struct, forbid_unknown_fields=True):
    """A request received by phone, letter or e-mail, logged on the person's behalf."""

    contact_id: UUID
    kind: Literal["access", "portability", "rectification", "erasure", "restriction", "objection"]
    channel: Literal["phone", "letter", "email", "portal"]
    verification: Literal["email_link", "phone_callback", "id_document"]


class RequestMove(msgspec.Struct, forbid_unknown_fields=True):
    """The next state; a rejection needs a reason code, a verification how it was done."""

    to_state: Literal["verified", "in_review", "approved", "rejected", "fulfilled", "closed"]
    reason: Reason = ""
    verification: Reason = ""


def _out(item: DataRequest) -> RequestOut:
    return RequestOut(
        item.id,
        item.subject_id,
        item.contact_id,
        item.kind,
        item.state,
        item.channel,
        item.received_at,
        item.due_at,
        item.deadline,
        item.overdue,
        item.verification,
        list(item.next_states),
        [HistoryOut(h.from_state, h.to_state, h.actor_id, h.at, h.reason) for h in item.history],
    )


def _refused(exc: RequestError) -> NotFound | Conflict | InvalidInput:
    if isinstance(exc, RequestNotFound):
        return NotFound("no such request")
    if exc.code in {"transition_not_allowed", "not_verified", "already_answered"}:
        return Conflict(exc.message)
    return InvalidInput(exc.message, problems={exc.code: exc.message})


async def _get(request: Request[Any, Any, Any], request_id: FromPath[UUID]) -> DataRequest:
    try:
        return await services_of(request).requests.get(str(request_id))
    except RequestError as exc:
        raise _refused(exc) from None


class RequestRoutes(Controller):
    path = "/api/v1/requests"
    tags = ["data-subject requests"]
    guards = [policy_guard(RESOURCE, "manage")]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get("/")
    async def queue(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        show: FromQuery[Literal["open", "overdue", "all"]] = "open",
        *,
        requests: NamedDependency[DataSubjectRequests],
    ) -> list[RequestOut]:
        """The compliance queue by effective deadline, soonest first; overdue ones flagged."""
        await require_right(request, actor, RESOURCE, "manage", purpose=PURPOSE)
        items = await requests.queue(overdue_only=show == "overdue", open_only=show == "open")
        return [_out(item) for item in items]

    @post("/", status_code=HTTP_201_CREATED)
    async def open_request(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        data: JSONBody[RequestOpen],
        *,
        gateway: NamedDependency[Gateway],
        requests: NamedDependency[DataSubjectRequests],
    ) -> RequestOut:
        """Log a request about the person of ``contact_id``; its deadline runs from now."""
        await require_right(
            request, actor, RESOURCE, "manage", purpose=PURPOSE, audit_allowed=False
        )
        person = await gateway.read(
            actor, "contact", str(data.contact_id), purpose=PURPOSE, fields=()
        )
        change = await requests.log(
            person.subject_id,
            data.kind,
            data.channel,
            verification=data.verification,
            by=actor.id,
            by_role=actor.role,
            contact_id=person.id,
            request_id=actor.request_id,
        )
        return _out(await requests.get(change.request.id))

    @get("/{request_id:uuid}")
    async def read(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        request_id: FromPath[UUID],
    ) -> RequestOut:
        """One request with its whole history."""
        await require_right(request, actor, RESOURCE, "manage", purpose=PURPOSE)
        return _out(await _get(request, request_id))

    @post("/{request_id:uuid}/transition", status_code=HTTP_200_OK)
    async def transition(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        request_id: FromPath[UUID],
        data: JSONBody[RequestMove],
        *,
        requests: NamedDependency[DataSubjectRequests],
    ) -> RequestOut:
        """Move the request to its next state (409 if the workflow does not allow it)."""
        await require_right(
            request, actor, RESOURCE, "manage", purpose=PURPOSE, audit_allowed=False
        )
        item = await _get(request, request_id)
        if item.kind == "erasure" and data.to_state == "fulfilled":
            raise Conflict(
                "erasure cannot be undone: it is carried out from the web admin's "
                "confirmation page, not by an API call"
            )
        try:
            await requests.transition(
                item.id,
                data.to_state,
                by=actor.id,
                by_role=actor.role,
                reason=data.reason,
                verification=data.verification,
                audit_request_id=actor.request_id,
            )
        except RequestError as exc:
            raise _refused(exc) from None
        return _out(await _get(request, request_id))

    @post(
        "/{request_id:uuid}/export",
        status_code=HTTP_200_OK,
        # Not the handler's media_type: that would label its error answers as ZIPs too.
        responses={
            HTTP_200_OK: ResponseSpec(
                data_container=bytes,
                media_type="application/zip",
                description="The signed export ZIP (JSON, CSV per type, HTML, manifest)",
                generate_examples=False,
            )
        },
    )
    async def export(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        request_id: FromPath[UUID],
        *,
        accounts: NamedDependency[StaffAccounts],
        exports: NamedDependency[SubjectExports],
    ) -> Response[bytes]:
        """The person's export as a signed ZIP (audited as ``dsr.export``). A staff
        session must have entered its password within the last few minutes (web admin:
        any confirmation page); a token needs the ``compliance`` purpose."""
        await require_right(
            request, actor, RESOURCE, "manage", purpose=PURPOSE, audit_allowed=False
        )
        if actor.limits is None:
            session = await accounts.session_info(request.cookies.get(SESSION_COOKIE, ""))
            if session is None or not session.recently_authenticated:
                raise Forbidden(
                    "downloading a person's data needs a recent sign-in: enter your password "
                    "again in the web admin (or use an API token), then retry"
                )
        item = await _get(request, request_id)
        try:
            bundle = await exports.build(
                item.subject_id,
                requested_by=actor.id,
                requested_role=actor.role,
            )
        except (NoRecords, InvalidSubject):
            raise NotFound("no records are held about this person") from None
        filename = f"export-{item.id}.zip"
        return Response(
            bundle.zip_bytes,
            media_type="application/zip",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )
