"""Logs are a PII surface: run a realistic scenario and prove no customer data reached them.

Everything the root logger emits (the handler ``configure_logging`` installs, with the
same formatter) is captured while a customer is created, searched for, read, updated with
bad input, looked up by a query string, and while someone fails to log in with a
customer's address. None of the customer's values may appear in the captured text.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from httpx import Response
from litestar import Litestar

from server.logs import REDACTED, SENSITIVE_KEYS, get_logger, redact_personal_data
from tests.conftest import Staff, contact_values

CUSTOMER = {
    "first_name": "Wilhelmina",
    "last_name": "Quarterfield-Oyelaran",
    "email": "wilhelmina.quarterfield@example.net",
    "phone": "+44 20 7946 0777",
    "job_title": "Lighthouse keeper",
    "birth_date": "1971-04-03",
    "address_line": "7 Harbour Steps",
    "city": "Tobermory",
    "postcode": "PA75 6NR",
    "notes": "Allergic to peanuts, call after six",
}
# Every way the values above could show up: as typed, normalised, or in part.
NEEDLES = [
    *CUSTOMER.values(),
    "+442079460777",
    "7946 0777",
    "wilhelmina",
    "quarterfield",
    "oyelaran",
    "tobermory",
    "peanuts",
    "1971-04-03",
]
BAD_EMAIL = "wilhelmina.quarterfield.at.example.net"
TYPED_PASSWORD = "Quarterfield-guess-2024"

# The test's own HTTP client logs each URL it requests; that is the client, not the server.
CLIENT_LOGGERS = ("httpx", "httpcore")


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


def _configured_handler() -> logging.Handler:
    handlers = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]
    assert len(handlers) == 1, logging.getLogger().handlers
    return handlers[0]


@pytest.fixture
def captured(app: Litestar) -> Iterator[Captured]:
    """Everything the root logger writes, formatted exactly as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_configured_handler().formatter)
    handler.addFilter(lambda record: not record.name.startswith(CLIENT_LOGGERS))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)


def assert_no_customer_data(text: str) -> None:
    lowered = text.lower()
    leaked = [needle for needle in NEEDLES if needle.lower() in lowered]
    assert not leaked, f"customer data in logs: {leaked}"
    assert BAD_EMAIL not in lowered
    assert TYPED_PASSWORD.lower() not in lowered


