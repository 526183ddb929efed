"""What every part of the alerts package shares: who acts and why, what is refused, time as
stored, the one lock, and how a change the system makes to an alert is audited.

The other modules build on this one and on each other in one direction:
``model`` <- ``rules`` <- ``raised`` <- ``evaluation``, ``notification`` <- ``engine``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from audit.alert_tables import AlertCursor
from audit.events import Outcome, audit_event
from audit.log import AuditLog

PG_ALERT_LOCK = 0x0C0A_A1E7  # advisory lock id for alert evaluation (audit appends: 0x0C0A0D17)
SYSTEM_ACTOR = "system:alerts"
PURPOSE = "compliance"


# --- errors ----------------------------------------------------------------------------------


class AlertError(ValueError):
    """A refused rule or alert change; the message is safe to show."""


class AlertNotFound(AlertError):
    """No such rule or alert."""


class RuleInvalid(AlertError):
    """Rule settings that do not validate; ``problems`` maps setting -> reason."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.problems.items()))


# --- who changes, when, under which lock ------------------------------------------------------


@dataclass(frozen=True)
class Changer:
    """Who changes a rule or an alert (a staff actor id like "user:12", and the role)."""

    actor_id: str
    actor_role: str
    request_id: str = ""


def utc(value: Any) -> dt.datetime:
    """A stored timestamp (a datetime, or ISO text on SQLite) as an aware UTC datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise TypeError("expected a timestamp")
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


@asynccontextmanager
async def locked_transaction() -> AsyncIterator[None]:
    """One transaction that holds the alert lock until it commits.

    PostgreSQL: a transaction-scoped advisory lock (distinct from the audit append lock);
    SQLite: an IMMEDIATE transaction, which takes the database's single writer lock. Inside
    an outer transaction this joins it (Piccolo nests by reusing the outer one).
    """
    engine = AlertCursor._meta.db
    if isinstance(engine, SQLiteEngine):
        async with engine.transaction(transaction_type=TransactionType.immediate):
            yield
        return
    async with engine.transaction():
        await AlertCursor.raw("SELECT pg_advisory_xact_lock({})", PG_ALERT_LOCK)
        yield


async def audit_alert_change(
    audit: AuditLog, action: str, alert_id: int, detail: dict[str, int | str]
) -> None:
    """Audit a change the system made to an alert (raised, extended, e-mailed)."""
    await audit.append(
        audit_event(
            actor_id=SYSTEM_ACTOR,
            actor_role="system",
            action=action,
            resource_type="alert",
            resource_id=str(alert_id),
            outcome=Outcome.ALLOWED,
            purpose=PURPOSE,
            detail=detail,
        )
    )
