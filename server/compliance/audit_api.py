"""The audit trail over REST: search events, the latest signed head, inclusion and
consistency proofs, the public key and the verification status - what a SIEM or an
external auditor pulls.

For roles the policy grants ``audit read`` (search, heads, proofs, key) and ``audit
verify`` (the status); refusals are audited 403s and every answer is itself audited, so
reading the trail leaves a trace in it. Events hold no personal values (ids, field names
and codes only), so nothing here needs decrypting.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, QueryParameter

from audit import queries
from audit.signing import public_key_b64
from audit.trail import AuditTrail
from server.gateway import Actor, InvalidInput, NotFound
from server.web import policy_guard, provide_actor, provide_identity, require_right

RESOURCE = "audit"
PURPOSE = "compliance"
Code = Annotated[str | None, QueryParameter(max_length=64)]
Seq = Annotated[int, QueryParameter(ge=1, le=2**62)]


class EventOut(msgspec.Struct):
    seq: int
    ts: dt.datetime
    actor_id: str
    actor_role: str
    action: str
    resource_type: str
    resource_id: str | None
    subject_ids: list[str]
    fields: list[str]
    purpose: str
    outcome: str
    reason: str
    request_id: str
    detail: dict[str, Any]


class EventPageOut(msgspec.Struct):
    """Newest first; ``older`` / ``newer`` are the ``before_seq`` / ``after_seq`` cursors
    of the neighbouring pages (null at either end)."""

    events: list[EventOut]
    older: int | None
    newer: int | None


class HeadOut(msgspec.Struct):
    tree_size: int
    root_hash: str
    signed_at: str
    key_id: str
    signature: str


class InclusionOut(msgspec.Struct):
    event: dict[str, Any]
    leaf_index: int
    inclusion_proof: list[str]
    head: HeadOut
    verified: bool


class ConsistencyOut(msgspec.Struct):
    old: HeadOut
    new: HeadOut
    consistency_proof: list[str]
    verified: bool


class PublicKeyOut(msgspec.Struct):
    algorithm: str
    key_id: str
    public_key: str  # base64 of the 32 raw Ed25519 bytes (`consentry audit public-key`)


class VerificationOut(msgspec.Struct):
    ok: bool
    mode: str
    checked: int
    first_bad_seq: int | None
    problem: str
    unsealed: int
    heads_checked: int
    head: HeadOut | None


class AuditRoutes(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]
    guards = [policy_guard(RESOURCE, "read")]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get("/events")
    async def events(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        actor_id: Code = None,
        action: Code = None,
        resource_type: Code = None,
        resource_id: Code = None,
        purpose: Code = None,
        outcome: Code = None,
        subject_id: Code = None,
        since: FromQuery[dt.datetime | None] = None,
        until: FromQuery[dt.datetime | None] = None,
        before_seq: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
        after_seq: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
        page_size: Annotated[int, QueryParameter(ge=1, le=queries.MAX_PAGE_SIZE)] = 50,
    ) -> EventPageOut:
        """Search events (every filter optional, combined with AND; a subject id needs
        `since` and `until`, at most a report range apart). Times are ISO 8601 with zone."""
        await require_right(request, actor, RESOURCE, "read", purpose=PURPOSE)
        try:
            filters = queries.EventFilter(
                subject_id=subject_id,
                actor_id=actor_id,
                action=action,
                resource_type=resource_type,
                resource_id=resource_id,
                purpose=purpose,
                outcome=outcome,
                since=since,
                until=until,
            )
            page = await queries.search(
                filters, before_seq=before_seq, after_seq=after_seq, page_size=page_size
            )
        except queries.InvalidFilter as exc:
            raise InvalidInput("invalid audit filter", problems=exc.problems) from None
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        return EventPageOut(
            [
                EventOut(
                    e.seq,
                    e.ts,
                    e.actor_id,
                    e.actor_role,
                    e.action,
                    e.resource_type,
                    e.resource_id,
                    list(e.subject_ids),
                    list(e.fields),
                    e.purpose,
                    e.outcome,
                    e.reason,
                    e.request_id,
                    e.detail,
                )
                for e in page.events
            ],
            page.older,
            page.newer,
        )

    @get("/head")
    async def head(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        *,
        audit_trail: NamedDependency[AuditTrail],
    ) -> HeadOut:
        """The latest signed tree head (404 until the first seal)."""
        await require_right(request, actor, RESOURCE, "read", purpose=PURPOSE)
        found = await audit_trail.latest_head()
        if found is None:
            raise NotFound("no signed head yet")
        return msgspec.convert(found.to_json(), HeadOut)

    @get("/proofs/inclusion")
    async def inclusion(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        seq: Seq,
        tree_size: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
        *,
        audit_trail: NamedDependency[AuditTrail],
    ) -> InclusionOut:
        """An RFC 6962 inclusion proof of event `seq` under the latest head (or the one
        over `tree_size`), checked by the server before it is returned."""
        await require_right(request, actor, RESOURCE, "read", purpose=PURPOSE)
        try:
            proof = await audit_trail.inclusion(seq, tree_size)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        return msgspec.convert(proof, InclusionOut)

    @get("/proofs/consistency")
    async def consistency(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        old_size: Seq,
        new_size: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
        *,
        audit_trail: NamedDependency[AuditTrail],
    ) -> ConsistencyOut:
        """An RFC 6962 consistency proof between two signed heads (the newer: the latest
        unless `new_size` names one), checked before it is returned."""
        await require_right(request, actor, RESOURCE, "read", purpose=PURPOSE)
        try:
            proof = await audit_trail.consistency(old_size, new_size)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        return msgspec.convert(proof, ConsistencyOut)

    @get("/public-key")
    async def public_key(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        *,
        audit_trail: NamedDependency[AuditTrail],
    ) -> PublicKeyOut:
        """The Ed25519 key that signs tree heads: pin it in your verifier."""
        await require_right(request, actor, RESOURCE, "read", purpose=PURPOSE)
        signer = audit_trail.signer
        return PublicKeyOut("Ed25519", signer.key_id, public_key_b64(signer.public_key))

    @get("/verification", guards=[policy_guard(RESOURCE, "verify")])
    async def verification(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        *,
        audit_trail: NamedDependency[AuditTrail],
    ) -> VerificationOut:
        """Verify the trail now (incrementally, from the head this server verified last)
        and say whether it is intact, what was checked and the first bad entry if any."""
        await require_right(request, actor, RESOURCE, "verify", purpose=PURPOSE)
        report = await audit_trail.verify(incremental=True)
        head = None if report.head is None else msgspec.convert(report.head.to_json(), HeadOut)
        return VerificationOut(
            report.ok,
            report.mode,
            report.checked,
            report.first_bad_seq,
            report.problem,
            report.unsealed,
            report.heads_checked,
            head,
        )