async def test_customer_data_never_reaches_the_logs(
    staff: Staff, app: Litestar, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await staff.login(await staff.create("admin"))
    responses: list[Response] = []

    async def call(method: str, url: str, **kwargs: Any) -> Response:
        response = await admin.request(method, url, **kwargs)
        responses.append(response)
        return response

    created = await call("POST", "/api/v1/contacts", json=contact_values(**CUSTOMER))
    assert created.status_code == 201, created.text
    url = f"/api/v1/contacts/{created.json()['id']}"
    search = "/api/v1/contacts/search"
    assert (await call("POST", search, json={"email": CUSTOMER["email"]})).json()["total"] == 1
    assert (await call("POST", search, json={"phone": "020 7946 0777"})).json()["total"] == 1
    assert (await call("POST", search, json={"name": "Wilhelmina quarter"})).json()["total"] == 1
    everything = await call("POST", "/api/v1/search", json={"q": "Quarterfield-Oyelaran"})
    assert everything.json()["groups"][0]["total"] == 1
    assert (await call("GET", url)).json()["email"] == CUSTOMER["email"]
    assert (await call("GET", url, params={"fields": "email,phone"})).status_code == 200
    assert (await call("PATCH", url, json={"email": BAD_EMAIL})).status_code == 400
    assert (await call("PATCH", url, json={"notes": CUSTOMER["notes"] * 200})).status_code == 400
    assert (await call("PATCH", url, json={"city": "Portree"})).status_code == 200
    # Someone puts personal data in a query string: refused, and the query is not logged.
    by_query = await call("GET", "/api/v1/contacts", params={"email": CUSTOMER["email"]})
    assert by_query.status_code == 400
    stranger = await call(
        "POST",
        "/api/v1/auth/login",
        json={"email": CUSTOMER["email"], "password": TYPED_PASSWORD},
    )
    assert stranger.status_code == 401

    # An unexpected error whose message quotes customer data: logged by type and place only.
    async def broken_read(*args: Any, **kwargs: Any) -> Any:
        raise ValueError(f"cannot decode {CUSTOMER['email']} for {CUSTOMER['last_name']}")

    monkeypatch.setattr(app.state.services.gateway, "read", broken_read)
    crashed = await call("GET", url)
    assert crashed.status_code == 500
    assert_no_customer_data(crashed.text)

    assert_no_customer_data(captured.text)

    lines = captured.lines()  # every line is one JSON object
    access = [line for line in lines if line.get("event") == "request"]
    staff_login, access = access[0], access[1:]
    assert (staff_login["path"], staff_login["status"]) == ("/api/v1/auth/login", 200)
    assert len(access) == len(responses)
    for line, response in zip(access, responses, strict=True):
        assert line["request_id"] == response.headers["x-request-id"]
        assert line["status"] == response.status_code
        assert line["method"] == response.request.method
        assert line["path"] == response.request.url.path  # never the query string
        assert line["logger"] == "consentry.access"
        assert line["level"] == "info"
        assert "timestamp" in line
    assert all(
        line.get("request_id") for line in lines if str(line.get("logger")).startswith("consentry")
    )
    refusals = [line for line in lines if line.get("event") == "refused"]
    assert {line["status"] for line in refusals} == {400}
    [crash] = [line for line in lines if line.get("event") == "unhandled exception"]
    assert crash["error"] == "ValueError"
    assert crash["request_id"] == crashed.headers["x-request-id"]
    assert crash["level"] == "error"


def test_redaction_blanks_personal_and_secret_keys(captured: Captured) -> None:
    log = get_logger("consentry.test")
    log.info(
        "careless",
        email="a@b.c",
        password="hunter2hunter2",
        first_name="Wilhelmina",
        PHONE="+44 20 7946 0777",
        session="s3ss10n-t0k3n",
        token="t0k3n",
        values={"city": "Tobermory"},
        body=b"peanuts",
        status=200,
        path="/api/v1/contacts",
    )
    [line] = [line for line in captured.lines() if line["event"] == "careless"]
    for key in ("email", "password", "first_name", "PHONE", "session", "token", "values", "body"):
        assert line[key] == REDACTED, key
    assert line["status"] == 200
    assert line["path"] == "/api/v1/contacts"
    assert_no_customer_data(captured.text)
    for secret in ("a@b.c", "hunter2", "s3ss10n", "t0k3n"):
        assert secret not in captured.text


def test_every_encrypted_field_name_is_a_redacted_key() -> None:
    from server.datamap import RECORD_TYPES

    encrypted = {f.name for rt in RECORD_TYPES.values() for f in rt.fields if f.encrypted}
    assert encrypted <= SENSITIVE_KEYS
    assert {"email", "phone", "password", "cookie", "authorization"} <= SENSITIVE_KEYS
    event = redact_personal_data(None, "info", {"event": "x", "Email": "a@b.c", "seq": 3})
    assert event == {"event": "x", "Email": REDACTED, "seq": 3}


def test_redaction_reaches_into_nested_structures(captured: Captured) -> None:
    get_logger("consentry.test").info(
        "nested", record={"email": "nested.person@example.org", "rows": [{"phone": "+441"}]}
    )
    text = captured.text
    assert "nested.person@example.org" not in text
    assert "+441" not in text
    assert "rows" in text  # structure kept, only the values under personal keys blanked


async def test_one_time_reset_tokens_never_reach_the_access_log(
    app: Litestar, staff: Staff, captured: Captured
) -> None:
    from httpx import ASGITransport, AsyncClient

    admin = await staff.create("admin")
    user = await staff.create("sales")
    token = await staff.services.accounts.issue_reset_link(user.user_id, by=admin)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        page = await client.get(f"/reset/{token}")
    assert page.status_code == 200
    assert token not in captured.text
    assert "/reset/[token]" in captured.text


async def test_api_token_secrets_and_consent_evidence_never_reach_the_logs(
    staff: Staff, app: Litestar, captured: Captured, services: Any
) -> None:
    """Issue 19: a bearer secret (good, revoked or wrong) and a website's consent evidence
    (the visitor's address and browser) are never logged."""
    from server.auth.tokens import TokenKind
    from tests.conftest import http_client

    admin = await staff.create("admin")
    made = await services.tokens.create(
        admin, TokenKind.SERVICE, name="Website form", role="admin",
        purposes=["customer_relationship", "marketing_email"],
    )  # fmt: skip
    notice = await services.consent.publish_notice("Newsletter", "Monthly news.", by="user:1")
    headers = {"Authorization": f"Bearer {made.secret}"}
    async with http_client(app) as client:
        created = await client.post(
            "/api/v1/contacts", json=contact_values(**CUSTOMER), headers=headers
        )
        assert created.status_code == 201, created.text
        granted = await client.post(
            f"/api/v1/contacts/{created.json()['id']}/consent",
            json={"action": "grant", "purpose": "marketing_email", "source": "web_form",
                  "notice_version": notice.version,
                  "evidence": {"ip": "198.51.100.77", "user_agent": "Tobermory-Browser/9"}},
            headers=headers,
        )  # fmt: skip
        assert granted.status_code == 201, granted.text
        await services.tokens.revoke(admin, made.info.id)
        assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
        wrong = {"Authorization": "Bearer cst_Quarterfield-guess-2024"}
        assert (await client.get("/api/v1/auth/me", headers=wrong)).status_code == 401
    text = captured.text
    assert "/api/v1/contacts" in text  # the requests were logged ...
    assert made.secret not in text  # ... their tokens not
    assert made.secret[4:20] not in text
    assert "198.51.100.77" not in text
    assert_no_customer_data(text)
