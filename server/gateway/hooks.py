"""What the gateway asks the features built on it, as protocols.

The consent engine, the restriction register, the compliance registers and the pipelines
sit above the gateway (they import it, never the other way round), yet the gateway must
ask them before it touches a record. Each question is a protocol here, handed to the
gateway when the services are built; until then the gateway refuses (fail closed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

from piccolo.columns import Column
from piccolo.querystring import Selectable


class BasisVerdict(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class AudienceCondition(Protocol):
    def where(self, subject_column: Column) -> Any: ...


class ExclusionCondition(AudienceCondition, Protocol):
    """An audience that leaves out a few (the restricted): those few as a condition too."""

    def excluded(self, subject_column: Column) -> Any: ...


class SubjectBasis(Protocol):
    """What the gateway asks the consent engine (``server.consent``): whether one person,
    or which people, give a valid basis for a purpose. A protocol, so the gateway does
    not import the engine and the engine does not import customer tables."""

    async def has_basis(
        self,
        subject_id: str,
        purpose: str,
        channel: str | None = None,
        now: dt.datetime | None = None,
    ) -> BasisVerdict: ...

    async def subjects_with_basis(
        self, purpose: str, channel: str | None = None, now: dt.datetime | None = None
    ) -> AudienceCondition: ...


class SubjectRestrictions(Protocol):
    """What the gateway asks the restriction register (``server.dsr.restriction``): is one
    person restricted (on its own, or as a column of the record's own SELECT), and which
    people are not (as a WHERE condition)."""

    async def is_restricted(self, subject_id: str) -> bool: ...

    def restricted_column(self, subject_column: Column) -> Selectable:
        """A select column, true when the person of ``subject_column`` is restricted."""
        ...

    async def unrestricted_subjects(self) -> ExclusionCondition: ...


class MergeBlockers(Protocol):
    """Why one person's records may not be merged now, one sentence each (legal holds, open
    requests, erasure: ``server.dsr.registers``). The gateway does not read those registers
    itself: ``server.dsr`` builds on the gateway, not the other way round."""

    async def __call__(self, subject_id: str, label: str) -> list[str]: ...


class RecordRule(Protocol):
    """Checks a record type's values against configuration the data map cannot hold (a
    deal's stage must belong to its pipeline). Completes ``values`` in place (defaults
    and values that follow from others) and returns problems by field name, no values.
    ``current`` is the stored row on an update, None on a create."""

    async def __call__(
        self, values: dict[str, Any], current: Mapping[str, Any] | None
    ) -> dict[str, str]: ...
