"""The PostgreSQL role the application connects as: everything it needs, nothing more on
the evidence tables.

Triggers already reject UPDATE and DELETE on the audit tables, but whoever owns a table can
drop its triggers. So in production the server does not connect as the owner: it connects
as an application role that may only SELECT and INSERT on the append-only tables (and has
full DML elsewhere). Rewriting the audit log then needs the owner's credentials, which the
application never holds. Migrations run as the owner; `consentry migrate` re-grants after
migrating when ``CONSENTRY_APP_ROLE`` is set, so tables added later are covered.
"""

from __future__ import annotations

import re
from typing import Any

from piccolo.engine.base import Engine

# Tables that are evidence: the application may add rows and read them, never change them.
APPEND_ONLY_TABLES: tuple[str, ...] = (
    "audit",
    "audit_checkpoint",
    "privacy_notice",  # consent evidence: server.consent
    "consent_event",
    "dsr_request_event",  # request history: server.dsr
)

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class RoleSetupError(Exception):
    """The role cannot be set up; the message says why (never a password)."""


def _quoted(role: str) -> str:
    if not _ROLE_NAME.fullmatch(role):
        raise RoleSetupError(
            f"{role!r} is not a plain role name (lower-case letters, digits, underscore)"
        )
    return f'"{role}"'


def grant_statements(role: str, *, create: bool) -> list[str]:
    name = _quoted(role)
    statements = []
    if create:
        statements.append(
            "DO $$ BEGIN "
            f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
            f"THEN CREATE ROLE {name} LOGIN; END IF; END $$"
        )
    evidence = ", ".join(APPEND_ONLY_TABLES)
    statements += [
        f"GRANT USAGE ON SCHEMA public TO {name}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {name}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {evidence} FROM {name}",
        f"GRANT SELECT, INSERT ON {evidence} TO {name}",
    ]
    return statements


async def grant_app_role(engine: Engine[Any], role: str, *, create: bool = False) -> None:
    """Grant ``role`` what the application needs (run as the tables' owner; idempotent)."""
    if engine.engine_type != "postgres":
        raise RoleSetupError("database roles exist on PostgreSQL only; SQLite has no users")
    for statement in grant_statements(role, create=create):
        await engine.run_ddl(statement)
