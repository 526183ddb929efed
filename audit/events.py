"""The audit event schema. Field *names* and record ids only; a value never goes in here."""

from __future__ import annotations

import enum
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
