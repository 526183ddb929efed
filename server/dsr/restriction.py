"""The restriction register (Art. 18): whose data may only be stored for now.

While a person is restricted the gateway leaves their records out of every list, search
and count and refuses to read, change or delete them, except under the storage-and-legal
purpose ``compliance`` (``server.gateway.gateway.STORAGE_PURPOSES``). The gateway asks
this register through its :class:`~server.gateway.gateway.SubjectRestrictions` protocol,
as a sub-select compiled into the WHERE clause, so pages and counts stay right.

A person can be restricted for several reasons at once (their own request, a legal hold
holding back an erasure); lifting removes them all unless one reason is named.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from piccolo.columns import Column
from piccolo.columns.combination import Where
from piccolo.query import Select
from piccolo.querystring import QueryString

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from server import db
from server.analytics.store import forget_scores
from server.dsr.errors import DsrError, role_of
from server.dsr.tables import ProcessingRestriction

PURPOSE = "compliance"
REASONS: dict[str, str] = {
    "data_subject_request": "The person asked for restriction (Art. 18(1))",
    "accuracy_contested": "The person contests the accuracy of the data",
    "unlawful_processing": "Processing is unlawful; the person opposes erasure",
    "legal_claims": "The person needs the data for legal claims",
    "objection_pending": "An objection is being assessed (Art. 21(1))",
    "legal_hold": "Records kept under a legal hold instead of being erased",
}


class RestrictionError(DsrError):
    """A restriction change that cannot be made; ``code`` is machine-readable."""


@dataclass(frozen=True)
class Restriction:
    id: str
    subject_id: str
    reason: str
    request_id: str | None
    since: dt.datetime
    created_by: str
    lifted_at: dt.datetime | None

    @property
    def label(self) -> str:
        return REASONS.get(self.reason, self.reason)


@dataclass(frozen=True)
class UnrestrictedSubjects:
    """Everyone but the restricted, as a sub-select for a table's ``subject_id``."""

    restricted: Select[Any]

    def where(self, subject_column: Column) -> Where:
        return subject_column.not_in(self.restricted)

    def excluded(self, subject_column: Column) -> Where:
        """The restricted, the people ``where`` leaves out (a count subtracts them)."""
        return subject_column.is_in(self.restricted)


def subject_uuid(subject_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(subject_id).strip())
    except ValueError:
        raise RestrictionError("invalid_subject", "the subject is not a valid id") from None


def _restriction(row: Mapping[str, Any]) -> Restriction:
    return Restriction(
        id=str(row["id"]),
        subject_id=str(row["subject_id"]),
        reason=str(row["reason"]),
        request_id=row["request_id"],
        since=row["since"],
        created_by=str(row["created_by"]),
        lifted_at=row["lifted_at"],
    )


class Restrictions:
    """The only writer of ``processing_restriction``; every change is audited."""

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    # -- the gateway's questions (SubjectRestrictions) ---------------------------------

    async def is_restricted(self, subject_id: str) -> bool:
        subject = subject_uuid(subject_id)
        found = await ProcessingRestriction.exists().where(
            (ProcessingRestriction.subject_id == subject)
            & ProcessingRestriction.lifted_at.is_null()
        )
        return bool(found)

    def restricted_column(self, subject_column: Column) -> QueryString:
        """Whether the person is restricted, as one more column of the gateway's own SELECT
        (a correlated ``EXISTS`` on ``subject_column``): a record and its person's
        restriction come back in one statement. Read on every query, never cached, so a
        new restriction holds from the very next request in every worker."""
        outer = subject_column._meta.get_full_name(with_alias=False)
        table = f'"{ProcessingRestriction._meta.tablename}"'
        return QueryString(
            f"EXISTS (SELECT 1 FROM {table} WHERE {table}.subject_id = {outer} "  # noqa: S608 - table and column names only
            f"AND {table}.lifted_at IS NULL)"
        )

    async def unrestricted_subjects(self) -> UnrestrictedSubjects:
        return UnrestrictedSubjects(
            ProcessingRestriction.select(ProcessingRestriction.subject_id).where(
                ProcessingRestriction.lifted_at.is_null()
            )
        )

    # -- reading -------------------------------------------------------------------------

    async def active(self, subject_id: str) -> list[Restriction]:
        subject = subject_uuid(subject_id)
        rows = await (
            ProcessingRestriction.select()
            .where(
                (ProcessingRestriction.subject_id == subject)
                & ProcessingRestriction.lifted_at.is_null()
            )
            .order_by(ProcessingRestriction.since)
        )
        return [_restriction(row) for row in rows]

    # -- changing ------------------------------------------------------------------------

    async def restrict(
        self,
        subject_id: str,
        reason: str,
        *,
        by: str,
        by_role: str = "",
        request_id: str | None = None,
    ) -> Restriction:
        """Restrict the person for ``reason``; already restricted for it: the same row."""
        subject = subject_uuid(subject_id)
        if reason not in REASONS:
            raise RestrictionError(
                "unknown_reason", "unknown reason; expected one of: " + ", ".join(REASONS)
            )
        async with db.write_transaction():
            existing = await (
                ProcessingRestriction.select()
                .where(
                    (ProcessingRestriction.subject_id == subject)
                    & (ProcessingRestriction.reason == reason)
                    & ProcessingRestriction.lifted_at.is_null()
                )
                .first()
            )
            if existing is not None:
                return _restriction(existing)
            row: dict[str, Any] = {
                "id": uuid.uuid4(),
                "subject_id": subject,
                "reason": reason,
                "request_id": request_id,
                "since": dt.datetime.now(dt.UTC),
                "created_by": by,
                "lifted_at": None,
            }
            await ProcessingRestriction.insert(ProcessingRestriction(**row)).run()
            # Profiling is processing: the person's scores go at once, in this transaction
            # (the scoring job leaves restricted people out and re-checks when it writes).
            await forget_scores(str(subject))
            await self._event(
                "dsr.restrict", subject, by, by_role, reason, {"request": request_id or ""}
            )
        return _restriction(row)

    async def lift(
        self, subject_id: str, *, by: str, by_role: str = "", reason: str | None = None
    ) -> int:
        """End the person's restrictions (only those for ``reason`` if given); returns how
        many were lifted, 0 when they were not restricted."""
        subject = subject_uuid(subject_id)
        condition = (ProcessingRestriction.subject_id == subject) & (
            ProcessingRestriction.lifted_at.is_null()
        )
        if reason is not None:
            condition &= ProcessingRestriction.reason == reason
        async with db.write_transaction():
            count = int(await ProcessingRestriction.count().where(condition))
            if not count:
                return 0
            await ProcessingRestriction.update(
                {
                    ProcessingRestriction.lifted_at: dt.datetime.now(dt.UTC),
                    ProcessingRestriction.lifted_by: by,
                }
            ).where(condition)
            await self._event(
                "dsr.unrestrict", subject, by, by_role, reason or "", {"lifted": count}
            )
        return count

    async def _event(
        self,
        action: str,
        subject: uuid.UUID,
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
                resource_type="data_subject",
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                subject_ids=(str(subject),),
                reason=reason,
                detail=detail,
            )
        )
