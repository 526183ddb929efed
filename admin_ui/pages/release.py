"""The release review of a staff-fulfilled access or portability request: what the
person's export withholds about other people, before it is released to them.

A compliance officer sees, per record type, in how many of the person's records other
people (and staff, who appear by pseudonym) were withheld and in which fields, and how
many records of other people mention the person and will be shown as excerpts - counts
and field names only, never a withheld value (``server.dsr.export.review_redactions``,
audited as ``dsr.export_review``). Releasing marks the request fulfilled, which e-mails
the person their download link; the bundle is built when they download it, by the same
rule. With ``CONSENTRY_EXPORT_REVIEW`` on (the default) the request page's "fulfil" step
for these requests leads here.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from admin_ui.rendering import flash, render, see_other
from admin_ui.rights import DSR_RIGHT
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import RECORD_TYPES
from server.dsr.export import NoRecords, SubjectExports, review_redactions
from server.dsr.requests import KINDS, DataRequest, DataSubjectRequests, RequestError
from server.dsr.third_parties import RedactionSummary
from server.web import services_of

BASE = "/compliance/requests"
RELEASED_KINDS = ("access", "portability")


class ReleasePages(Controller):
    path = BASE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=DSR_RIGHT)

    @get("/{request_id:str}/release")
    async def review(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        request_id: FromPath[str],
        *,
        exports: NamedDependency[SubjectExports],
    ) -> Template:
        """What the export withholds, counted; the form that releases it."""
        item = await _released_request(request, request_id)
        summary: RedactionSummary | None
        try:
            summary = await review_redactions(
                exports,
                item.subject_id,
                requested_by=visit.actor.id,
                requested_role=visit.identity.role,
            )
        except NoRecords:
            summary = None
        return await render(
            request,
            "dsr/release_review.html",
            visit=visit,
            section="compliance",
            title="Review the export before release",
            item=item,
            kind=KINDS[item.kind],
            summary=summary,
            mention_labels={
                resource: RECORD_TYPES[resource].label
                for resource in (summary.mention_types if summary else {})
            },
            ready="fulfilled" in item.next_states,
        )

    @post("/{request_id:str}/release")
    async def release(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        request_id: FromPath[str],
        *,
        requests: NamedDependency[DataSubjectRequests],
    ) -> Redirect:
        """Mark the request fulfilled: the person is e-mailed their download link."""
        item = await _released_request(request, request_id)
        try:
            change = await requests.transition(
                item.id,
                "fulfilled",
                by=visit.actor.id,
                by_role=visit.identity.role,
                audit_request_id=visit.request_id,
            )
        except RequestError as exc:
            await flash(request, visit, f"Not released: {exc.message}.", "error")
            return see_other(f"{BASE}/{item.id}")
        text = "Released: the request is fulfilled."
        if change.mail.sent:
            await flash(request, visit, text + " The person was told by e-mail.")
        else:
            await flash(
                request,
                visit,
                text + " The e-mail to the person could not be sent: tell them another way.",
                "error",
            )
        return see_other(f"{BASE}/{item.id}")


async def _released_request(request: Request[Any, Any, Any], request_id: str) -> DataRequest:
    try:
        item = await services_of(request).requests.get(request_id[:64])
    except RequestError:
        raise NotFoundException() from None
    if item.kind not in RELEASED_KINDS:
        raise NotFoundException()
    return item
