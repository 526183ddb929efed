"""The baseline Litestar application: five contact endpoints, no privacy machinery.

Each endpoint issues the same queries as Consentry's gateway minus the policy, vault and
audit ones: read = one primary-key lookup; list = a count plus a page ordered by
``created_at DESC, id``; search = an indexed equality lookup on ``email``; create = an
organization existence check plus one insert; update = lookup, organization check,
update, re-read. Every request first resolves the session cookie (hash lookup, then the
user), and every request writes one JSON access-log line with its duration, as
Consentry's ``server/requests.py`` does; the benchmark reads server-side latencies from
those lines for both servers.

Configuration (environment, set by the benchmark runner):
``BENCH_BASELINE_DATABASE_URL`` and ``BENCH_BASELINE_SESSION_SECRET``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Litestar, Request, get, patch, post
from litestar.datastructures import MutableScopeHeaders
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from bench.baseline import db
from bench.baseline.tables import (
    BaselineContact,
    BaselineOrganization,
    BaselineSession,
    BaselineUser,
    bind,
)
from bench.baseline.validation import FILTERABLE, Invalid, clean_contact, normalize_email

SESSION_COOKIE = "baseline_session"
SESSION_IDLE = dt.timedelta(minutes=60)
LAST_SEEN_RESOLUTION = dt.timedelta(minutes=1)
SEARCH_LIMIT = 20
PAGING = {"page", "page_size"}
log = logging.getLogger("baseline.access")


@dataclass(frozen=True)
class Identity:
    user_id: int
    role: str
    team: str


def token_hash(secret: bytes, token: str) -> str:
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


def contact_json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in row.items()}


def _uuid_or_404(record_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(record_id)
    except ValueError:
        raise NotFoundException("contact not found") from None


def _validated(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    try:
        return clean_contact(data, partial=partial)
    except Invalid as exc:
        raise ValidationException(
            "invalid input", extra=[{"field": k, "message": v} for k, v in exc.problems.items()]
        ) from None


async def _check_organization(cleaned: dict[str, Any]) -> None:
    org_id = cleaned.get("organization_id")
    if org_id and not await BaselineOrganization.exists().where(BaselineOrganization.id == org_id):
        raise ValidationException("organization_id: no such organization")


def access_log_middleware(app: ASGIApp) -> ASGIApp:
    """One JSON line per request with method, path, status and duration (no query)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)["x-request-id"] = request_id
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            line = {
                "event": "request",
                "request_id": request_id,
                "method": scope.get("method", ""),
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            }
            log.info(json.dumps(line))

    return middleware


