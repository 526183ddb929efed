"""The audit event of an allowed gateway operation, built in one place.

The gateway, erasure and merges each record what they did with the same fields: who, under
which role and purpose, on which record and people, touching which fields. Denials are
built by ``GatewayCore.deny``. Values never go in: only ids, field names and counts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from audit.events import AuditEvent, Outcome, audit_event
from server.gateway.actor import Actor


def allowed_event(
    actor: Actor,
    action: str,
    resource_type: str,
    purpose: str,
    subject_ids: Iterable[str],
    *,
    record_id: str | None = None,
    fields: Collection[str] = (),
    reason: str = "allowed",
    detail: dict[str, int | str] | None = None,
) -> AuditEvent:
    return audit_event(
        actor_id=actor.id,
        actor_role=actor.role,
        action=action,
        resource_type=resource_type,
        outcome=Outcome.ALLOWED,
        purpose=purpose,
        resource_id=record_id,
        subject_ids=tuple(dict.fromkeys(subject_ids)),
        fields=tuple(sorted(set(fields))),
        reason=reason,
        request_id=actor.request_id,
        detail=detail or {},
    )
