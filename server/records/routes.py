"""CRUD, list and search routes over the gateway, generated per record type.

Routes are thin: parse, call the gateway, render. Policy, crypto and audit happen in the
gateway and nowhere else, so these handlers never see a field the actor may not read.
The OpenAPI descriptions are generated from the data map, like everything else.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, cast
from uuid import UUID

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from server.datamap import Field, FieldKind, RecordType, shown_name
from server.gateway import Actor, Gateway, InvalidInput, Record
from server.gateway.ownership import requested_owner, requested_team
from server.gateway.search import MAX_PAGE_SIZE as MAX_NAME_PAGE_SIZE
from server.gateway.search import SEARCH_TYPES
from server.records.bodies import record_body_schema, search_body_schema
from server.web import (
    DOCUMENTED_BODY,
    PageNumber,
    PageSize,
    provide_actor,
    provide_identity,
    purpose_of,
    services_of,
)

MAX_SEARCH_VALUE = 320
STAFF_ID_LIMIT = 2**31  # staff ids live in INTEGER columns (32 bits on PostgreSQL)


def staff_id(value: Any) -> int | None:
    """A well-formed staff user id, or None (a bool is not one; 2**63 was a 500)."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < STAFF_ID_LIMIT else None


PAGING = {"page", "page_size", "sort"}
SortKey = Annotated[
    str,
    QueryParameter(
        max_length=40,
        description="order by a plaintext field (`stage`, `amount`, `created_at`, ...); "
        "`-` first for descending. Encrypted fields cannot be sorted by: an unknown or "
        "unsortable key is a 400 naming the keys that work. Default: newest first.",
    ),
]


# --- answer schemas, generated from the data map per record type -----------------------------
# The handlers below are written once for every type; each type's controller resolves these
# names to its own Structs (``signature_namespace``), so the OpenAPI document has a schema
# per type ("ContactRecord", "ContactPage", ...) naming every field with its JSON type.


class RecordOut(msgspec.Struct, kw_only=True):
    """One record: the fields the caller may read (the others are left out and named in
    ``restricted_fields``), and whose it is."""

    id: str
    owner_id: int
    team: str
    subject_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    restricted_fields: list[str]


class RecordPage(msgspec.Struct):
    items: list[RecordOut]
    total: int
    page: int
    page_size: int
    pages: int


class RecordMatches(msgspec.Struct, kw_only=True):
    items: list[RecordOut]
    total: int
    # A name search pages its matches (an exact search returns every match at once).
    page: int | msgspec.UnsetType = msgspec.UNSET
    page_size: int | msgspec.UnsetType = msgspec.UNSET
    capped: bool | msgspec.UnsetType = msgspec.UNSET


def _json_type(spec: Field) -> Any:
    """A field's value as the API sends it: whole numbers as numbers, everything else
    (text, ids, dates and times in ISO 8601) as strings; null when empty."""
    base: Any = int if spec.kind is FieldKind.INTEGER else str
    return Annotated[base | msgspec.UnsetType | None, msgspec.Meta(description=spec.label)]


def record_schemas(rt: RecordType) -> dict[str, type[msgspec.Struct]]:
    """The answer Structs of one record type, under the names the handlers use."""
    name = rt.label.replace(" ", "")
    one = msgspec.defstruct(
        f"{name}Record",
        [(f.name, _json_type(f), msgspec.UNSET) for f in rt.fields],
        bases=(RecordOut,),
        kw_only=True,
    )
    page = msgspec.defstruct(
        f"{name}Page",
        [("items", list[one])],  # type: ignore[valid-type]
        bases=(RecordPage,),
    )
    matches = msgspec.defstruct(
        f"{name}Matches",
        [("items", list[one])],  # type: ignore[valid-type]
        bases=(RecordMatches,),
        kw_only=True,
    )
    return {"RecordOut": one, "RecordPage": page, "RecordMatches": matches}


def record_json(record: Record) -> dict[str, Any]:
    return {
        "id": record.id,
        **record.values,
        "owner_id": record.owner_id,
        "team": record.team,
        "subject_id": record.subject_id,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "restricted_fields": list(record.restricted),
    }


def describe_fields(rt: RecordType) -> str:
    lines = [f"{rt.label} fields (unknown fields are rejected with 400):", ""]
    for f in rt.fields:
        extra = f"; one of: {', '.join(f.choices)}" if f.choices else ""
        need = "required" if f.required else "optional"
        if f.currency_from:
            lines.append(
                f"- `{f.name}`: integer in **minor units** of `{f.currency_from}` (the "
                f"currency's smallest unit), {need}: 1250000 with EUR is 12,500.00 EUR, "
                "12500 with JPY is 12,500 JPY. The web admin types and shows major units."
            )
            continue
        lines.append(f"- `{f.name}`: {f.kind}, {need}, at most {f.max_length} characters{extra}")
    lines += [
        "",
        "`owner_id` and `team` say whose record it is (they decide who can see it). "
        "Admins may hand a record to any active staff user and team; sales only to "
        "themselves; support may hand a task to an active colleague in their own team. "
        "Anything else is refused with 403, an unknown owner or team with 400.",
    ]
    return "\n".join(lines)


