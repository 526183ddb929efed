"""Duplicate contacts: the list of likely pairs, the side-by-side review with the merge
form, and the merges awaiting confirmation (undo / confirm).

Everything is decided by the gateway (``Gateway.find_duplicates``, ``merge_contacts``,
``undo_merge``, ``confirm_merge``): policy, scope, one transaction, audit. These pages
only show what the user may read and offer the choices they may make. The pair list
reads just the two names of each pair on the page shown (audited reads), not everyone's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from admin_ui.pages.records import heading_of, shown_value
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import CONTACT, RECORD_TYPES
from server.gateway import Gateway, GatewayError, NotFound
from server.gateway import Record as GatewayRecord
from server.gateway.duplicates import MERGED, SURVIVOR, Merge

PAIRS_PER_PAGE = 20
REASONS = {"email": "Same e-mail", "phone": "Same phone", "name": "Similar name"}


@dataclass(frozen=True)
class PairRow:
    first: str
    second: str
    first_name: str
    second_name: str
    reasons: str


@dataclass(frozen=True)
class FieldRow:
    name: str
    label: str
    first: str
    second: str
    choosable: bool  # the values differ and the user may write the field
    chosen: str  # the contact id whose value is kept by default


def _require_merge_right(gateway: Gateway, visit: Visit) -> None:
    if gateway.permitted_fields(visit.actor, CONTACT.resource, "merge") is None:
        raise NotFound("page not found")


def _page(request: Request[Any, Any, Any]) -> int:
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        return 1


def _label(resource: str) -> str:
    rt = RECORD_TYPES.get(resource)
    return rt.label if rt else resource


class DuplicatePages(Controller):
    path = "/"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/contacts/duplicates")
    async def pairs(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template:
        _require_merge_right(gateway, visit)
        scan = await gateway.find_duplicates(visit.actor)
        page = _page(request)
        pages = max(1, (len(scan.pairs) + PAIRS_PER_PAGE - 1) // PAIRS_PER_PAGE)
        shown = scan.pairs[(page - 1) * PAIRS_PER_PAGE : page * PAIRS_PER_PAGE]
        rows = []
        for pair in shown:
            names = []
            for contact_id in (pair.first_id, pair.second_id):
                known = scan.names.get(contact_id)
                if known is None:  # beyond the newest contacts the scan compared by name
                    record = await gateway.read(
                        visit.actor,
                        CONTACT.resource,
                        contact_id,
                        fields=("first_name", "last_name"),
                    )
                    known = heading_of(CONTACT, record)
                names.append(known)
            reasons = ", ".join(
                REASONS[r.kind] + (f" ({r.score}%)" if r.kind == "name" else "")
                for r in pair.reasons
            )
            rows.append(PairRow(pair.first_id, pair.second_id, names[0], names[1], reasons))
        return await render(
            request,
            "duplicates/pairs.html",
            visit=visit,
            section="duplicates",
            title="Possible duplicates",
            rows=rows,
            scan=scan,
            page=page,
            pages=pages,
            total=len(scan.pairs),
        )

    @get("/contacts/duplicates/{first_id:str}/{second_id:str}")
    async def review(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        first_id: FromPath[str],
        second_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template:
        _require_merge_right(gateway, visit)
        preview = await gateway.merge_preview(visit.actor, first_id, second_id)
        first = await gateway.read(visit.actor, CONTACT.resource, first_id)
        second = await gateway.read(visit.actor, CONTACT.resource, second_id)
        survivor = second if request.query_params.get("survivor") == second.id else first
        other = first if survivor is second else second
        rows = []
        for spec in CONTACT.fields:
            if spec.name in first.restricted:
                continue
            a, b = first.values.get(spec.name), second.values.get(spec.name)
            shown_a, shown_b = (
                shown_value(CONTACT, spec.name, a),
                shown_value(CONTACT, spec.name, b),
            )
            if spec.references:  # an organization by its name, never its id
                shown_a = await _reference_name(gateway, visit, spec.references, a)
                shown_b = await _reference_name(gateway, visit, spec.references, b)
            kept = survivor.values.get(spec.name)
            chosen = (
                other.id
                if kept in (None, "")
                and other.values.get(spec.name) not in (None, "")
                and spec.name in preview.writable
                else survivor.id
            )
            rows.append(
                FieldRow(
                    spec.name,
                    spec.label,
                    shown_a,
                    shown_b,
                    a != b and spec.name in preview.writable,
                    chosen,
                )
            )
        return await render(
            request,
            "duplicates/review.html",
            visit=visit,
            section="duplicates",
            title="Review possible duplicates",
            first=first,
            second=second,
            first_heading=heading_of(CONTACT, first),
            second_heading=heading_of(CONTACT, second),
            survivor=survivor,
            rows=rows,
            related={
                contact_id: [(_label(k), n) for k, n in sorted(counts.items())]
                for contact_id, counts in preview.related.items()
            },
            blockers=preview.blockers,
        )

    @post("/contacts/duplicates/{first_id:str}/{second_id:str}/merge")
    async def merge(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        first_id: FromPath[str],
        second_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Redirect:
        _require_merge_right(gateway, visit)
        form = await request.form()
        survivor = form.get("survivor")
        if survivor not in (first_id, second_id):
            survivor = first_id
        merged = second_id if survivor == first_id else first_id
        keep: dict[str, str] = {}
        for spec in CONTACT.fields:
            chosen = form.get(f"keep_{spec.name}")
            if chosen in (first_id, second_id):
                keep[spec.name] = MERGED if chosen == merged else SURVIVOR
        result = await gateway.merge_contacts(visit.actor, survivor, merged, keep=keep)
        await flash(
            request, visit, "Contacts merged. You can undo the merge until it is confirmed."
        )
        return see_other(f"/merges/{result.id}")

    @get("/merges")
    async def merges(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template:
        _require_merge_right(gateway, visit)
        found = await gateway.list_merges(visit.actor)
        return await render(
            request,
            "duplicates/merges.html",
            visit=visit,
            section="duplicates",
            title="Merges",
            merges=found,
        )

    async def _survivor(self, gateway: Gateway, visit: Visit, merge: Merge) -> GatewayRecord | None:
        try:
            return await gateway.read(
                visit.actor, CONTACT.resource, merge.survivor_id, fields=("first_name", "last_name")
            )
        except NotFound:  # the survivor was merged into someone else since
            return None

    @get("/merges/{merge_id:str}")
    async def merge_page(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        merge_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template:
        _require_merge_right(gateway, visit)
        merge = await gateway.read_merge(visit.actor, merge_id)
        survivor = await self._survivor(gateway, visit, merge)
        return await render(
            request,
            "duplicates/merge.html",
            visit=visit,
            section="duplicates",
            title="Merge",
            merge=merge,
            survivor_heading=heading_of(CONTACT, survivor) if survivor else "",
            moved=[(_label(k), n) for k, n in sorted(merge.moved.items())],
            taken=[CONTACT.by_name[n].label for n in merge.fields if n in CONTACT.by_name],
        )

    @post("/merges/{merge_id:str}/undo")
    async def undo(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        merge_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Redirect:
        _require_merge_right(gateway, visit)
        merge = await gateway.undo_merge(visit.actor, merge_id)
        await flash(request, visit, "Merge undone: both contacts are back as they were.")
        return see_other(f"/merges/{merge.id}")

    @post("/merges/{merge_id:str}/confirm")
    async def confirm(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        merge_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Redirect:
        _require_merge_right(gateway, visit)
        merge = await gateway.confirm_merge(visit.actor, merge_id)
        await flash(request, visit, "Merge confirmed: the duplicate has been erased.")
        return see_other(f"/merges/{merge.id}")


async def _reference_name(gateway: Gateway, visit: Visit, target: str, value: Any) -> str:
    """The referenced record's heading (read through the gateway as the user), or a note
    that they may not see it: a person reads names, not ids."""
    if not value:
        return ""
    try:
        other = await gateway.read(visit.actor, target, str(value))
    except GatewayError:
        return "Not visible to you"
    return heading_of(RECORD_TYPES[target], other)
