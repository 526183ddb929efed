"""The name-search API: ``POST /api/v1/search`` and ``{"name": ...}`` on each type's
``/search`` (docs/search.md). Scope, paging, refusals and the OpenAPI document."""

from __future__ import annotations

import uuid

from httpx import AsyncClient

from server.gateway import Actor
from server.services import Services
from tests.conftest import Staff

SYSTEM = Actor.system("test")


async def _contact(services: Services, first: str, last: str, owner: object) -> str:
    record = await services.gateway.create(
        SYSTEM,
        "contact",
        {"first_name": first, "last_name": last, "email": f"{uuid.uuid4().hex[:8]}@example.org"},
        owner_id=owner.user_id,  # type: ignore[attr-defined]
        team=owner.team,  # type: ignore[attr-defined]
    )
    return record.id


async def test_search_everything_groups_by_type_within_scope(
    services: Services, staff: Staff
) -> None:
    me = await staff.create("sales", "north")
    other = await staff.create("sales", "south")
    mine = await _contact(services, "Sharon", "Todd", me)
    theirs = await _contact(services, "Sharon", "Todd", other)
    deal = await services.gateway.create(
        SYSTEM,
        "deal",
        {"title": "Todd family renewal", "contact_id": mine},
        owner_id=me.user_id,
        team=me.team,
    )
    api = await staff.login(me)
    answer = await api.post("/api/v1/search", json={"q": "sharon t"})
    assert answer.status_code == 200, answer.text
    groups = {g["type"]: g for g in answer.json()["groups"]}
    assert [i["id"] for i in groups["contact"]["items"]] == [mine]
    assert groups["contact"]["total"] == 1
    assert theirs not in answer.text
    assert [i["id"] for i in groups["deal"]["items"]] == [deal.id]
    assert list(groups) == ["contact", "lead", "organization", "deal", "case", "interaction"]
    only = await api.post("/api/v1/search", json={"q": "todd", "types": ["deal"], "per_type": 1})
    assert [g["type"] for g in only.json()["groups"]] == ["deal"]

    paged = await api.post("/api/v1/contacts/search", json={"name": "todd", "page_size": 1})
    assert paged.status_code == 200, paged.text
    assert paged.json()["total"] == 1
    assert [i["id"] for i in paged.json()["items"]] == [mine]
    deals = await api.post("/api/v1/deals/search", json={"name": "sharon"})
    assert [i["id"] for i in deals.json()["items"]] == [deal.id]


async def test_bad_search_bodies_are_400_and_refused_roles_403(
    services: Services, staff: Staff, client: AsyncClient
) -> None:
    api = await staff.login(await staff.create("sales"))
    for body in (
        {"q": 5},
        {"q": ""},
        {"q": "   ...  "},
        {"q": "x" * 201},
        {"q": "todd", "per_type": 0},
        {"q": "todd", "per_type": True},
        {"q": "todd", "types": ["planet"]},
        {"q": "todd", "types": "contact"},
        {"q": "todd", "email": "x@example.org"},
    ):
        answer = await api.post("/api/v1/search", json=body)
        assert answer.status_code == 400, (body, answer.text)
    for body in (
        {"name": 3},
        {"name": "todd", "page": 0},
        {"name": "todd", "page_size": 51},
        {"name": "todd", "page": "2"},
        {"name": "todd", "colour": "red"},
    ):
        answer = await api.post("/api/v1/contacts/search", json=body)
        assert answer.status_code == 400, (body, answer.text)
    assert (await client.post("/api/v1/search", json={"q": "todd"})).status_code == 401
    marketing = await staff.login(await staff.create("marketing"))
    assert (
        await marketing.post("/api/v1/contacts/search", json={"name": "todd"})
    ).status_code == 403
    nothing = await marketing.post("/api/v1/search", json={"q": "todd"})
    assert nothing.status_code == 200
    assert nothing.json() == {"groups": []}


async def test_search_routes_are_documented(client: AsyncClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    assert "Find people" in paths["/api/v1/search"]["post"]["description"]
    for plural in ("contacts", "leads", "organizations", "deals", "cases", "interactions"):
        assert "Name search" in paths[f"/api/v1/{plural}/search"]["post"]["description"]
