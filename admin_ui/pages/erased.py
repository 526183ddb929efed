"""How an erased record looks: a tombstone, never a nameless living record.

Erasure keeps a record's id and business columns (so totals stay right) and clears
everything personal. Shown with the usual record page, that read as a person with no
name, "Not set" everywhere, no consent, and Edit / Delete / New deal buttons that could
only fail. Instead the page says it was erased, when, and under which request, and
offers nothing to do; an edit is refused with 409 and the same explanation.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.response import Template
from litestar.status_codes import HTTP_409_CONFLICT

from admin_ui.pages.requests import RequestPages
from admin_ui.rendering import error_page, render
from admin_ui.session import Visit, role_may_open
from server.datamap import RecordType
from server.dsr.erasure import ErasureResult
from server.gateway import Record
from server.web import services_of


async def erasure_of(request: Request[Any, Any, Any], record: Record) -> ErasureResult | None:
    """The erasure job of the record's person (ids and dates only), if there was one: a
    contact confirmed as a duplicate is erased without a request."""
    return await services_of(request).erasure.job_for_subject(record.subject_id)


def erased_sentence(rt: RecordType, job: ErasureResult | None) -> str:
    noun = rt.label.lower()
    if job is None:
        return f"This {noun} was erased. Its personal data is gone for good."
    when = f" on {job.finished_at:%Y-%m-%d}" if job.finished_at else ""
    under = f" under request {job.request_id[:8]}" if job.request_id else ""
    return f"This {noun} was erased{when}{under}. Its personal data is gone for good."


async def erased_page(
    request: Request[Any, Any, Any],
    visit: Visit,
    rt: RecordType,
    record: Record,
    *,
    base_path: str,
    plural: str,
) -> Template:
    job = await erasure_of(request, record)
    return await render(
        request,
        "records/erased.html",
        visit=visit,
        section=rt.resource,
        title=f"Erased {rt.label.lower()}",
        heading=f"Erased {rt.label.lower()}",
        sentence=erased_sentence(rt, job),
        job=job,
        record=record,
        base_path=base_path,
        plural=plural,
        # The request link only for whoever the request pages open for.
        is_compliance=role_may_open(
            RequestPages.opt, visit.identity.role, services_of(request).policy
        ),
    )


async def erased_refusal(
    request: Request[Any, Any, Any], rt: RecordType, record: Record
) -> Response[Any]:
    """409 for an edit of an erased record, saying why instead of failing on save."""
    job = await erasure_of(request, record)
    return error_page(
        request,
        HTTP_409_CONFLICT,
        f"This {rt.label.lower()} cannot be changed",
        erased_sentence(rt, job) + " An erased record cannot be edited.",
    )
