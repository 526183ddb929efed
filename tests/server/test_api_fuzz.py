"""Property-based run over the whole OpenAPI document (schemathesis + hypothesis).

Issue 14, item 8: keep the probe's holes closed. Every operation the app documents is
called with generated requests - valid ones and schema-violating ones - as an anonymous
visitor, an admin (logged in with TOTP) and a sales rep, in process (httpx's
ASGITransport, as ``tests/conftest.py`` does; no network), on whichever engine the suite
runs on. A case fails on any 5xx and on any answer the document does not describe (an
undeclared status code, content type or header, or a body that does not match its schema).
Half the cases of an operation with ids in its path use the ids of real records (a
contact, a deal, a segment, a merge, ... made by the sales rep), so updates, deletes and
conversions reach the database instead of stopping at 404. Record bodies are described
field by field from the data map (``ContactCreate``, ``ContactUpdate``, ...,
server/records/bodies.py), so the negative cases break their rules and must be refused;
list filters and segment filters are not in the document, and a schema cannot name the
values that broke the API before, so half the cases of record and segment writes and of
list filters are shaped from the data map's field names, with arbitrary text (NUL
included), numbers and real ids as values.

Deterministic (``derandomize``: the same cases on every run, no example database) and
bounded (``MAX_EXAMPLES`` per operation), so CI can afford it on both engines.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import schemathesis
from httpx import AsyncClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.app import ROUTE_HANDLERS, openapi_config
from server.datamap import RECORD_TYPES, Field, RecordType
from server.leads.webform import HONEYPOT
from server.services import service_dependencies
from server.web import document_error_answers
from tests.conftest import Staff, contact_values, http_client
from tests.server.crm.test_crm_records import case_values, deal_values, interaction_values
from tests.server.crm.test_tasks_notes import task_values
from tests.server.leads.test_leads import lead_values
from tests.server.test_api import organization_values

MAX_EXAMPLES = 8  # per operation, each sent three times: 1-2.5 minutes an engine
BASE_URL = "http://testserver"
METHODS = ("get", "put", "post", "patch", "delete")
# Checks that compare one answer with the document. Not run, on purpose:
# - positive_data_acceptance: a valid-looking body still meets rules the document cannot
#   state (unknown ids, policy, consent), so a 4xx for schema-valid data is correct here;
# - use_after_free, ensure_resource_availability: stateful sequences, not single calls;
# - ignored_auth, unsupported_method, missing_required_header: they send extra requests
#   through schemathesis's own transport (the network), not this in-process client;
# - max_response_time: timing on a shared 2-core machine is not a property of the code.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# The public lead form answers a filled honeypot field the same way whatever else the body
# holds (202, nothing stored): a bot must not learn what the form checks. Such a case is not
# "invalid data accepted", so that one check is left out for it (server/leads/webform.py).
HONEYPOT_OPERATION = ("POST", "/api/v1/public/leads")


def checks_for(method: str, path: str, case: Any) -> list[Any]:
    body = case.body
    if (method, path) == HONEYPOT_OPERATION and isinstance(body, dict) and body.get(HONEYPOT):
        return [check for check in CHECKS if check is not negative_data_rejection]
    return CHECKS


HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,  # the same cases on every run and machine
    database=None,  # no example database: nothing carries over between runs
    deadline=None,  # time is bounded by max_examples, not per example
    # No shrinking: a failure reports the case as generated, and a failing run stays short.
    phases=[Phase.explicit, Phase.generate],
    # The database, the app and the logged-in clients are made once per operation and
    # shared by its examples: that is the point, and what keeps the run bounded.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document, generated as ``create_app`` does from the app's own route
    handlers, without a database (the operations must be known when tests are collected)."""
    app = Litestar(
        route_handlers=list(ROUTE_HANDLERS),
        openapi_config=openapi_config(),
        dependencies=service_dependencies(),
    )
    document_error_answers(app)
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return schema


@functools.cache
def api_schema() -> Any:
    return schemathesis.openapi.from_dict(document())


OPERATIONS = [
    (method.upper(), path)
    for path, operations in document()["paths"].items()
    for method in operations
    if method in METHODS
]


async def created(client: AsyncClient, url: str, body: dict[str, Any]) -> str:
    response = await client.post(url, json=body)
    assert response.status_code == 201, response.text
    record_id: str = response.json()["id"]
    return record_id


