"""The authorization matrix, generated: every API route, every role, anonymous included.

Two generated tests keep the HTTP layer equal to policy.csv:

- every record type x role x route (list, create, search, read, update, delete) against
  three records - the actor's own, a colleague's in the same team, a stranger's in another
  team - answers exactly what the policy's decision and record scope say: allowed and in
  scope works, out of scope is 404 (never 403: a hidden record does not exist), a refused
  action is 403 (create, list) or 404 (one record);
- every other API route (merges, conversion, reports, segments, campaigns, the record of
  processing, the session) answers 401 to anonymous callers and refuses the roles the
  policy refuses, while the roles it allows get past the guard.

A route added without a row here fails ``test_every_api_route_is_in_the_matrix``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from httpx import AsyncClient
from litestar import Litestar

from policy.enforcer import Scope
from server.datamap import PURPOSES, RECORD_TYPES
from server.gateway import Actor
from server.gateway.search import SEARCH_TYPES
from server.services import Services
from tests.conftest import Staff, contact_values

API = "/api/v1"
ROLES = ("admin", "sales", "support", "marketing", "compliance")
PLURAL = {
    "contact": "contacts",
    "organization": "organizations",
    "deal": "deals",
    "interaction": "interactions",
    "case": "cases",
    "lead": "leads",
    "task": "tasks",
    "note": "notes",
    "mail": "mail",
    "feedback": "feedback",
}
# Record types with a REST family of their own. A case's messages have none: the service
# desk writes them (server/servicedesk; their scope is tested in
# tests/server/servicedesk/test_service_desk.py).
REST_TYPES = sorted(set(RECORD_TYPES) - {"case_message"})
SYSTEM = Actor.system("test-matrix")

# --- the other API families: (method, path) -> who may pass the guard ----------------------
# "public": anyone, signed in or not; "staff": any signed-in staff user; (resource, action):
# the roles policy.csv allows it.
OTHER_ROUTES: dict[tuple[str, str], str | tuple[str, str]] = {
    ("POST", "/api/v1/auth/login"): "public",
    ("POST", "/api/v1/auth/logout"): "staff",
    # Name search over every type: each type the role may not search is left out.
    ("POST", "/api/v1/search"): "staff",
    ("GET", "/api/v1/auth/me"): "staff",
    ("GET", "/api/v1/public/leads/form-token"): "public",
    ("POST", "/api/v1/public/leads"): "public",
    ("GET", "/api/v1/contacts/duplicates"): ("contact", "merge"),
    ("POST", "/api/v1/contacts/merge"): ("contact", "merge"),
    ("GET", "/api/v1/merges"): ("contact", "merge"),
    ("POST", "/api/v1/merges/{merge_id:uuid}/confirm"): ("contact", "merge"),
    ("POST", "/api/v1/merges/{merge_id:uuid}/undo"): ("contact", "merge"),
    ("POST", "/api/v1/leads/{record_id:uuid}/convert"): ("lead", "convert"),
    ("GET", "/api/v1/compliance/record-of-processing"): ("processing_record", "read"),
    ("GET", "/api/v1/reports/pipeline"): ("report", "view"),
    ("GET", "/api/v1/reports/win-rate"): ("report", "view"),
    ("GET", "/api/v1/reports/cases"): ("report", "view"),
    ("GET", "/api/v1/reports/interactions"): ("report", "view"),
    ("GET", "/api/v1/forecast"): ("forecast", "view"),
    # Issue 20: the report builder and saved reports.
    ("GET", "/api/v1/reports/builder/options"): ("report", "view"),
    ("POST", "/api/v1/reports/builder/run"): ("report", "view"),
    ("POST", "/api/v1/reports/builder/csv"): ("report", "view"),
    ("GET", "/api/v1/reports/saved"): ("report", "view"),
    ("POST", "/api/v1/reports/saved"): ("report", "view"),
    ("GET", "/api/v1/reports/saved/{report_id:uuid}"): ("report", "view"),
    ("POST", "/api/v1/reports/saved/{report_id:uuid}/run"): ("report", "view"),
    ("DELETE", "/api/v1/reports/saved/{report_id:uuid}"): ("report", "view"),
    ("GET", "/api/v1/segments"): ("campaign", "manage"),
    ("POST", "/api/v1/segments"): ("campaign", "manage"),
    ("GET", "/api/v1/segments/{segment_id:uuid}"): ("campaign", "manage"),
    ("PATCH", "/api/v1/segments/{segment_id:uuid}"): ("campaign", "manage"),
    ("DELETE", "/api/v1/segments/{segment_id:uuid}"): ("campaign", "manage"),
    ("GET", "/api/v1/segments/{segment_id:uuid}/members"): ("campaign", "manage"),
    ("GET", "/api/v1/segments/{segment_id:uuid}/size"): ("campaign", "manage"),
    ("GET", "/api/v1/campaigns"): ("campaign", "manage"),
    ("POST", "/api/v1/campaigns"): ("campaign", "manage"),
    ("GET", "/api/v1/campaigns/{campaign_id:uuid}"): ("campaign", "manage"),
    ("PATCH", "/api/v1/campaigns/{campaign_id:uuid}"): ("campaign", "manage"),
    ("DELETE", "/api/v1/campaigns/{campaign_id:uuid}"): ("campaign", "manage"),
    ("GET", "/api/v1/campaigns/{campaign_id:uuid}/audience"): ("campaign", "manage"),
    ("GET", "/api/v1/campaigns/{campaign_id:uuid}/call-list"): ("campaign", "manage"),
    ("POST", "/api/v1/campaigns/{campaign_id:uuid}/cancel"): ("campaign", "manage"),
    ("POST", "/api/v1/campaigns/{campaign_id:uuid}/send"): ("campaign", "manage"),
    # Issue 19: consent, data-subject requests and the audit trail over REST.
    ("GET", "/api/v1/consent/purposes"): ("consent", "read"),
    ("GET", "/api/v1/consent/notices"): ("consent", "read"),
    ("GET", "/api/v1/consent/notices/{version:int}"): ("consent", "read"),
    ("GET", "/api/v1/contacts/{record_id:uuid}/consent"): ("consent", "read"),
    ("POST", "/api/v1/contacts/{record_id:uuid}/consent"): ("consent", "record"),
    ("GET", "/api/v1/contacts/{record_id:uuid}/consent/ledger"): ("consent", "export"),
    ("POST", "/api/v1/contacts/{record_id:uuid}/consent/double-opt-in"): ("consent", "record"),
    ("GET", "/api/v1/requests"): ("dsr", "manage"),
    ("POST", "/api/v1/requests"): ("dsr", "manage"),
    ("GET", "/api/v1/requests/{request_id:uuid}"): ("dsr", "manage"),
    ("POST", "/api/v1/requests/{request_id:uuid}/transition"): ("dsr", "manage"),
    ("POST", "/api/v1/requests/{request_id:uuid}/export"): ("dsr", "manage"),
    ("GET", "/api/v1/audit/events"): ("audit", "read"),
    ("GET", "/api/v1/audit/head"): ("audit", "read"),
    ("GET", "/api/v1/audit/proofs/inclusion"): ("audit", "read"),
    ("GET", "/api/v1/audit/proofs/consistency"): ("audit", "read"),
    ("GET", "/api/v1/audit/public-key"): ("audit", "read"),
    ("GET", "/api/v1/audit/verification"): ("audit", "verify"),
    # Staff accounts, pipelines and imports over REST (issue 19, item 2).
    ("GET", "/api/v1/staff"): ("staff", "manage"),
    ("POST", "/api/v1/staff"): ("staff", "manage"),
    ("GET", "/api/v1/staff/{user_id:int}"): ("staff", "manage"),
    ("PATCH", "/api/v1/staff/{user_id:int}"): ("staff", "manage"),
    ("GET", "/api/v1/pipelines"): ("pipeline", "manage"),
    ("POST", "/api/v1/pipelines"): ("pipeline", "manage"),
    ("GET", "/api/v1/pipelines/{pipeline_id:uuid}"): ("pipeline", "manage"),
    ("PATCH", "/api/v1/pipelines/{pipeline_id:uuid}"): ("pipeline", "manage"),
    ("POST", "/api/v1/pipelines/{pipeline_id:uuid}/stages"): ("pipeline", "manage"),
    ("PATCH", "/api/v1/pipelines/stages/{stage_id:uuid}"): ("pipeline", "manage"),
    ("POST", "/api/v1/imports"): ("import", "run"),
    ("GET", "/api/v1/imports/{job_id:uuid}"): ("import", "run"),
    ("GET", "/api/v1/imports/{job_id:uuid}/report"): ("import", "run"),
    # Issue 21: sharing a captured mail's thread (its owner only; others get 404 or 403).
    ("POST", "/api/v1/mail/{mail_id:uuid}/thread/share"): ("mail", "update"),
    ("POST", "/api/v1/mail/{mail_id:uuid}/thread/unshare"): ("mail", "update"),
}


def record_routes() -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    for resource, plural in PLURAL.items():
        base = f"{API}/{plural}"
        one = f"{base}/{{record_id:uuid}}"
        routes |= {("GET", base), ("POST", base), ("GET", one), ("PATCH", one), ("DELETE", one)}
        if resource in SEARCH_TYPES or any(f.blind_index for f in RECORD_TYPES[resource].fields):
            routes.add(("POST", f"{base}/search"))
    return routes


def api_routes(app: Litestar) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in app.routes
        if route.path.startswith("/api/")
        for handler in getattr(route, "route_handlers", [])
        for method in handler.http_methods
        if method not in {"OPTIONS", "HEAD"}
    }


def test_every_api_route_is_in_the_matrix(app: Litestar) -> None:
    assert set(PLURAL) == set(REST_TYPES)
    assert api_routes(app) == record_routes() | set(OTHER_ROUTES)


def concrete(path: str) -> str:
    """A path template with made-up ids: the guard must answer before any lookup."""
    path = re.sub(r"\{[a-z_]+:int\}", "999999", path)
    return re.sub(r"\{[a-z_]+:uuid\}", str(uuid.uuid4()), path)


# --- the policy as the oracle ----------------------------------------------------------------


def default_purpose(services: Services, role: str) -> str:
    return services.gateway.default_purpose(role)


def may(services: Services, role: str, resource: str, action: str) -> tuple[bool, Scope]:
    """What policy.csv says: allowed, and over which records."""
    rt = RECORD_TYPES[resource]
    purpose = default_purpose(services, role)
    decision = services.policy.decide(
        role,
        resource,
        action,
        purpose,
        tuple(f.name for f in rt.fields),
        frozenset(f.name for f in rt.fields if purpose in f.purposes),
    )
    return decision.allowed, decision.scope


@dataclass(frozen=True)
class Placed:
    """One record and whose it is."""

    id: str
    owner_id: int
    team: str
    private: bool = False  # captured mail: its owner's alone until the thread is shared


def visible(scope: Scope, record: Placed, me: Any) -> bool:
    if record.private and record.owner_id != me.user_id:
        return False
    return (
        scope is Scope.ALL
        or (scope is Scope.TEAM and record.team == me.team)
        or (scope is Scope.OWN and record.owner_id == me.user_id)
    )


# --- records -----------------------------------------------------------------------------------


# A word of each type's name (or, for an interaction, of its person's) in ``values_for``.
NAME_TERMS = {
    "contact": "hopper",
    "organization": "initech",
    "lead": "byron",
    "deal": "renewal",
    "interaction": "grace hop",
    "case": "barrel",
}


def values_for(resource: str, contact_id: str, email: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {
        "contact": {**contact_values(), "email": email},
        "organization": {"name": f"Initech {tag}", "email": email},
        "lead": {"first_name": "Ada", "last_name": "Byron", "email": email},
        "deal": {"title": "Renewal", "amount": 1000, "currency": "GBP", "contact_id": contact_id},
        "interaction": {
            "channel": "phone_call",
            "occurred_at": "2026-11-30T10:15:00Z",
            "summary": "Rang about the invoice",
            "contact_id": contact_id,
        },
        "case": {"title": "Leaking barrel", "kind": "product_return", "contact_id": contact_id},
        "task": {"title": "Ring back", "due_at": "2027-01-05T09:00:00Z", "contact_id": contact_id},
        "note": {"body": "Prefers calls", "record_type": "contact", "record_id": contact_id},
        "mail": {
            "record_type": "contact",
            "record_id": contact_id,
            "direction": "inbound",
            "occurred_at": "2026-11-30T10:15:00Z",
            "subject": "Invoice",
            "body": "Please resend the invoice.",
            "thread_key": tag,
            "message_key": tag,
        },
        "feedback": {
            "survey_id": "c5a70000-0000-4000-8000-000000000001",
            "kind": "csat",
            "score": 4,
            "comment": "Quick answer",
            "contact_id": contact_id,
        },
    }[resource]


async def place(services: Services, resource: str, owner: Any, email: str) -> Placed:
    """A record owned by ``owner`` in their team, made by a system job (not by the API
    under test), about a contact of the same owner."""
    gateway = services.gateway
    contact = await gateway.create(
        SYSTEM, "contact", contact_values(), owner_id=owner.user_id, team=owner.team
    )
    if resource == "contact":
        values = {**contact_values(), "email": email}
    else:
        values = values_for(resource, contact.id, email)
    record = await gateway.create(SYSTEM, resource, values, owner_id=owner.user_id, team=owner.team)
    private = RECORD_TYPES[resource].private_until is not None
    return Placed(record.id, owner.user_id, owner.team, private)


async def creatable(services: Services, client_role: str, resource: str, me: Any) -> dict[str, Any]:
    """Values the role may send for a new record (fields it may not set left out)."""
    contact = await services.gateway.create(
        SYSTEM, "contact", contact_values(), owner_id=me.user_id, team=me.team
    )
    values = values_for(resource, contact.id, f"new.{uuid.uuid4().hex[:8]}@example.org")
    settable = services.gateway.permitted_fields(
        Actor.staff(me.user_id, client_role, me.team), resource, "create"
    )
    return {k: v for k, v in values.items() if settable is None or k in settable}


@pytest.mark.parametrize("resource", REST_TYPES)
@pytest.mark.parametrize("role", ROLES)
async def test_record_routes_answer_as_the_policy_says(
    services: Services, staff: Staff, client: AsyncClient, role: str, resource: str
) -> None:
    me = await staff.create(role, "north")
    mate = await staff.create("sales", "north")
    stranger = await staff.create("sales", "south")
    api = await staff.login(me)
    base = f"{API}/{PLURAL[resource]}"
    email = f"matrix.{uuid.uuid4().hex[:8]}@example.org"
    records = {
        "own": await place(services, resource, me, email),
        "colleague's": await place(services, resource, mate, email),
        "stranger's": await place(services, resource, stranger, email),
    }

    # Anonymous: 401 on every route, and nothing about the records.
    for method, path in sorted(record_routes()):
        if not path.startswith(base + "/") and path != base and path != base + "/search":
            continue
        target = path.replace("{record_id:uuid}", records["own"].id)
        response = await client.request(method, target, json={} if method != "GET" else None)
        assert response.status_code == 401, (method, target, response.text)

    # List: refused (403), or exactly the records in scope.
    allowed, scope = may(services, role, resource, "list")
    listed = await api.get(base, params={"page_size": 100})
    if not allowed:
        assert listed.status_code == 403, listed.text
    else:
        assert listed.status_code == 200, listed.text
        ids = {item["id"] for item in listed.json()["items"]}
        wanted = {r.id for r in records.values() if visible(scope, r, me)}
        assert ids & {r.id for r in records.values()} == wanted

    # Search by e-mail, where the type has one: the same records as the list would show.
    if any(f.name == "email" and f.blind_index for f in RECORD_TYPES[resource].fields):
        allowed, scope = may(services, role, resource, "search")
        found = await api.post(f"{base}/search", json={"email": email})
        if not allowed:
            assert found.status_code in {403, 404}, found.text
        else:
            assert found.status_code == 200, found.text
            ids = {item["id"] for item in found.json()["items"]}
            assert ids == {r.id for r in records.values() if visible(scope, r, me)}

    # Name search, where the type has one: again exactly the records in scope.
    if resource in SEARCH_TYPES:
        allowed, scope = may(services, role, resource, "search")
        found = await api.post(f"{base}/search", json={"name": NAME_TERMS[resource]})
        if not allowed:
            assert found.status_code in {403, 404}, found.text
        else:
            assert found.status_code == 200, found.text
            ids = {item["id"] for item in found.json()["items"]}
            assert ids & {r.id for r in records.values()} == {
                r.id for r in records.values() if visible(scope, r, me)
            }

    # One record: read, update (an empty change), delete - 404 wherever not allowed or
    # not in scope, identical to a record that does not exist.
    missing = f"{base}/{uuid.uuid4()}"
    for action, method, success in (
        ("read", "GET", 200),
        ("update", "PATCH", 200),
        ("delete", "DELETE", 204),
    ):
        allowed, scope = may(services, role, resource, action)
        for whose, record in records.items():
            body = {} if method == "PATCH" else None
            response = await api.request(method, f"{base}/{record.id}", json=body)
            if allowed and visible(scope, record, me):
                assert response.status_code == success, (action, whose, response.text)
            else:
                assert response.status_code == 404, (action, whose, response.text)
                nothing = await api.request(method, missing, json=body)
                assert response.json() == nothing.json(), (action, whose)
                assert email not in response.text

    # Create: refused with 403 (there is nothing to hide), or created in the actor's hands.
    allowed, _ = may(services, role, resource, "create")
    created = await api.post(base, json=await creatable(services, role, resource, me))
    if not allowed:
        assert created.status_code == 403, created.text
    else:
        assert created.status_code == 201, created.text
        assert (created.json()["owner_id"], created.json()["team"]) == (me.user_id, "north")


# --- every other API family --------------------------------------------------------------------


def passes(services: Services, role: str, rule: str | tuple[str, str]) -> bool:
    if rule in {"public", "staff"}:
        return True
    resource, action = rule
    if resource in RECORD_TYPES:
        return may(services, role, resource, action)[0]
    return services.policy.allows(role, resource, action)


@pytest.mark.parametrize("role", [None, *ROLES])
async def test_other_api_routes_refuse_whom_the_policy_refuses(
    services: Services, staff: Staff, client: AsyncClient, role: str | None
) -> None:
    api = client if role is None else await staff.login(await staff.create(role, "north"))
    wrong: list[tuple[str, str, int]] = []  # refused roles that got past the guard
    for (method, path), rule in sorted(OTHER_ROUTES.items()):
        if path == "/api/v1/auth/logout":
            continue  # would end the session the rest of the loop uses (checked last)
        body = None if method in {"GET", "DELETE"} else {}
        response = await api.request(method, concrete(path), json=body)
        code = response.status_code
        assert code < 500, (role, method, path, response.text)
        if rule == "public":
            continue
        if role is None:
            assert code == 401, (method, path, response.text)
        elif passes(services, role, rule):
            assert code not in {401, 403}, (role, method, path, response.text)
        elif code not in {403, 404}:
            wrong.append((method, path, code))
    assert wrong == []
    ended = await api.post("/api/v1/auth/logout")
    assert ended.status_code == (401 if role is None else 204), ended.text


async def test_refusals_are_audited_without_values(
    services: Services, staff: Staff, database_url: str
) -> None:
    """A refused role leaves a denied event naming the route's resource, never a value."""
    from tests.dbutil import audit_rows, last_seq

    before = await last_seq(database_url)
    sales = await staff.login(await staff.create("sales", "north"))
    response = await sales.post(f"{API}/segments", json={"name": "Secret list"})
    assert response.status_code == 403
    rows = [r for r in await audit_rows(database_url, before) if r["outcome"] == "denied"]
    assert rows, "the refusal was not audited"
    assert "Secret list" not in json.dumps(rows, default=str)


def test_matrix_roles_are_the_policy_roles(services: Services) -> None:
    from policy.enforcer import ROLES as POLICY_ROLES

    assert set(ROLES) == set(POLICY_ROLES)
    assert all(default_purpose(services, role) in PURPOSES for role in ROLES)
