"""``/api/v1/contacts`` (the generic record routes), duplicate detection and merges."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from server.datamap import CONTACT
from server.gateway import Actor, Gateway, InvalidInput
from server.gateway.duplicate_scan import Scan
from server.gateway.duplicates import Merge
from server.records.routes import record_routes
from server.web import provide_actor, provide_identity, purpose_of

ContactRoutes = record_routes(CONTACT, "/api/v1/contacts", "contacts")
MERGE_KEYS = {"survivor_id", "merged_id", "keep"}


def scan_json(scan: Scan) -> dict[str, Any]:
    return {
        "pairs": [
            {
                "contact_ids": [pair.first_id, pair.second_id],
                "reasons": [{"kind": r.kind, "score": r.score} for r in pair.reasons],
            }
            for pair in scan.pairs
        ],
        "names_compared": scan.names_compared,
        "name_scan_limit": scan.name_limit,
        "names_capped": scan.names_capped,
        "pairs_capped": scan.pairs_capped,
    }


def merge_json(merge: Merge) -> dict[str, Any]:
    return {
        "id": merge.id,
        "survivor_id": merge.survivor_id,
        "merged_id": merge.merged_id,
        "state": merge.state,
        "merged_by": merge.merged_by,
        "created_at": merge.created_at,
        "decided_at": merge.decided_at,
        "fields_from_merged": list(merge.fields),
        "moved": merge.moved,
    }


class ContactMergeRoutes(Controller):
    """Duplicates and merges: ids, reasons, field names and counts - never a value."""

    path = "/api/v1"
    tags = ["contacts"]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get(
        "/contacts/duplicates",
        description=(
            "Likely duplicate pairs among the contacts in your scope: the two ids and the "
            "reasons (`email`, `phone`: same value; `name`: similar, with a score 0-100). "
            "Names are compared among the newest `name_scan_limit` contacts "
            "(`names_capped` says when there were more). Needs the `merge` right."
        ),
    )
    async def duplicates(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        *,
        gateway: NamedDependency[Gateway],
    ) -> dict[str, Any]:
        scan = await gateway.find_duplicates(actor, purpose=purpose_of(request))
        return scan_json(scan)

    @post(
        "/contacts/merge",
        status_code=201,
        description=(
            'Merge two contacts: `{"survivor_id": ..., "merged_id": ..., "keep": {"email": '
            '"merged", ...}}`. `keep` names, per field, whose value the survivor keeps '
            "(`survivor` or `merged`; by default the survivor's, or the merged contact's "
            "where the survivor's is empty). Every record of the merged contact moves to the "
            "survivor; the merged contact is hidden until the merge is undone or confirmed. "
            "409 when either person is restricted, under a legal hold, has an open request, "
            "or is already in a pending merge."
        ),
    )
    async def merge(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        data: JSONBody[dict[str, Any]],
        *,
        gateway: NamedDependency[Gateway],
    ) -> dict[str, Any]:
        if gateway.permitted_fields(actor, "contact", "merge", purpose=purpose_of(request)) is None:
            # Refused (and audited) by the gateway before the body is looked at.
            await gateway.merge_contacts(actor, "", "", purpose=purpose_of(request))
        unknown = sorted(set(data) - MERGE_KEYS)
        if unknown:
            raise InvalidInput(
                "unknown key(s): " + ", ".join(k[:40] for k in unknown),
                problems=dict.fromkeys((k[:40] for k in unknown), "unknown key"),
            )
        survivor, merged, keep = data.get("survivor_id"), data.get("merged_id"), data.get("keep")
        problems = {
            name: "expected a contact id"
            for name, value in (("survivor_id", survivor), ("merged_id", merged))
            if not isinstance(value, str) or not value
        }
        if keep is not None and not (
            isinstance(keep, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in keep.items())
        ):
            problems["keep"] = 'expected an object of field -> "survivor" or "merged"'
        if problems:
            raise InvalidInput(
                "; ".join(f"{k}: {v}" for k, v in problems.items()), problems=problems
            )
        result = await gateway.merge_contacts(
            actor, str(survivor), str(merged), keep=keep, purpose=purpose_of(request)
        )
        return merge_json(result)

    @get(
        "/merges",
        description="Merges of contacts in your scope, newest first; filter with `state` "
        "(`pending`, `undone`, `confirmed`).",
    )
    async def merges(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        merge_state: Annotated[str | None, QueryParameter(name="state")] = None,
        *,
        gateway: NamedDependency[Gateway],
    ) -> dict[str, Any]:
        found = await gateway.list_merges(
            actor, state=merge_state or None, purpose=purpose_of(request)
        )
        return {"items": [merge_json(m) for m in found]}

    @post(
        "/merges/{merge_id:uuid}/undo",
        status_code=200,
        description="Undo a pending merge: the moved records go back (sealed again under the "
        "merged contact's key), the survivor's overwritten fields are restored and the merged "
        "contact is shown again. 409 once the merge was confirmed or undone.",
    )
    async def undo(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        merge_id: FromPath[UUID],
        *,
        gateway: NamedDependency[Gateway],
    ) -> dict[str, Any]:
        result = await gateway.undo_merge(actor, str(merge_id), purpose=purpose_of(request))
        return merge_json(result)

    @post(
        "/merges/{merge_id:uuid}/confirm",
        status_code=200,
        description="Make a pending merge final: the merged contact is erased (its values "
        "cleared and its key destroyed). Undo is impossible afterwards (409).",
    )
    async def confirm(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        merge_id: FromPath[UUID],
        *,
        gateway: NamedDependency[Gateway],
    ) -> dict[str, Any]:
        result = await gateway.confirm_merge(actor, str(merge_id), purpose=purpose_of(request))
        return merge_json(result)
