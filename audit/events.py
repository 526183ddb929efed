"""The audit event schema. Field *names* and record ids only; a value never goes in here.

Events are built by one builder, ``audit_event``: nothing outside ``audit/`` and the
gateway calls ``AuditEvent(...)`` itself (tests/test_code_shape.py scans for it). The
builder keeps the shape every reader of the trail relies on: subject ids and field names
once each, in the order given (no empty ids); a refusal or an error always names its
reason; ``detail`` is copied, so a caller changing its dict later cannot change the event.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    ERROR = "error"


class Action(enum.StrEnum):
    READ = "read"
    LIST = "list"
    SEARCH = "search"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"
    LOGIN = "login"
    LOGOUT = "logout"
    USER_CREATE = "user.create"


@dataclass(frozen=True)
class AuditEvent:
    actor_id: str  # "user:12", "system:demo-seed", "anonymous"
    actor_role: str
    action: str
    resource_type: str
    outcome: Outcome
    purpose: str = ""
    resource_id: str | None = None
    subject_ids: tuple[str, ...] = ()  # pseudonymous data-subject ids, never names
    fields: tuple[str, ...] = ()
    reason: str = ""  # short machine code ("field_not_readable"), never free text from input
    request_id: str = ""
    detail: dict[str, int | str] = field(default_factory=dict)  # counts, page numbers


def audit_event(
    *,
    actor_id: str,
    actor_role: str,
    action: str,
    resource_type: str,
    outcome: Outcome = Outcome.ALLOWED,
    purpose: str = "",
    resource_id: str | None = None,
    subject_ids: Iterable[str] = (),
    fields: Iterable[str] = (),
    reason: str = "",
    request_id: str = "",
    detail: Mapping[str, int | str] | None = None,
) -> AuditEvent:
    """The one way to build an event (``AuditLog.append`` writes it)."""
    if outcome is not Outcome.ALLOWED and not reason:
        reason = outcome.value  # a refusal or failure is never silent about itself
    return AuditEvent(
        actor_id=actor_id,
        actor_role=actor_role,
        action=action,
        resource_type=resource_type,
        outcome=outcome,
        purpose=purpose,
        resource_id=resource_id,
        subject_ids=tuple(dict.fromkeys(s for s in subject_ids if s)),
        fields=tuple(dict.fromkeys(fields)),
        reason=reason,
        request_id=request_id,
        detail=dict(detail or {}),
    )
