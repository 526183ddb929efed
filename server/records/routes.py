"""Generic CRUD + list + search routes over the gateway, one subclass per record type.

Routes are thin: parse, call the gateway, render. Policy, crypto and audit happen in the
gateway and nowhere else; these handlers never see a field the actor may not read.
"""

from __future__ import annotations

from typing import Any, ClassVar

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import Provide
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from server.datamap import RECORD_TYPES, RecordType
from server.gateway import Actor, Gateway, InvalidInput, Record
from server.web import provide_actor, provide_identity, purpose_of, services_of

MAX_SEARCH_VALUE = 320


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
    lines = [f"{rt.label} fields (unknown fields are rejected):"]
    for f in rt.fields:
        extra = f", one of: {', '.join(f.choices)}" if f.choices else ""
        need = "required" if f.required else "optional"
        lines.append(f"- `{f.name}` ({f.kind}, {need}, max {f.max_length}{extra})")
    return "\n".join(lines)


def _gateway(request: Request[Any, Any, Any]) -> Gateway:
    return services_of(request).gateway


def _owner_fields(data: dict[str, Any], actor: Actor) -> tuple[int | None, str | None]:
    """Admins may assign ownership explicitly; for others the gateway's re-check applies."""
    owner = data.pop("owner_id", None)
    team = data.pop("team", None)
    if owner is not None and (isinstance(owner, bool) or not isinstance(owner, int)):
        raise InvalidInput("owner_id: expected a staff user id", problems={"owner_id": "expected an integer"})
    if team is not None and (not isinstance(team, str) or len(team) > 64):
        raise InvalidInput("team: expected a team name", problems={"team": "expected a short string"})
    return owner, team


class RecordRoutes(Controller):
    resource: ClassVar[str]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get("/")
    async def list_records(
        self,
        request: Request[Any, Any, Any],
        actor: Actor,
        page: int = Parameter(default=1, ge=1),
        page_size: int = Parameter(default=25, ge=1, le=100),
        owner_id: int | None = None,
        team: str | None = None,
        organization_id: str | None = None,
        lifecycle_stage: str | None = None,
        source: str | None = None,
        domain: str | None = None,
        industry: str | None = None,
    ) -> dict[str, Any]:
        """A page of records in your scope, newest first, with the total for the filter."""
        rt = RECORD_TYPES[self.resource]
        candidates = {
            "owner_id": owner_id, "team": team, "organization_id": organization_id,
            "lifecycle_stage": lifecycle_stage, "source": source, "domain": domain,
            "industry": industry,
        }
        filters = {k: v for k, v in candidates.items() if v is not None}
        unknown = [k for k in filters if k not in {"owner_id", "team"} and k not in rt.by_name]
        if unknown:
            raise InvalidInput(f"{self.resource} cannot be filtered by: " + ", ".join(unknown))
        result = await _gateway(request).list(
            actor, self.resource, purpose=purpose_of(request), filters=filters,
            page=page, page_size=page_size,
        )
        return {
            "items": [record_json(r) for r in result.items],
            "total": result.total,
            "page": result.page,
            "page_size": result.page_size,
            "pages": (result.total + result.page_size - 1) // result.page_size,
        }

    @post("/", status_code=HTTP_201_CREATED)
    async def create_record(
        self, request: Request[Any, Any, Any], actor: Actor, data: dict[str, Any] = Body()
    ) -> dict[str, Any]:
        """Create a record. Personal fields are encrypted before they reach the database."""
        owner, team = _owner_fields(data, actor)
        record = await _gateway(request).create(
            actor, self.resource, data, purpose=purpose_of(request), owner_id=owner, team=team
        )
        return record_json(record)

    @post("/search", status_code=200)
    async def search_records(
        self, request: Request[Any, Any, Any], actor: Actor, data: dict[str, Any] = Body()
    ) -> dict[str, Any]:
        """Exact search by e-mail or phone: `{"email": "..."}` or `{"phone": "..."}`.

        A POST so that the search term never appears in a URL, a proxy log or browser history.
        """
        rt = RECORD_TYPES[self.resource]
        searchable = [f.name for f in rt.fields if f.blind_index]
        given = {k: v for k, v in data.items() if v not in (None, "")}
        if len(given) != 1 or next(iter(given)) not in searchable:
            raise InvalidInput(
                "search takes exactly one of: " + ", ".join(searchable),
                problems={k: "not searchable" for k in given if k not in searchable},
            )
        field_name, value = next(iter(given.items()))
        if not isinstance(value, str) or len(value) > MAX_SEARCH_VALUE:
            raise InvalidInput(f"{field_name}: expected a string of at most {MAX_SEARCH_VALUE} characters")
        matches = await _gateway(request).search(
            actor, self.resource, field_name, value, purpose=purpose_of(request)
        )
        return {"items": [record_json(r) for r in matches], "total": len(matches)}

    @get("/{record_id:str}")
    async def read_record(
        self,
        request: Request[Any, Any, Any],
        actor: Actor,
        record_id: str,
        fields: str | None = Parameter(default=None, description="comma-separated field names"),
    ) -> dict[str, Any]:
        """One record. Fields your role may not read are listed in `restricted_fields`."""
        wanted = tuple(f.strip() for f in fields.split(",") if f.strip()) if fields else None
        record = await _gateway(request).read(
            actor, self.resource, record_id, purpose=purpose_of(request), fields=wanted
        )
        return record_json(record)

    @patch("/{record_id:str}")
    async def update_record(
        self,
        request: Request[Any, Any, Any],
        actor: Actor,
        record_id: str,
        data: dict[str, Any] = Body(),
    ) -> dict[str, Any]:
        """Change some fields; send `null` to clear an optional field."""
        owner, team = _owner_fields(data, actor)
        record = await _gateway(request).update(
            actor, self.resource, record_id, data, purpose=purpose_of(request),
            owner_id=owner, team=team,
        )
        return record_json(record)

    @delete("/{record_id:str}", status_code=HTTP_204_NO_CONTENT)
    async def delete_record(
        self, request: Request[Any, Any, Any], actor: Actor, record_id: str
    ) -> None:
        """Delete the record and destroy its encryption key."""
        await _gateway(request).delete(actor, self.resource, record_id, purpose=purpose_of(request))
