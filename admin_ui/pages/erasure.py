"""The erasure confirmation page: what fulfilling an erasure request will destroy, what it
keeps and why, and the typed request reference that makes the officer stop and read it.

Erasure cannot be undone, so the request page never erases on one click: its "fulfil"
step for an erasure leads here, and the POST is accepted only with the request's
reference typed in (checked on the server; the page works without JavaScript). The
preview counts records by type from ids alone (nothing personal is read or shown) and
names the legal holds that will keep something.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.rendering import render, see_other
from admin_ui.rights import DSR_RIGHT
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import RECORD_TYPES
from server.dsr.erasure import Erasure
from server.dsr.erasure_runs import ErasureRuns, is_quiet
from server.dsr.holds import Hold
from server.dsr.requests import DataRequest, RequestError
from server.web import services_of

BASE = "/compliance/requests"
REFRESH_SECONDS = 2
STEP_LABELS = (
    ("mentions", "Mentions in other people's notes replaced by [erased]"),
    ("records", "The person's records turned into tombstones"),
    ("keys", "The person's encryption key shredded"),
)
SHORT_REFERENCE = 8  # what the officer types: the first characters of the reference

# What survives an erasure on purpose, and why (shown on the page, in docs/dsr.md too).
KEPT = (
    (
        "Record ids and business facts (deal stage, amount and dates, case status, "
        "interaction channel and time)",
        "so pipeline totals and reports stay right; nothing in them names the person",
    ),
    (
        "This request and its history",
        "to show that the request was answered, and when (accountability, Art. 5(2))",
    ),
    (
        "Audit trail entries",
        "they hold ids, field names and counts, never values; the trail is append-only",
    ),
    (
        "An entry in the erasure register (pseudonymous id and time)",
        "so restoring an older backup erases the person again",
    ),
)


def short_reference(request_id: str) -> str:
    return request_id[:SHORT_REFERENCE].lower()


def reference_matches(typed: str, request_id: str) -> bool:
    """The short reference or the whole one, in any case, spaces around ignored."""
    given = typed.strip().lower()
    return bool(given) and given in {short_reference(request_id), request_id.lower()}


@dataclass(frozen=True)
class PreviewRow:
    label: str
    count: int
    holds: tuple[Hold, ...]  # the holds that keep these records (empty: destroyed)


def _label(resource: str) -> str:
    """The record type's plural, as the data map declares it (the counts are per type)."""
    return RECORD_TYPES[resource].plural


def preview_rows(counts: dict[str, int], holds: list[Hold]) -> list[PreviewRow]:
    rows = []
    for resource, count in sorted(counts.items(), key=lambda kv: _label(kv[0])):
        keeping = tuple(h for h in holds if h.scope in {"all", resource})
        rows.append(PreviewRow(_label(resource), count, keeping))
    return rows


class ErasurePages(Controller):
    path = BASE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=DSR_RIGHT)

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        item: DataRequest,
        *,
        problem: str = "",
    ) -> Template:
        services = services_of(request)
        counts = await services.gateway.subject_record_counts(item.subject_id)
        holds = await services.erasure.holds.active(item.subject_id)
        job = await services.erasure.job_for_request(item.id)
        return await render(
            request,
            "dsr/erase_confirm.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if problem else 200,
            section="compliance",
            title="Confirm erasure",
            item=item,
            rows=preview_rows(counts, holds),
            total=sum(counts.values()),
            holds=holds,
            kept=KEPT,
            job=job,
            short_reference=short_reference(item.id),
            ready=item.kind == "erasure" and "fulfilled" in item.next_states,
            problem=problem,
        )

    @get("/{request_id:str}/erase")
    async def confirm_page(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        request_id: FromPath[str],
    ) -> Template:
        """What the erasure will destroy and keep; the form that carries it out."""
        return await self._page(request, visit, await _erasure_request(request, request_id))

    @post("/{request_id:str}/erase")
    async def erase(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        request_id: FromPath[str],
        *,
        erasure_runs: NamedDependency[ErasureRuns | None],
    ) -> Template | Redirect:
        """Erase only when the reference typed matches this request's."""
        item = await _erasure_request(request, request_id)
        form = await request.form()
        typed = form.get("reference", "")
        if not isinstance(typed, str) or not reference_matches(typed[:64], item.id):
            return await self._page(
                request,
                visit,
                item,
                problem="Type the request reference shown above to confirm the erasure.",
            )
        runs = erasure_runs
        if runs is None:  # pragma: no cover - build_services always provides it
            raise NotFoundException()
        # Erasing can take a while (mentions in every note): it runs in the background and
        # this page's successor shows how far it got (server/dsr/erasure_runs.py).
        await runs.start(
            item, by=visit.actor.id, by_role=visit.identity.role, audit_request_id=visit.request_id
        )
        return see_other(f"{BASE}/{item.id}/erase/progress")

    @get("/{request_id:str}/erase/progress")
    async def progress(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        request_id: FromPath[str],
        *,
        erasure: NamedDependency[Erasure],
    ) -> Template:
        """How far the erasure of this request's person has got; refreshes while it runs."""
        item = await _erasure_request(request, request_id)
        job = await erasure.job_for_request(item.id)
        if job is None:
            job = await erasure.job_for_subject(item.subject_id)
        quiet = job is not None and is_quiet(job)
        done = job.steps if job is not None else ()
        return await render(
            request,
            "dsr/erase_progress.html",
            visit=visit,
            section="compliance",
            title="Erasure progress",
            item=item,
            job=job,
            steps=[(step, label, step in done) for step, label in STEP_LABELS],
            quiet=quiet,
            refreshing=job is None or (job.state == "running" and not quiet),
            short_reference=short_reference(item.id),
            refresh_seconds=REFRESH_SECONDS,
        )


async def _erasure_request(request: Request[Any, Any, Any], request_id: str) -> DataRequest:
    try:
        item = await services_of(request).requests.get(request_id[:64])
    except RequestError:
        raise NotFoundException() from None
    if item.kind != "erasure":
        raise NotFoundException()
    return item