async def real_ids(admin: AsyncClient, sales: AsyncClient) -> dict[str, str]:
    """One record of each kind, keyed by the collection its path starts with; the sales
    rep owns the customer records, so both staff callers can reach them."""
    api = "/api/v1"
    rep_contact = {k: v for k, v in contact_values().items() if k != "birth_date"}
    contact = await created(sales, f"{api}/contacts", rep_contact)
    other = await created(sales, f"{api}/contacts", {**rep_contact, "email": None})
    ids = {
        "contacts": contact,
        "organizations": await created(sales, f"{api}/organizations", organization_values()),
        "leads": await created(sales, f"{api}/leads", lead_values()),
        "deals": await created(sales, f"{api}/deals", deal_values(contact)),
        "interactions": await created(sales, f"{api}/interactions", interaction_values(contact)),
        "cases": await created(admin, f"{api}/cases", case_values(contact)),
        "tasks": await created(sales, f"{api}/tasks", task_values(contact_id=contact)),
    }
    ids["notes"] = await created(
        sales,
        f"{api}/notes",
        {"body": "Call back", "record_type": "deal", "record_id": ids["deals"]},
    )
    ids["segments"] = await created(admin, f"{api}/segments", {"name": "All", "filters": {}})
    campaign = {"name": "Calls", "purpose": "marketing_phone", "segment_id": ids["segments"]}
    ids["campaigns"] = await created(admin, f"{api}/campaigns", campaign)
    merge = await sales.post(
        f"{api}/contacts/merge", json={"survivor_id": other, "merged_id": contact}
    )
    assert merge.status_code == 201, merge.text
    ids["merges"] = merge.json()["id"]
    ids["contacts"] = other  # the merged contact is hidden until the merge is undone
    # Configuration families (issue 19, item 2): a staff account, a pipeline and its first
    # stage, an import job (a dry run: it creates nothing).
    account = await admin.post(
        f"{api}/staff", json={"email": "fuzz.new@example.org", "role": "sales"}
    )
    assert account.status_code == 201, account.text
    ids["staff"] = str(account.json()["account"]["id"])
    pipeline = await admin.post(f"{api}/pipelines", json={"name": "Fuzzed"})
    assert pipeline.status_code == 201, pipeline.text
    ids["pipelines"] = pipeline.json()["id"]
    ids["stages"] = pipeline.json()["stages"][0]["id"]
    job = await admin.post(
        f"{api}/imports",
        json={
            "record_type": "contact",
            "csv": "first_name,last_name\nAda,Lovelace\n",
            "dry_run": True,
        },
    )
    assert job.status_code == 202, job.text
    ids["imports"] = job.json()["id"]
    # Issue 20: a saved report shared with all staff, so both callers reach it.
    report = await sales.post(
        f"{api}/reports/saved",
        json={
            "name": "By stage",
            "definition": {"record_type": "deal", "group_by": ["stage"]},
            "shared_with": "all",
        },
    )
    assert report.status_code == 201, report.text
    ids["reports"] = report.json()["id"]
    return ids


