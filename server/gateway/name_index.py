"""Keeping the name-search tokens in step with the records, inside the writes' own
transactions: tokens are written with the record, replaced when a name changes, and
removed when the record is deleted, tombstoned (erasure, a confirmed merge) or its free
text cleared. :func:`rebuild` recomputes them all (``consentry search reindex``).

Only the fields the data map marks ``word_index`` have tokens (server.vault.words).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from server import db
from server.datamap import RECORD_TYPES, Field, RecordType
from server.gateway.actor import Actor
from server.gateway.events import allowed_event
from server.gateway.tables import TABLES, SearchToken
from server.vault import Vault
from server.vault.envelope import CiphertextError

if TYPE_CHECKING:
    from server.gateway.core import GatewayCore

_INSERT_BATCH = 1000


def indexed_fields(rt: RecordType) -> tuple[Field, ...]:
    return tuple(f for f in rt.fields if f.word_index)


def indexed_types() -> list[RecordType]:
    return [rt for rt in RECORD_TYPES.values() if indexed_fields(rt)]


def token_rows(
    vault: Vault, rt: RecordType, row_id: str, values: Mapping[str, Any]
) -> list[SearchToken]:
    """The token rows of one record for the indexed fields present in ``values``."""
    rows = []
    for spec in indexed_fields(rt):
        value = values.get(spec.name)
        if not value:
            continue
        for token in sorted(vault.word_tokens(rt, spec, str(value))):
            rows.append(
                SearchToken(
                    record_type=rt.resource,
                    record_id=uuid.UUID(row_id),
                    field=spec.name,
                    token=token,
                )
            )
    return rows


async def _insert(rows: Sequence[SearchToken]) -> None:
    for start in range(0, len(rows), _INSERT_BATCH):
        await SearchToken.insert(*rows[start : start + _INSERT_BATCH]).run()


async def write(
    vault: Vault, rt: RecordType, records: Iterable[tuple[str, Mapping[str, Any]]]
) -> None:
    """Replace the tokens of the indexed fields present in each record's ``values`` (call
    in the write's transaction). Fields not present keep their tokens (a partial update)."""
    fields = indexed_fields(rt)
    if not fields:
        return
    rows: list[SearchToken] = []
    for row_id, values in records:
        changed = [f.name for f in fields if f.name in values]
        if not changed:
            continue
        await SearchToken.delete().where(
            (SearchToken.record_type == rt.resource)
            & (SearchToken.record_id == uuid.UUID(row_id))
            & SearchToken.field.is_in(changed)
        )
        rows += token_rows(vault, rt, row_id, values)
    await _insert(rows)


async def write_new(
    vault: Vault, rt: RecordType, records: Iterable[tuple[str, Mapping[str, Any]]]
) -> None:
    """The tokens of records just inserted (nothing to replace): one bulk insert."""
    if not indexed_fields(rt):
        return
    rows: list[SearchToken] = []
    for row_id, values in records:
        rows += token_rows(vault, rt, row_id, values)
    await _insert(rows)


async def clear(rt: RecordType, record_ids: Sequence[str | uuid.UUID]) -> None:
    """Remove every token of these records (deleted, tombstoned, or text cleared)."""
    if not indexed_fields(rt) or not record_ids:
        return
    ids = [uuid.UUID(str(i)) for i in record_ids]
    for start in range(0, len(ids), _INSERT_BATCH):
        await SearchToken.delete().where(
            (SearchToken.record_type == rt.resource)
            & SearchToken.record_id.is_in(ids[start : start + _INSERT_BATCH])
        )


async def clear_subject_rows(rt: RecordType, subject: uuid.UUID) -> None:
    """Remove the tokens of the person's records of one type (their tombstoning)."""
    if not indexed_fields(rt):
        return
    table = TABLES[rt.resource]
    await SearchToken.delete().where(
        (SearchToken.record_type == rt.resource)
        & SearchToken.record_id.is_in(
            table.select(table._meta.primary_key).where(getattr(table, "subject_id") == subject)
        )
    )


