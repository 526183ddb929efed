"""Property-based run over the whole OpenAPI document (schemathesis + hypothesis).

Issue 14, item 8: keep the probe's holes closed. Every operation the app documents is
called with generated requests - valid ones and schema-violating ones - as an anonymous
visitor, an admin (logged in with TOTP) and a sales rep, in process (httpx's
ASGITransport, as ``tests/conftest.py`` does; no network), on whichever engine the suite
runs on. A case fails on any 5xx and on any answer the document does not describe (an
undeclared status code, content type or header, or a body that does not match its schema).

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
from server.web import document_error_answers
from tests.conftest import Staff, http_client

MAX_EXAMPLES = 6  # per operation, each sent three times: ~2 minutes an engine on 2 cores
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
    app = Litestar(route_handlers=list(ROUTE_HANDLERS), openapi_config=openapi_config())
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


@pytest.fixture
async def callers(app: Litestar, staff: Staff) -> AsyncIterator[dict[str, AsyncClient]]:
    anonymous = http_client(app)
    yield {
        "anonymous": anonymous,
        "admin": await staff.login(await staff.create("admin")),
        "sales": await staff.login(await staff.create("sales")),
    }
    await anonymous.aclose()


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
    callers: dict[str, AsyncClient], method: str, path: str, data: st.DataObject
) -> None:
    operation = api_schema()[path][method]
    mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
    case = data.draw(operation.as_strategy(generation_mode=mode), label="case")
    for who, client in callers.items():
        response = await client.request(**request_kwargs(case))
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as failure:
            failure.add_note(f"caller: {who}")
            raise
