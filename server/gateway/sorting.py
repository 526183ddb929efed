"""Which columns a record list may be ordered by.

Only plaintext columns: ordering by an encrypted column in SQL would order ciphertext
(meaningless) or need the plaintext in the database (the thing encryption prevents).
A field the actor may not read is refused too, or the order of the rows would tell them
its values. The keys are the field names, "-name" for descending.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.datamap import FieldKind, RecordType
from server.gateway.errors import InvalidInput

if TYPE_CHECKING:
    from piccolo.table import Table

TIME_COLUMNS = ("created_at", "updated_at")  # not customer content; every table has them
# Plaintext kinds whose order means something (a reference's order is that of random ids).
_ORDERED_KINDS = frozenset(
    {FieldKind.TEXT, FieldKind.CHOICE, FieldKind.INTEGER, FieldKind.DATE, FieldKind.DATETIME}
)


@dataclass(frozen=True)
class SortOrder:
    column: Any
    ascending: bool


def sortable_fields(rt: RecordType, readable: Collection[str]) -> tuple[str, ...]:
    """The keys ``rt``'s list may be sorted by, for an actor who may read ``readable``."""
    fields = tuple(
        f.name
        for f in rt.fields
        if not f.encrypted and f.kind in _ORDERED_KINDS and f.name in readable
    )
    return fields + TIME_COLUMNS


def sort_order(
    rt: RecordType, table: type[Table], readable: Collection[str], sort: str
) -> SortOrder | None:
    """The ORDER BY for ``sort`` ("stage", "-amount"); None for no key. An unknown or
    unreadable key is a 400 naming the keys that exist."""
    if not sort:
        return None
    name = sort.removeprefix("-")
    allowed = sortable_fields(rt, readable)
    if name not in allowed:
        raise InvalidInput(
            f"sort: {rt.resource} records can be sorted by {', '.join(allowed)} "
            "(prefix - for descending)",
            problems={"sort": "not a sortable field"},
        )
    return SortOrder(getattr(table, name), ascending=not sort.startswith("-"))