class ContactRoutes(Controller):
    path = "/api/v1/contacts"

    @get("/")
    async def list_contacts(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[Identity],
        page: Annotated[int, QueryParameter(ge=1)] = 1,
        page_size: Annotated[int, QueryParameter(ge=1, le=100)] = 25,
    ) -> dict[str, Any]:
        select = BaselineContact.select()
        count = BaselineContact.count()
        for name, value in request.query_params.items():
            if name in PAGING or not value:
                continue
            if name not in FILTERABLE:
                raise ValidationException(f"{name}: not a filterable field")
            condition = getattr(BaselineContact, name) == value
            select = select.where(condition)
            count = count.where(condition)
        total = int(await count)
        rows = await (
            select.order_by(BaselineContact.created_at, ascending=False)
            .order_by(BaselineContact.id)
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        return {
            "items": [contact_json(r) for r in rows],
            "total": total,
            "page": page,
            "page_size": page_size,
            "pages": (total + page_size - 1) // page_size,
        }

    @get("/{record_id:str}")
    async def read_contact(
        self, identity: NamedDependency[Identity], record_id: FromPath[str]
    ) -> dict[str, Any]:
        rid = _uuid_or_404(record_id)
        row = await BaselineContact.select().where(BaselineContact.id == rid).first()
        if row is None:
            raise NotFoundException("contact not found")
        return contact_json(row)

    @post("/search", status_code=200)
    async def search_contacts(
        self, identity: NamedDependency[Identity], data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        value = data.get("email")
        if not isinstance(value, str) or len(value) > 320 or len(data) != 1:
            raise ValidationException('search takes exactly {"email": "..."}')
        try:
            wanted = normalize_email(value)
        except ValueError:
            raise ValidationException("email: not a valid e-mail address") from None
        rows = await (
            BaselineContact.select().where(BaselineContact.email == wanted).limit(SEARCH_LIMIT)
        )
        return {"items": [contact_json(r) for r in rows], "total": len(rows)}

    @post("/", status_code=HTTP_201_CREATED)
    async def create_contact(
        self, identity: NamedDependency[Identity], data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        cleaned = _validated(data, partial=False)
        await _check_organization(cleaned)
        now = dt.datetime.now(dt.UTC)
        row = {
            "id": uuid.uuid4(),
            "owner_id": identity.user_id,
            "team": identity.team,
            "created_at": now,
            "updated_at": now,
            **cleaned,
        }
        await BaselineContact.insert(BaselineContact(**row)).run()
        return contact_json(row)

    @patch("/{record_id:str}")
    async def update_contact(
        self,
        identity: NamedDependency[Identity],
        record_id: FromPath[str],
        data: JSONBody[dict[str, Any]],
    ) -> dict[str, Any]:
        rid = _uuid_or_404(record_id)
        found = await BaselineContact.select().where(BaselineContact.id == rid).first()
        if found is None:
            raise NotFoundException("contact not found")
        cleaned = _validated(data, partial=True)
        await _check_organization(cleaned)
        changes: dict[Any, Any] = {getattr(BaselineContact, k): v for k, v in cleaned.items()}
        changes[BaselineContact.updated_at] = dt.datetime.now(dt.UTC)
        await BaselineContact.update(changes).where(BaselineContact.id == rid)
        row = await BaselineContact.select().where(BaselineContact.id == rid).first()
        if row is None:
            raise NotFoundException("contact not found")
        return contact_json(row)


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def create_app() -> Litestar:
    """Application factory for uvicorn (``--factory``), one per worker process."""
    engine = db.engine_for_url(os.environ["BENCH_BASELINE_DATABASE_URL"])
    secret = os.environ["BENCH_BASELINE_SESSION_SECRET"].encode()
    bind(engine)
    _configure_logging()

    async def provide_identity(request: Request[Any, Any, Any]) -> Identity:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token or len(token) > 128:
            raise NotAuthorizedException("not logged in")
        session = (
            await BaselineSession.select()
            .where(BaselineSession.token_hash == token_hash(secret, token))
            .first()
        )
        now = dt.datetime.now(dt.UTC)
        if session is None or session["expires_at"] <= now:
            raise NotAuthorizedException("not logged in")
        if session["last_seen_at"] + SESSION_IDLE <= now:
            raise NotAuthorizedException("session expired")
        user = await BaselineUser.select().where(BaselineUser.id == session["user_id"]).first()
        if user is None or not user["is_active"]:
            raise NotAuthorizedException("not logged in")
        if now - session["last_seen_at"] >= LAST_SEEN_RESOLUTION:
            await BaselineSession.update({BaselineSession.last_seen_at: now}).where(
                BaselineSession.id == session["id"]
            )
        return Identity(int(user["id"]), str(user["role"]), str(user["team"]))

    async def on_startup(app: Litestar) -> None:
        await db.start(engine, prefill=True)

    async def on_shutdown(app: Litestar) -> None:
        await db.stop(engine)

    return Litestar(
        route_handlers=[health, ContactRoutes],
        dependencies={"identity": Provide(provide_identity)},
        middleware=[access_log_middleware],
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        logging_config=None,
        debug=False,
        openapi_config=None,
    )
