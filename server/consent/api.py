"""Consent over REST: the purposes registry and notices, a person's state and ledger,
recording what they said (grant, withdrawal, objection) with its evidence, and starting a
double opt-in.

Thin routes over :class:`ConsentEngine`, which validates and audits every change in the
transaction that makes it. The person is always found through the gateway: a contact the
caller can see (a read of its ids only, under the call's purpose, audited), so a subject
id cannot be guessed at. The policy decides who may (``consent read | record | export``),
and an API token may only act for its own purposes: recording consent for
``marketing_email`` needs a token that has that purpose.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from server.consent.model import DIRECT_MARKETING, ConsentError, ConsentRecord, Notice
from server.consent.service import ConsentEngine
from server.gateway import Actor, Conflict, InvalidInput, NotFound, Record
from server.web import (
    client_address_of,
    policy_guard,
    provide_actor,
    provide_identity,
    purpose_of,
    require_right,
    services_of,
)

RESOURCE = "consent"
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
Reference = Annotated[
    str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")
]


class PurposeOut(msgspec.Struct):
    name: str
    legal_basis: str
    description: str
    channels: list[str]
    retention: str
    direct_marketing: bool
    active: bool


class NoticeSummary(msgspec.Struct):
    version: int
    title: str
    content_hash: str
    published_at: dt.datetime


class NoticeOut(msgspec.Struct):
    version: int
    title: str
    text: str
    content_hash: str
    published_at: dt.datetime


class ConsentStateOut(msgspec.Struct):
    purpose: str
    channel: str
    state: str  # granted | withdrawn | expired | objected | lifted
    since: dt.datetime
    expires_at: dt.datetime | None


class PersonConsent(msgspec.Struct):
    contact_id: str
    subject_id: str
    state: list[ConsentStateOut]


class Evidence(msgspec.Struct, forbid_unknown_fields=True):
    """What shows how and where the person said it. Free text is kept encrypted under
    the person's key; ``ip`` is replaced by a keyed hash and never stored."""

    form_id: Reference | None = None
    reference: Reference | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=400)] | None = None
    ip: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    requested_at: Annotated[str, msgspec.Meta(max_length=40)] | None = None

    def as_mapping(self) -> dict[str, str]:
        return {k: v for k in self.__struct_fields__ if (v := getattr(self, k)) is not None}


class ConsentChange(msgspec.Struct, forbid_unknown_fields=True):
    """One thing the person said. ``grant`` needs the privacy notice they were shown;
    ``object`` takes ``purpose`` = ``direct_marketing`` (Art. 21(2)) or a purpose resting
    on legitimate interests or a public task (Art. 21(1))."""

    action: Literal["grant", "withdraw", "object"]
    purpose: Code
    source: Literal["web_form", "phone", "staff", "import", "email_link", "portal"]
    channel: Code | None = None
    notice_version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    evidence: Evidence | None = None


class OptInStart(msgspec.Struct, forbid_unknown_fields=True):
    """E-mail the person a confirmation link; consent is recorded only when they click."""

    purpose: Code
    notice_version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    source: Literal["web_form", "phone", "staff", "import", "portal"] = "web_form"
    channel: Code | None = None
    evidence: Evidence | None = None


class ConsentEventOut(msgspec.Struct):
    id: int
    subject_id: str
    purpose: str
    channel: str
    kind: str
    source: str
    notice_version: int | None
    actor: str
    occurred_at: dt.datetime
    expires_at: dt.datetime | None


class ChangeOut(msgspec.Struct):
    recorded: bool  # false: a withdrawal of nothing in force records nothing
    event: ConsentEventOut | None


class OptInOut(msgspec.Struct):
    mail_status: str
    expires_at: dt.datetime


class LedgerEvent(msgspec.Struct):
    id: int
    purpose: str
    channel: str
    kind: str
    source: str
    evidence: dict[str, Any]
    notice_version: int | None
    actor: str
    occurred_at: str
    expires_at: str | None
    notice: dict[str, Any] | None = None


class LedgerState(msgspec.Struct):
    purpose: str
    channel: str
    state: str
    since: str
    expires_at: str | None


class Ledger(msgspec.Struct):
    """The proof of consent (Art. 7(1)): every ledger event with its evidence and the
    notice it referred to, and the current state."""

    subject_id: str
    generated_at: str
    events: list[LedgerEvent]
    state: list[LedgerState]


def _event_out(record: ConsentRecord) -> ConsentEventOut:
    return ConsentEventOut(
        record.id,
        record.subject_id,
        record.purpose,
        record.channel,
        record.kind.value,
        record.source,
        record.notice_version,
        record.actor_id,
        record.occurred_at,
        record.expires_at,
    )


def _notice_summary(notice: Notice) -> NoticeSummary:
    return NoticeSummary(notice.version, notice.title, notice.content_hash, notice.published_at)


def _refused(exc: ConsentError) -> InvalidInput | Conflict:
    message = exc.message
    if exc.code in {"purpose_inactive"}:
        return Conflict(message)
    return InvalidInput(message, problems={exc.code: message})


async def _person(
    request: Request[Any, Any, Any],
    actor: Actor,
    record_id: FromPath[UUID],
    fields: tuple[str, ...] = (),
) -> Record:
    """The contact, as the caller may see it (only ``fields`` read; audited)."""
    gateway = services_of(request).gateway
    return await gateway.read(
        actor, "contact", str(record_id), purpose=purpose_of(request), fields=fields
    )


