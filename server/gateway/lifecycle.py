"""What merges, erasure and conversion leave in the tables, as the core sees it.

Every query of the core must leave out contacts merged into another, tell an erased
person's tombstone from a living record and keep a data key that a converted lead still
shares with its contact. Those rules belong to features built on the core (duplicates,
erasure, leads) but the core applies them on every read and delete, so they live here,
below both: the core imports this module, never the features.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from piccolo.table import Table

from server.datamap import RECORD_TYPES, Field, RecordType
from server.gateway.tables import TABLES, Contact

ERASED = "erased"  # the tombstone mark of person records (living, erasure.clear_rows)


def visible(query: Any, table: type[Table]) -> Any:
    """Leave out contacts merged into another (unless the merge was undone), in the WHERE
    clause: ``GatewayCore.in_scope`` applies it, so lists, counts, searches, reports,
    exports and reads by id never reach them. A column of the row (``merged_into``, kept
    by the merge's own transaction), so no sub-select over every merge ever made."""
    if table is not Contact:
        return query
    return query.where(Contact.merged_into.is_null())


def is_cleared(row: Mapping[str, Any], fields: Sequence[Field]) -> bool:
    """These fields and their blind indexes are empty: what erasure leaves of them."""
    return all(not row.get(f.name) for f in fields) and all(
        row.get(f.index_column) is None for f in fields if f.blind_index
    )


def is_tombstone(rt: RecordType, row: Mapping[str, Any]) -> bool:
    """Every encrypted column and blind index is empty: what erasure leaves behind. Only
    decidable for types with a required encrypted field (a living contact always has a
    name); an organization with just its (plaintext) name is no tombstone."""
    encrypted = [f for f in rt.fields if f.encrypted]
    return any(f.required for f in encrypted) and is_cleared(row, encrypted)


def living(query: Any, rt: RecordType, table: type[Table]) -> Any:
    """Leave out the tombstones of person records (contacts and leads: the records that
    are their own subject and always hold an encrypted name), in the WHERE clause: an
    erased person must not turn up in lists, counts and exports as a nameless living
    record. Erasure marks a tombstone's ``erased`` column in the statement that clears it
    (``erasure.clear_rows``; older tombstones were marked by a migration), so a count is
    answered from an index instead of every row's ciphertext; records about a person
    (deals, cases ...) stay, for the business totals."""
    if not has_tombstones(rt):
        return query
    return query.where(getattr(table, ERASED).eq(False))


def left_out(rt: RecordType, table: type[Table], *, include_erased: bool) -> list[tuple[Any, Any]]:
    """What :func:`visible` (and :func:`living`, unless ``include_erased``) leave out of
    ``table``, as pairs of conditions: the rows left out, and the rows kept. Each pair's
    two sides cover every row (the columns are NOT NULL, or tested for NULL), which is
    what lets a count subtract the few left out from a plain count of all."""
    pairs: list[tuple[Any, Any]] = []
    if table is Contact:
        pairs.append((Contact.merged_into.is_not_null(), Contact.merged_into.is_null()))
    if not include_erased and has_tombstones(rt):
        erased = getattr(table, ERASED)
        pairs.append((erased.eq(True), erased.eq(False)))
    return pairs


def has_tombstones(rt: RecordType) -> bool:
    """Whether erasure leaves tombstones of ``rt`` that lists must leave out: a record
    that is its own subject with a required encrypted field (a living one always holds a
    value there). Such a table has an ``erased`` column (a check fails otherwise)."""
    return rt.subject_from is None and any(f.encrypted and f.required for f in rt.fields)


async def subject_still_held(subject_id: str) -> bool:
    """Whether a record that is its own subject (a contact, a lead) still carries this
    subject id. A converted lead shares its key with its contact: deleting either one
    must leave the key alone while the other exists."""
    sid = uuid.UUID(str(subject_id))
    for resource, table in TABLES.items():
        if RECORD_TYPES[resource].subject_from is not None:
            continue
        if await _count(table, sid):
            return True
    return False


async def _count(table: type[Table], subject: uuid.UUID) -> int:
    return int(await table.count().where(getattr(table, "subject_id") == subject))
