"""What gateway operations hand back: records with only the fields the actor may read,
pages, groups and bulk results. Values, never ciphertext, and never a hidden field."""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from server.gateway.errors import Forbidden


def plain_value(raw: Any) -> Any:
    """A plaintext column as the API shows it: ids and moments as strings (UTC ISO 8601),
    exactly as ``clean_values`` canonicalised them on the way in."""
    if type(raw) in (int, str):  # most values of a large GROUP BY: nothing to convert
        return raw
    if isinstance(raw, uuid.UUID):
        return str(raw)
    if isinstance(raw, dt.datetime):
        return raw.astimezone(dt.UTC).isoformat()
    if isinstance(raw, dt.date):
        return raw.isoformat()
    return raw


class OutsideScope(Forbidden):
    """A write would leave the actor's record scope; raised inside the write transaction."""

    reason = "outside_scope_after_write"


@dataclass(frozen=True)
class Record:
    resource: str
    id: str
    subject_id: str
    owner_id: int
    team: str
    created_at: dt.datetime
    updated_at: dt.datetime
    values: dict[str, Any]  # only the fields this actor may read
    restricted: tuple[str, ...]  # fields that exist but are hidden from this actor
    erased: bool = False  # a tombstone: the person was erased, the values are gone


@dataclass(frozen=True)
class BulkResult:
    created: list[str]  # new record ids, in input order of the accepted rows
    rejected: dict[int, dict[str, str]]  # input row index -> field -> reason (no values)


@dataclass(frozen=True)
class Page:
    items: builtins.list[Record]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True)
class Group:
    """One row of an ``aggregate``: the grouped column values (in ``group_by`` order), how
    many records, the sum of the summed column (None when none was asked for), and how
    many different people the records are about (None unless ``count_people``)."""

    key: tuple[Any, ...]
    count: int
    total: int | None = None
    people: int | None = None
