"""Legal holds: records that must be kept although the person asked for erasure.

Art. 17(3) lets a controller keep data it is obliged to keep (tax records, a contract
still being performed, litigation). A hold names the person, which of their records it
covers (a record type or ``all``), a reason code and the date it ends. While it is
active those records stay encrypted and their key is kept, the person is restricted
(Art. 18) instead, and the erasure result tells them why and until when. Once the hold
ends - its date passes or someone releases it - the retention run finishes the erasure.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from server import db
from server.datamap import RECORD_TYPES
from server.dsr.errors import DsrError, role_of
from server.dsr.tables import LegalHold

PURPOSE = "compliance"
REASONS: dict[str, str] = {
    "tax_records": "Tax and accounting records the law requires us to keep",
    "contract": "Records needed to perform or close a contract with you",
    "litigation": "Records needed for legal proceedings",
    "regulatory_inquiry": "Records requested by a regulator or authority",
}
ALL = "all"
MAX_YEARS = 30


class HoldError(DsrError):
    """A hold that cannot be added or released; ``code`` is machine-readable."""


def scopes() -> tuple[str, ...]:
    """What a hold can cover: every record type of the data map, or all of them."""
    return (ALL, *RECORD_TYPES)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclass(frozen=True)
class Hold:
    id: str
    subject_id: str
    scope: str
    reason: str
    held_until: dt.date
    created_by: str
    created_at: dt.datetime
    released_at: dt.datetime | None

    @property
    def label(self) -> str:
        return REASONS.get(self.reason, self.reason)

    def active_on(self, day: dt.date) -> bool:
        return self.released_at is None and self.held_until >= day

    def covers(self, resource: str) -> bool:
        return self.scope in (ALL, resource)


def _hold(row: Mapping[str, Any]) -> Hold:
    until = row["held_until"]
    if isinstance(until, str):  # SQLite hands some drivers' dates back as text
        until = dt.date.fromisoformat(until)
    return Hold(
        id=str(row["id"]),
        subject_id=str(row["subject_id"]),
        scope=str(row["scope"]),
        reason=str(row["reason"]),
        held_until=until,
        created_by=str(row["created_by"]),
        created_at=row["created_at"],
        released_at=row["released_at"],
    )


def _uuid(value: str, code: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise HoldError(code, f"{what} is not a valid id") from None


class LegalHolds:
    """The only writer of ``legal_hold``; every change is audited (codes and ids only)."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def add(
        self,
        subject_id: str,
        scope: str,
        reason: str,
        held_until: dt.date,
        *,
        by: str,
        by_role: str = "",
        today: dt.date | None = None,
    ) -> Hold:
        subject = _uuid(subject_id, "invalid_subject", "the subject")
        if scope not in scopes():
            raise HoldError(
                "unknown_scope", "unknown scope; expected one of: " + ", ".join(scopes())
            )
        if reason not in REASONS:
            raise HoldError(
                "unknown_reason", "unknown reason; expected one of: " + ", ".join(REASONS)
            )
        day = today or _today()
        if held_until < day:
            raise HoldError("ends_in_past", "a hold must end today or later")
        if held_until > day.replace(year=day.year + MAX_YEARS):
            raise HoldError("too_long", f"a hold cannot run for more than {MAX_YEARS} years")
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "subject_id": subject,
            "scope": scope,
            "reason": reason,
            "held_until": held_until,
            "created_by": by,
            "created_at": dt.datetime.now(dt.UTC),
            "released_at": None,
        }
        async with db.write_transaction():
            await LegalHold.insert(LegalHold(**row)).run()
            await self._event(
                "legal_hold.add",
                str(row["id"]),
                subject,
                by,
                by_role,
                reason,
                {"scope": scope, "held_until": held_until.isoformat()},
            )
        return _hold(row)

    async def release(self, hold_id: str, *, by: str, by_role: str = "") -> Hold:
        key = _uuid(hold_id, "not_found", "the hold")
        async with db.write_transaction():
            row = await LegalHold.select().where(LegalHold.id == key).first()
            if row is None:
                raise HoldError("not_found", "no such hold")
            if row["released_at"] is not None:
                raise HoldError("already_released", "this hold was already released")
            now = dt.datetime.now(dt.UTC)
            await LegalHold.update({LegalHold.released_at: now, LegalHold.released_by: by}).where(
                LegalHold.id == key
            )
            await self._event(
                "legal_hold.release",
                str(key),
                row["subject_id"],
                by,
                by_role,
                str(row["reason"]),
                {"scope": str(row["scope"])},
            )
        return _hold({**row, "released_at": now})

    async def active(
        self, subject_id: str | None = None, *, today: dt.date | None = None
    ) -> list[Hold]:
        """Holds in force (not released, end date not passed), for one person or everyone."""
        day = today or _today()
        query = LegalHold.select().where(
            LegalHold.released_at.is_null() & (LegalHold.held_until >= day)
        )
        if subject_id is not None:
            query = query.where(
                LegalHold.subject_id == _uuid(subject_id, "invalid_subject", "the subject")
            )
        return [_hold(row) for row in await query.order_by(LegalHold.held_until)]

    async def all(self, *, include_ended: bool = False, today: dt.date | None = None) -> list[Hold]:
        """Every hold for the console: active ones, or all of them, soonest end first."""
        if not include_ended:
            return await self.active(today=today)
        rows = await LegalHold.select().order_by(LegalHold.created_at, ascending=False)
        return [_hold(row) for row in rows]

    async def _event(
        self,
        action: str,
        hold_id: str,
        subject: Any,
        by: str,
        by_role: str,
        reason: str,
        detail: dict[str, int | str],
    ) -> None:
        await self._audit.append(
            audit_event(
                actor_id=by,
                actor_role=by_role or role_of(by),
                action=action,
                resource_type="legal_hold",
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                resource_id=hold_id,
                subject_ids=(str(subject),),
                reason=reason,
                detail=detail,
            )
        )