def describe_filters(rt: RecordType) -> str:
    names = ["owner_id", "team", *(f.name for f in rt.fields if f.filterable)]
    return (
        "A page of the records in your scope, newest first (or by `sort`), with the total "
        "for the filter. "
        "Filter with query parameters (exact match): "
        + ", ".join(f"`{n}`" for n in names)
        + ". To find someone by e-mail or phone use the `search` endpoint."
    )


def _gateway(request: Request[Any, Any, Any]) -> Gateway:
    return services_of(request).gateway


def _ownership(data: dict[str, Any]) -> tuple[int | None, str | None]:
    """Pop ``owner_id``/``team`` from a body. Whether the actor may hand the record to
    that owner and team is the gateway's decision (server.gateway.ownership)."""
    return requested_owner(data.pop("owner_id", None)), requested_team(data.pop("team", None))


def _whole_number(data: dict[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name}: expected a whole number", problems={name: "invalid"})
    return value


async def _name_search(
    request: Request[Any, Any, Any], actor: Actor, resource: str, data: dict[str, Any]
) -> dict[str, Any]:
    unknown = [k for k in data if k not in {"name", "page", "page_size"}]
    if unknown:
        raise InvalidInput(
            "name search takes: name, page, page_size",
            problems={shown_name(k): "unknown field" for k in unknown},
        )
    term = data["name"]
    if not isinstance(term, str):
        raise InvalidInput("name: expected a string", problems={"name": "expected a string"})
    hits = await _gateway(request).search_names(
        actor,
        resource,
        term,
        purpose=purpose_of(request),
        page=_whole_number(data, "page", 1),
        page_size=_whole_number(data, "page_size", 20),
    )
    return {
        "items": [record_json(r) for r in hits.items],
        "total": hits.total,
        "page": hits.page,
        "page_size": hits.page_size,
        "capped": hits.capped,
    }


def record_routes(rt: RecordType, base_path: str, tag: str) -> type[Controller]:
    """A controller exposing one data-map record type under ``base_path``."""
    resource = rt.resource
    fields_doc = describe_fields(rt)
    searchable = [f.name for f in rt.fields if f.blind_index]
    by_name = resource in SEARCH_TYPES
    search_doc = (
        (
            (
                'Name search: `{"name": "sharon t", "page": 1, "page_size": 20}` finds records by '
                "whole words or word beginnings of "
                + (
                    "their name"
                    if rt.subject_from is None
                    else "their title or of the name of the person or organization they are about"
                )
                + f" (accents and case ignored; page_size at most {MAX_NAME_PAGE_SIZE}), best "
                "matches first. "
            )
            if by_name
            else ""
        )
        + (
            (
                "Exact search by one of: " + ", ".join(searchable) + ", e.g. "
                f'`{{"{searchable[0]}": "..."}}`. '
            )
            if searchable
            else ""
        )
        + (
            "A POST so that the search term never appears in a URL, a proxy log or browser "
            "history; the term is never logged, and each search is audited with the ids returned."
        )
    )

    schemas = record_schemas(rt)
    # The bodies are parsed by the gateway against the data map (every problem at once,
    # unknown keys refused unechoed); the document describes them from the same map.
    json_only = ("application/json",)
    create_body = {DOCUMENTED_BODY: (record_body_schema(rt, partial=False), json_only)}
    update_body = {DOCUMENTED_BODY: (record_body_schema(rt, partial=True), json_only)}
    search_body = {
        DOCUMENTED_BODY: (
            search_body_schema(rt, by_name=by_name, longest=MAX_SEARCH_VALUE),
            json_only,
        )
    }
    one, page_of, matches_of = (
        schemas["RecordOut"],
        schemas["RecordPage"],
        schemas["RecordMatches"],
    )

    def out(record: Record) -> RecordOut:
        return cast(RecordOut, one(**record_json(record)))

    class RecordRoutes(Controller):
        path = base_path
        tags = [tag]
        dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}
        signature_namespace = schemas  # the names in the annotations below: this type's

        @get("/", description=describe_filters(rt))
        async def list_records(
            self,
            request: Request[Any, Any, Any],
            actor: NamedDependency[Actor],
            page: PageNumber = 1,
            page_size: PageSize = 25,
            sort: SortKey = "",
            *,
            gateway: NamedDependency[Gateway],
        ) -> RecordPage:
            filters = {k: v for k, v in request.query_params.items() if k not in PAGING}
            if "owner_id" in filters:
                owner = staff_id(filters["owner_id"])
                if owner is None:
                    raise InvalidInput("owner_id: expected a staff user id")
                filters["owner_id"] = owner
            result = await gateway.list(
                actor,
                resource,
                purpose=purpose_of(request),
                filters=filters,
                page=page,
                page_size=page_size,
                sort=sort,
            )
            return cast(
                RecordPage,
                page_of(
                    items=[out(r) for r in result.items],
                    total=result.total,
                    page=result.page,
                    page_size=result.page_size,
                    pages=(result.total + result.page_size - 1) // result.page_size,
                ),
            )

        @post("/", status_code=HTTP_201_CREATED, description=fields_doc, opt=create_body)
        async def create_record(
            self,
            request: Request[Any, Any, Any],
            actor: NamedDependency[Actor],
            data: JSONBody[dict[str, Any]],
            *,
            gateway: NamedDependency[Gateway],
        ) -> RecordOut:
            owner, team = _ownership(data)
            record = await gateway.create(
                actor, resource, data, purpose=purpose_of(request), owner_id=owner, team=team
            )
            return out(record)

        if searchable or by_name:  # a type with neither has no search

            @post("/search", status_code=200, description=search_doc, opt=search_body)
            async def search_records(
                self,
                request: Request[Any, Any, Any],
                actor: NamedDependency[Actor],
                data: JSONBody[dict[str, Any]],
                *,
                gateway: NamedDependency[Gateway],
            ) -> RecordMatches:
                if by_name and data.get("name") not in (None, ""):
                    found = await _name_search(request, actor, resource, data)
                    found["items"] = [one(**item) for item in found["items"]]
                    return cast(RecordMatches, matches_of(**found))
                given = {k: v for k, v in data.items() if v not in (None, "")}
                keys = [*(["name"] if by_name else []), *searchable]
                if len(given) != 1 or next(iter(given)) not in searchable:
                    raise InvalidInput(
                        "search takes exactly one of: " + ", ".join(keys),
                        problems={shown_name(k): "not searchable" for k in given if k not in keys},
                    )
                field_name, value = next(iter(given.items()))
                if not isinstance(value, str) or len(value) > MAX_SEARCH_VALUE:
                    raise InvalidInput(
                        f"{field_name}: expected a string of at most {MAX_SEARCH_VALUE} characters"
                    )
                matches = await gateway.search(
                    actor, resource, field_name, value, purpose=purpose_of(request)
                )
                return cast(
                    RecordMatches, matches_of(items=[out(r) for r in matches], total=len(matches))
                )

        @get(
            "/{record_id:uuid}",
            description="One record. Fields your role may not read are named in "
            "`restricted_fields` and never sent. Ask for specific fields with "
            "`?fields=a,b`: asking for a field you may not read is refused (403) and audited.",
        )
        async def read_record(
            self,
            request: Request[Any, Any, Any],
            actor: NamedDependency[Actor],
            record_id: FromPath[UUID],
            fields: FromQuery[str | None] = None,
            *,
            gateway: NamedDependency[Gateway],
        ) -> RecordOut:
            wanted = tuple(f.strip() for f in fields.split(",") if f.strip()) if fields else None
            record = await gateway.read(
                actor, resource, str(record_id), purpose=purpose_of(request), fields=wanted
            )
            return out(record)

        @patch(
            "/{record_id:uuid}",
            description="Change some fields; `null` clears an optional field.\n\n" + fields_doc,
            opt=update_body,
        )
        async def update_record(
            self,
            request: Request[Any, Any, Any],
            actor: NamedDependency[Actor],
            record_id: FromPath[UUID],
            data: JSONBody[dict[str, Any]],
            *,
            gateway: NamedDependency[Gateway],
        ) -> RecordOut:
            owner, team = _ownership(data)
            record = await gateway.update(
                actor,
                resource,
                str(record_id),
                data,
                purpose=purpose_of(request),
                owner_id=owner,
                team=team,
            )
            return out(record)

        @delete(
            "/{record_id:uuid}",
            status_code=HTTP_204_NO_CONTENT,
            description="Delete the record. A record that is its own data subject (a contact, "
            "an organization) also has its encryption key destroyed; a deal, interaction or case "
            "is removed alone. Refused (409) while other records still point at it.",
        )
        async def delete_record(
            self,
            request: Request[Any, Any, Any],
            actor: NamedDependency[Actor],
            record_id: FromPath[UUID],
            *,
            gateway: NamedDependency[Gateway],
        ) -> None:
            await gateway.delete(actor, resource, str(record_id), purpose=purpose_of(request))

    RecordRoutes.__name__ = RecordRoutes.__qualname__ = f"{rt.label}Routes"
    return RecordRoutes