async def clear_subject(subject: uuid.UUID) -> None:
    """Remove the tokens of every record carrying this subject id, of every type: once a
    person is erased no token of theirs may remain, held records' titles included."""
    for rt in indexed_types():
        await clear_subject_rows(rt, subject)


def _plain_values(
    gw: GatewayCore, rt: RecordType, row: Mapping[str, Any], key: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in indexed_fields(rt):
        raw = row.get(spec.name)
        if raw is None or not spec.encrypted:
            values[spec.name] = raw
            continue
        try:
            values[spec.name] = (
                None if key is None else gw.vault.decrypt_value(rt, spec, str(row["id"]), key, raw)
            )
        except CiphertextError:
            values[spec.name] = None
    return values


async def refresh(gw: GatewayCore, rt: RecordType, record_ids: Sequence[str | uuid.UUID]) -> None:
    """Recompute the tokens of these records from what they hold now (after a merge or
    its undo re-sealed a name, or erasure scrubbed a mention): call in that transaction."""
    fields = indexed_fields(rt)
    if not fields or not record_ids:
        return
    table = TABLES[rt.resource]
    ids = [uuid.UUID(str(i)) for i in record_ids]
    rows = await table.select(
        table._meta.primary_key,
        getattr(table, "subject_id"),
        *(getattr(table, f.name) for f in fields),
    ).where(table._meta.primary_key.is_in(ids))
    keys = await gw.vault.keys_for(str(r["subject_id"]) for r in rows)
    await clear(rt, ids)
    await write_new(
        gw.vault,
        rt,
        ((str(r["id"]), _plain_values(gw, rt, r, keys.get(str(r["subject_id"])))) for r in rows),
    )


async def rebuild(
    gw: GatewayCore,
    rt: RecordType,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Recompute the tokens of every record of ``rt``, a batch per transaction (after a
    key change, or to fill in records written before name search existed). Resumable:
    each batch replaces its records' tokens whole. Returns how many records were read."""
    fields = indexed_fields(rt)
    if not fields:
        return 0
    table = TABLES[rt.resource]
    pk = table._meta.primary_key
    done = 0
    last: Any = None
    while True:
        query = table.select(
            pk, getattr(table, "subject_id"), *(getattr(table, f.name) for f in fields)
        )
        if last is not None:
            query = query.where(pk > last)
        rows = await query.order_by(pk).limit(batch_size)
        if not rows:
            break
        last = rows[-1]["id"]
        keys = await gw.vault.keys_for(str(r["subject_id"]) for r in rows)
        async with db.write_transaction():
            await clear(rt, [r["id"] for r in rows])
            await write_new(
                gw.vault,
                rt,
                (
                    (str(r["id"]), _plain_values(gw, rt, r, keys.get(str(r["subject_id"]))))
                    for r in rows
                ),
            )
        done += len(rows)
        if progress is not None:
            progress(len(rows))
    # Tokens of records that no longer exist (a crash between a delete and its cleanup
    # cannot happen - both are one transaction - but a restore from parts could).
    await SearchToken.delete().where(
        (SearchToken.record_type == rt.resource) & SearchToken.record_id.not_in(table.select(pk))
    )
    return done


async def count_records() -> int:
    """Records of every indexed type: the total a rebuild's progress bar counts to."""
    return sum([int(await TABLES[rt.resource].count()) for rt in indexed_types()])


async def missing() -> bool:
    """Whether records exist but no token does: a database written before name search
    (the back-fill ``consentry migrate`` and ``serve`` run then)."""
    if await SearchToken.count():
        return False
    return await count_records() > 0


async def rebuild_all(
    gw: GatewayCore,
    actor: Actor,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Rebuild every indexed type; one audit event per type with the records read."""
    done: dict[str, int] = {}
    for rt in indexed_types():
        done[rt.resource] = await rebuild(gw, rt, batch_size=batch_size, progress=progress)
        async with db.write_transaction():
            await gw.audit.append(
                allowed_event(
                    actor,
                    "search_reindex",
                    rt.resource,
                    purpose="compliance",
                    subject_ids=(),
                    fields=[f.name for f in indexed_fields(rt)],
                    detail={"records": done[rt.resource]},
                )
            )
    return done