class ConsentRegistryRoutes(Controller):
    path = "/api/v1/consent"
    tags = ["consent"]
    guards = [policy_guard(RESOURCE, "read")]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get("/purposes")
    async def purposes(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> list[PurposeOut]:
        """The purposes registry: what each purpose is, its legal basis and channels."""
        await require_right(request, actor, RESOURCE, "read")
        return [
            PurposeOut(
                p.name,
                p.legal_basis.value,
                p.description,
                list(p.channels),
                p.retention,
                p.direct_marketing,
                p.active,
            )
            for p in await consent.purposes()
        ]

    @get("/notices")
    async def notices(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> list[NoticeSummary]:
        """The published privacy notices, newest first (the text: one notice's own URL)."""
        await require_right(request, actor, RESOURCE, "read")
        engine = consent
        current = await engine.current_notice()
        found: list[NoticeSummary] = []
        for version in range(current.version if current else 0, 0, -1):
            notice = await engine.notice(version)
            if notice is not None:
                found.append(_notice_summary(notice))
        return found

    @get("/notices/{version:int}")
    async def notice(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        version: FromPath[int],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> NoticeOut:
        """One privacy notice, with its full text and content hash."""
        await require_right(request, actor, RESOURCE, "read")
        found = await consent.notice(version) if 0 < version < 2**31 else None
        if found is None:
            raise NotFound("no privacy notice with this version")
        return NoticeOut(
            found.version, found.title, found.text, found.content_hash, found.published_at
        )


class PersonConsentRoutes(Controller):
    path = "/api/v1/contacts/{record_id:uuid}/consent"
    tags = ["consent"]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get("/", guards=[policy_guard(RESOURCE, "read")])
    async def state(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        record_id: FromPath[UUID],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> PersonConsent:
        """The person's current consent state per purpose and channel, objections included."""
        await require_right(request, actor, RESOURCE, "read", audit_allowed=False)
        person = await _person(request, actor, record_id)
        rows = await consent.state(person.subject_id)
        return PersonConsent(
            person.id,
            person.subject_id,
            [
                ConsentStateOut(s.purpose, s.channel, s.state.value, s.since, s.expires_at)
                for s in rows
            ],
        )

    @get("/ledger", guards=[policy_guard(RESOURCE, "export")])
    async def ledger(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        record_id: FromPath[UUID],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> Ledger:
        """The proof of consent: the whole ledger with evidence and notice texts (audited
        as ``consent.export``)."""
        await require_right(request, actor, RESOURCE, "export", audit_allowed=False)
        person = await _person(request, actor, record_id)
        bundle = await consent.proof(
            person.subject_id, actor_id=actor.id, actor_role=actor.role, request_id=actor.request_id
        )
        return msgspec.convert(bundle, Ledger)

    @post("/", status_code=HTTP_201_CREATED, guards=[policy_guard(RESOURCE, "record")])
    async def record(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        record_id: FromPath[UUID],
        data: JSONBody[ConsentChange],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> ChangeOut:
        """Record a grant, a withdrawal or an objection the person gave, with its evidence
        (``ip`` is kept as a keyed hash only). A token may record only for its purposes."""
        purpose = "marketing" if data.purpose == DIRECT_MARKETING else data.purpose
        await require_right(
            request, actor, RESOURCE, "record", purpose=purpose, audit_allowed=False
        )
        person = await _person(request, actor, record_id)
        engine = consent
        evidence = data.evidence.as_mapping() if data.evidence else {}
        common: dict[str, Any] = {
            "source": data.source,
            "actor_id": actor.id,
            "actor_role": actor.role,
            "evidence": evidence,
            "request_id": actor.request_id,
        }
        try:
            if data.action == "grant":
                if data.notice_version is None:
                    raise InvalidInput(
                        "a grant needs notice_version: the privacy notice the person saw",
                        problems={"notice_version": "required for a grant"},
                    )
                done: ConsentRecord | None = await engine.grant(
                    person.subject_id,
                    data.purpose,
                    data.channel,
                    notice_version=data.notice_version,
                    **common,
                )
            elif data.action == "withdraw":
                done = await engine.withdraw(
                    person.subject_id, data.purpose, data.channel, **common
                )
            else:
                done = await engine.object(person.subject_id, data.purpose, **common)
        except ConsentError as exc:
            raise _refused(exc) from None
        return ChangeOut(done is not None, None if done is None else _event_out(done))

    @post(
        "/double-opt-in", status_code=HTTP_202_ACCEPTED, guards=[policy_guard(RESOURCE, "record")]
    )
    async def double_opt_in(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        record_id: FromPath[UUID],
        data: JSONBody[OptInStart],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> OptInOut:
        """E-mail the person a confirmation link for one purpose (the contact's e-mail,
        read through the gateway and never stored with the request). Consent is recorded
        when they confirm, with ``double_opt_in`` evidence."""
        await require_right(
            request, actor, RESOURCE, "record", purpose=data.purpose, audit_allowed=False
        )
        person = await _person(request, actor, record_id, fields=("email",))
        address = person.values.get("email")
        if not isinstance(address, str) or not address:
            raise Conflict("this contact has no e-mail address to confirm with")
        evidence = data.evidence.as_mapping() if data.evidence else {}
        if "ip" not in evidence and data.source == "web_form":
            evidence["ip"] = client_address_of(request)
        try:
            sent = await consent.request_double_opt_in(
                person.subject_id,
                address,
                data.purpose,
                data.channel or "email",
                notice_version=data.notice_version,
                source=data.source,
                evidence=evidence,
                actor_id=actor.id,
                actor_role=actor.role,
                request_id=actor.request_id,
            )
        except ConsentError as exc:
            raise _refused(exc) from None
        return OptInOut(sent.mail_status, sent.expires_at)