def path_ids(path: str, ids: dict[str, str]) -> dict[str, str]:
    """Real values for the id parameters of ``path`` (``/api/v1/<collection>/{x_id}...``)."""
    collection = path.split("/")[3]
    names = [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
    if collection not in ids:  # requests, notices: generated ids only (404 is the answer)
        return {}
    # ``stage_id`` is a stage's, ``pipeline_id`` a pipeline's; ``record_id``, ``job_id`` and
    # ``user_id`` are ids of the path's collection.
    return {name: ids.get(name.removesuffix("_id") + "s", ids[collection]) for name in names}


# Values that broke the API before (issue 14), offered to every field next to the random
# ones: a few examples an operation rarely stumble on them by chance.
HOSTILE = st.sampled_from(["a\x00b", "x" * 70_000, 2**63, -(2**63) - 1, "9" * 40, "", " "])


def field_values(spec: Field, ids: dict[str, str]) -> st.SearchStrategy[Any]:
    """Anything a client might put in a field: its own choices, text, numbers, real ids,
    and the known-hostile values."""
    anything = HOSTILE | st.none() | st.text(max_size=40) | st.integers() | st.booleans()
    known = list(spec.choices) + list(ids.values())
    return (st.sampled_from(known) | anything) if known else anything


def record_body(rt: RecordType, ids: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={f.name: field_values(f, ids) for f in rt.fields})


def list_filters(rt: RecordType) -> st.SearchStrategy[dict[str, Any]]:
    names = ["owner_id", "team", *(f.name for f in rt.fields if f.filterable)]
    hostile = st.sampled_from(["a\x00b", str(2**63), "9" * 40, "", " "])  # short: a URL
    values = hostile | st.text(max_size=20)
    return st.fixed_dictionaries({}, optional=dict.fromkeys(names, values))


def segment_body(ids: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    contact = RECORD_TYPES["contact"]
    filters = st.fixed_dictionaries(
        {},
        optional={
            f.name: st.lists(field_values(f, ids), max_size=3) | field_values(f, ids)
            for f in contact.fields
        },
    )
    name = st.text(max_size=40) | st.none()
    return st.fixed_dictionaries(
        {}, optional={"name": name, "description": name, "filters": filters}
    )


def shaped_input(method: str, path: str, ids: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``as_strategy``: a data-map shaped body or list filters, when
    the operation takes one (``{}`` otherwise)."""
    parts = path.strip("/").split("/")  # api, v1, collection, ...
    if len(parts) < 3:
        return {}  # /health, /ready
    if parts[2] == "segments" and method in ("POST", "PATCH") and len(parts) <= 4:
        return {"body": segment_body(ids)}
    rt = RECORD_TYPES.get(parts[2].removesuffix("s"))
    if rt is None or len(parts) > 4:
        return {}
    if method == "GET" and len(parts) == 3:
        return {"query": list_filters(rt)}
    if (method == "POST" and len(parts) == 3) or method == "PATCH":
        return {"body": record_body(rt, ids)}
    return {}


@pytest.fixture
async def callers(app: Litestar, staff: Staff) -> AsyncIterator[dict[str, AsyncClient]]:
    anonymous = http_client(app)
    yield {
        "anonymous": anonymous,
        "admin": await staff.login(await staff.create("admin")),
        "sales": await staff.login(await staff.create("sales")),
    }
    await anonymous.aclose()


@pytest.fixture
async def ids_in_path(callers: dict[str, AsyncClient], path: str) -> dict[str, str]:
    """Real ids for this operation's path (none when it has no ids: nothing is made)."""
    if "{" not in path:
        return {}
    return path_ids(path, await real_ids(callers["admin"], callers["sales"]))


def request_kwargs(case: Any) -> dict[str, Any]:
    """schemathesis's requests-style arguments, spelled for httpx."""
    kwargs = dict(case.as_transport_kwargs(base_url=BASE_URL))
    kwargs.pop("cookies", None)  # nothing in the document; the clients carry the session
    data = kwargs.pop("data", None)
    if isinstance(data, bytes | str):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    return kwargs


def test_the_document_lists_every_api_route() -> None:
    assert len(OPERATIONS) > 60, OPERATIONS
    assert ("POST", "/api/v1/auth/login") in OPERATIONS


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@HYPOTHESIS
@given(data=st.data())
async def test_no_generated_request_gets_a_5xx_or_an_undocumented_answer(
    callers: dict[str, AsyncClient],
    ids_in_path: dict[str, str],
    method: str,
    path: str,
    data: st.DataObject,
) -> None:
    operation = api_schema()[path][method]
    mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
    real = ids_in_path if ids_in_path and data.draw(st.booleans(), label="real ids") else None
    shaped = shaped_input(method, path, ids_in_path)
    fixed: dict[str, Any] = {}
    if shaped and data.draw(st.booleans(), label="data-map shaped"):
        mode = GenerationMode.POSITIVE  # the shaped part is fixed, so nothing else to negate
        fixed = {key: data.draw(strategy, label=key) for key, strategy in shaped.items()}
    case = data.draw(
        operation.as_strategy(generation_mode=mode, path_parameters=real, **fixed), label="case"
    )
    for who, client in callers.items():
        response = await client.request(**request_kwargs(case))
        try:
            case.validate_response(response, checks=checks_for(method, path, case))
        except Exception as failure:
            failure.add_note(f"caller: {who}")
            raise
