"""The gateway's side of erasure, retention and restriction: the only code that turns a
person's rows into tombstones, scrubs mentions of them from other people's free text and
shreds their data key.

A tombstone keeps the row, its id and its plaintext business, classification and reference
columns (a deal stays in the pipeline totals, an interaction still points at its deal) and
clears every encrypted column and every blind index. Each function is idempotent - run
again, it finds nothing left to do and writes nothing - so the orchestrator
(:mod:`server.dsr.erasure`) can resume after a crash at any point.

Audit events carry ids, field names and counts, never a value: not the names that were
searched for, not the text that was changed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import operator
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from piccolo.table import Table

from audit.events import AuditEvent
from server import db
from server.datamap import RECORD_TYPES, Field, RecordType
from server.gateway import mention_index, mention_scan, mentions, name_index
from server.gateway.actor import Actor
from server.gateway.errors import InvalidInput
from server.gateway.events import allowed_event
from server.gateway.lifecycle import ERASED, has_tombstones, is_cleared
from server.gateway.tables import TABLES
from server.logs import get_logger

if TYPE_CHECKING:
    from server.gateway.core import GatewayCore

log = get_logger("consentry.erasure")

ERASED_TEXT = "[erased]"
PURPOSE = "compliance"
# Identifying fields whose values are looked for in other people's free text.
# Every record type of the data map that has a table (generic: new types join in).
record_types = mentions.record_types


@dataclass(frozen=True)
class MentionScrub:
    scanned: int  # other people's records looked at (the index's candidates, or all)
    changed: int  # records whose free text named the person
    indexed: bool = False  # the mention index chose the records (else every one was read)


def subject_uuid(subject_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(subject_id).strip())
    except ValueError:
        raise InvalidInput("not a subject id", problems={"subject_id": "not a UUID"}) from None


def _free_text(rt: RecordType) -> list[Field]:
    return mentions.free_text_fields(rt)


def _cleared(rt: RecordType, table: type[Table], fields: Sequence[Field]) -> dict[Any, Any]:
    """Column -> empty value: NULL, or '' where the column may not be NULL."""
    changes: dict[Any, Any] = {}
    for spec in fields:
        column = getattr(table, spec.name)
        changes[column] = None if column._meta.null else ""
        if spec.blind_index:
            changes[getattr(table, spec.index_column)] = None
    return changes


def _columns(table: type[Table], fields: Sequence[Field]) -> list[Any]:
    names = ["id", "subject_id"] + [f.name for f in fields]
    names += [f.index_column for f in fields if f.blind_index]
    return [getattr(table, name) for name in names]


async def _allowed(
    gw: GatewayCore, actor: Actor, rt: RecordType, action: str, subject: str
) -> None:
    await mentions.require(gw, actor, rt, action, PURPOSE, subject)


def _event(
    actor: Actor,
    action: str,
    resource_type: str,
    subject_ids: tuple[str, ...],
    *,
    record_id: str | None = None,
    fields: Collection[str] = (),
    reason: str = "allowed",
    detail: dict[str, int | str] | None = None,
) -> AuditEvent:
    return allowed_event(
        actor,
        action,
        resource_type,
        PURPOSE,
        subject_ids,
        record_id=record_id,
        fields=fields,
        reason=reason,
        detail=detail,
    )


# --- what is held ------------------------------------------------------------------------


async def record_counts(gw: GatewayCore, subject_id: str) -> dict[str, int]:
    """How many records of each type carry this subject id, tombstones included: ids and
    counts only, so nothing personal is read."""
    subject = subject_uuid(subject_id)
    counts: dict[str, int] = {}
    for rt, table in record_types():
        found = int(await table.count().where(getattr(table, "subject_id") == subject))
        if found:
            counts[rt.resource] = found
    return counts


# --- mentions in other people's free text ------------------------------------------------


IDENTITY_LABEL = "erasure_job.identity"
MAX_RACES = 5  # a record changed under the scrub this often in a row is left for the next run
WriteHook = Callable[[str, str], Awaitable[None]]  # resource, record id: fault injection


async def remembered_identity(gw: GatewayCore, subject_id: str) -> str:
    """The person's names, addresses and numbers, sealed under their own key: kept by an
    erasure that a legal hold stops half-way, so that mentions typed while the hold was in
    force can still be found when it ends - after the records holding the names are gone.
    Unreadable once the key is shredded. "" when they have no key."""
    subject = subject_uuid(subject_id)
    identity = await mentions.identity_of(gw, subject)
    plain = json.dumps({"texts": list(identity.texts), "phones": sorted(identity.phones)})
    return await gw.vault.seal_for_subject(str(subject), IDENTITY_LABEL, plain) or ""


async def _remembered(gw: GatewayCore, subject: uuid.UUID, sealed: str) -> mentions.Identity:
    plain = await gw.vault.open_for_subject(str(subject), IDENTITY_LABEL, sealed)
    if plain is None:
        return mentions.Identity()
    kept = json.loads(plain)
    texts = sorted({str(t) for t in kept.get("texts", [])}, key=len, reverse=True)
    return mentions.Identity(tuple(texts), frozenset(str(p) for p in kept.get("phones", [])))


async def scrub_mentions(
    gw: GatewayCore,
    actor: Actor,
    subject_id: str,
    *,
    batch_size: int = 500,
    remembered: str = "",
    before_write: WriteHook | None = None,
) -> MentionScrub:
    """Replace mentions of the person in the free text of everybody else's records.

    Must run before their key is shredded (it needs their names, or ``remembered``: see
    :func:`remembered_identity`). The records and spans are those of
    :func:`server.gateway.mentions.scan` - the same scan that shows a subject export its
    excerpts, so erasure removes exactly what access showed - over the records the mention
    index names as candidates (every record while the index is not complete). Each
    changed record is re-encrypted under its own subject's key and audited on its own, in
    its own transaction. The write is conditional on the ciphertexts read (an optimistic check):
    a record a member of staff changed in between is not overwritten with the text from
    before their change, but read again and scrubbed as it now is.
    """
    subject = subject_uuid(subject_id)
    identities = [await mentions.identity_of(gw, subject)]
    if remembered:
        identities.append(await _remembered(gw, subject, remembered))
    identities = [identity for identity in identities if not identity.empty]
    if not identities:
        return MentionScrub(0, 0)
    for rt, _ in record_types():
        if _free_text(rt):
            await _allowed(gw, actor, rt, "erase", str(subject))
    matcher = mentions.Matcher(identities, gw.default_region)
    changed = 0
    stats = mentions.ScanStats()
    async for found in mention_scan.scan_for(
        gw, subject, identities, batch_size=batch_size, stats=stats
    ):
        if await _scrub_found(gw, actor, subject, matcher, found, before_write):
            changed += 1
    # Without the index every other free text was read: say how many (ids only).
    scanned = stats.rows if stats.indexed else await _free_text_rows(subject)
    async with db.write_transaction():
        await gw.audit.append(
            _event(
                actor,
                "erase_mentions",
                "data_subject",
                (str(subject),),
                detail={"scanned": scanned, "changed": changed, "indexed": int(stats.indexed)},
            )
        )
    return MentionScrub(scanned, changed, stats.indexed)


async def _scrub_found(
    gw: GatewayCore,
    actor: Actor,
    subject: uuid.UUID,
    matcher: mentions.Matcher,
    found: Any,
    before_write: WriteHook | None,
) -> bool:
    """Scrub one record the scan found; True if it was written. When the conditional
    UPDATE matches nothing (changed since it was read), read it again and retry."""
    rt, table, mention = found.rt, found.table, found.mention
    free = _free_text(rt)
    pk = table._meta.primary_key
    row, texts = found.row, mention.texts
    for _ in range(MAX_RACES):
        new_values = {
            name: _replace_spans(plain, spans, ERASED_TEXT)
            for name, (plain, spans) in texts.items()
        }
        if before_write is not None:
            await before_write(rt.resource, mention.record_id)
        columns = gw.vault.encrypt_values(rt, mention.record_id, found.key, new_values)
        unchanged = [
            getattr(table, f.name).is_null()
            if row.get(f.name) is None
            else getattr(table, f.name) == row[f.name]
            for f in free
        ]
        async with db.write_transaction():
            written = await (
                table.update({getattr(table, k): v for k, v in columns.items()})
                .where(functools.reduce(operator.and_, unchanged, pk == row["id"]))
                .returning(pk)
            )
            if written:
                await name_index.write(gw.vault, rt, [(mention.record_id, new_values)])
                await mention_index.write(gw.vault, rt, [(mention.record_id, new_values)])
                await gw.audit.append(
                    _event(
                        actor,
                        "erase_mention",
                        rt.resource,
                        (mention.owner_subject,),
                        record_id=mention.record_id,
                        fields=new_values,
                        reason="mentions_erased_person",
                        detail={"erasure_of": str(subject)},
                    )
                )
        if written:
            return True
        # Changed since it was read (or deleted): read it again and scrub what is there now.
        log.info("mention scrub met a concurrent change", resource=rt.resource)
        fresh = await table.select(*_columns(table, free)).where(pk == row["id"]).first()
        if fresh is None:
            return False
        row, texts = fresh, {}
        for spec in free:
            token = fresh.get(spec.name)
            plain = token and gw.decrypt_field(rt, spec, mention.record_id, found.key, token)
            if isinstance(plain, str) and plain:
                spans = matcher.spans(plain)
                if spans:
                    texts[spec.name] = (plain, tuple(spans))
        if not texts:
            return False  # their change took the mention out already
    log.warning("mention scrub gave up on a record changing under it", resource=rt.resource)
    return False


def _replace_spans(text: str, spans: Sequence[tuple[int, int]], marker: str) -> str:
    for start, end in reversed(spans):
        text = text[:start] + marker + text[end:]
    return text


async def _free_text_rows(subject: uuid.UUID) -> int:
    """Other people's records that hold free text: what the scan looked at (ids only)."""
    total = 0
    for rt, table in record_types():
        free = _free_text(rt)
        if not free:
            continue
        has_text = functools.reduce(
            operator.or_, (getattr(table, f.name).is_not_null() for f in free)
        )
        total += int(
            await table.count().where((getattr(table, "subject_id") != subject) & has_text)
        )
    return total


# --- tombstones and keys -----------------------------------------------------------------


async def tombstone_subject(
    gw: GatewayCore, actor: Actor, subject_id: str, *, keep: Collection[str] = ()
) -> dict[str, int]:
    """Clear every encrypted column and blind index of the person's records, except the
    record types in ``keep`` (legal holds; ``all`` keeps everything). Returns the records
    newly erased per type; one ``erase`` audit event per type that changed."""
    subject = subject_uuid(subject_id)
    erased: dict[str, int] = {}
    for rt, table in record_types():
        if "all" in keep or rt.resource in keep:
            continue
        pending = await pending_rows(rt, table, subject)
        if not pending:
            continue
        await _allowed(gw, actor, rt, "erase", str(subject))
        async with db.write_transaction():
            await clear_rows(gw, actor, rt, table, subject, pending, purpose=PURPOSE)
        erased[rt.resource] = pending
    return erased


async def pending_rows(rt: RecordType, table: type[Table], subject: uuid.UUID) -> int:
    """How many of the person's rows of this type still hold ciphertext or a blind index."""
    encrypted = [f for f in rt.fields if f.encrypted]
    if not encrypted:
        return 0
    rows = await table.select(*_columns(table, encrypted)).where(
        getattr(table, "subject_id") == subject
    )
    return sum(1 for row in rows if not is_cleared(row, encrypted))


async def clear_rows(
    gw: GatewayCore,
    actor: Actor,
    rt: RecordType,
    table: type[Table],
    subject: uuid.UUID,
    pending: int,
    *,
    purpose: str,
    detail: dict[str, int | str] | None = None,
) -> None:
    """Turn the person's rows of this type into tombstones and record one ``erase`` event,
    in the caller's transaction. The caller decided it may (erasure: the ``erase`` right;
    a merge: the ``merge`` right) and counted ``pending`` with :func:`pending_rows`."""
    encrypted = [f for f in rt.fields if f.encrypted]
    changes = _cleared(rt, table, encrypted)
    if has_tombstones(rt):  # marked in the same statement: lists leave it out at once
        changes[getattr(table, ERASED)] = True
    await table.update(changes).where(getattr(table, "subject_id") == subject)
    await name_index.clear_subject_rows(rt, subject)
    await mention_index.clear_subject_rows(rt, subject)
    await gw.audit.append(
        allowed_event(
            actor,
            "erase",
            rt.resource,
            purpose,
            (str(subject),),
            fields=[f.name for f in encrypted],
            detail={"records": pending, **(detail or {})},
        )
    )


async def shred_subject_key(gw: GatewayCore, actor: Actor, subject_id: str) -> None:
    """Destroy the person's data keys: whatever ciphertext of theirs survives anywhere (a
    backup, a replica, a held record released later) can no longer be read."""
    subject = subject_uuid(subject_id)
    async with db.write_transaction():
        await gw.vault.shred_subject(str(subject))
        await name_index.clear_subject(subject)
        await mention_index.clear_subject(subject)
        await gw.audit.append(_event(actor, "shred", "data_subject", (str(subject),)))
    # Do not leave the deleted wrapped key in the database files longer than necessary
    # (docs/backups.md). Best effort: autovacuum (PostgreSQL) and the next checkpoint
    # (SQLite) get there anyway, and the shred itself is committed.
    try:
        await gw.vault.compact_keys()
    except Exception as exc:
        log.warning("key table compaction failed", error=type(exc).__name__)


# --- retention ---------------------------------------------------------------------------


async def expired_records(
    gw: GatewayCore,
    actor: Actor,
    resource: str,
    *,
    older_than: dt.datetime,
    age_column: str,
    when: Mapping[str, Sequence[str]],
    free_text_only: bool,
) -> list[tuple[str, str]]:
    """(record id, subject id) of the records past a retention period that still hold
    something to erase (all encrypted columns, or only the free text). Unscoped: a
    system job's question; audited with the count."""
    rt, table = RECORD_TYPES[resource], TABLES[resource]
    await _allowed(gw, actor, rt, "erase", "")
    fields = _free_text(rt) if free_text_only else [f for f in rt.fields if f.encrypted]
    query = table.select(*_columns(table, fields)).where(getattr(table, age_column) < older_than)
    for name, allowed in when.items():
        query = query.where(getattr(table, name).is_in(list(allowed)))
    rows = await query.order_by(table._meta.primary_key)
    found = [(str(r["id"]), str(r["subject_id"])) for r in rows if not is_cleared(r, fields)]
    async with db.write_transaction():
        await gw.audit.append(
            _event(actor, "retention_scan", rt.resource, (), detail={"matched": len(found)})
        )
    return found


async def anonymise_records(
    gw: GatewayCore, actor: Actor, resource: str, record_ids: Sequence[str]
) -> int:
    """Clear the free text of these records (the people they are about are kept): what a
    retention rule does to old interactions and cases. One audit event for the batch."""
    rt, table = RECORD_TYPES[resource], TABLES[resource]
    free = _free_text(rt)
    ids = [uuid.UUID(i) for i in record_ids]
    if not free or not ids:
        return 0
    await _allowed(gw, actor, rt, "erase", "")
    pk = table._meta.primary_key
    rows = await table.select(*_columns(table, free)).where(pk.is_in(ids))
    pending = [row for row in rows if not is_cleared(row, free)]
    if not pending:
        return 0
    async with db.write_transaction():
        await table.update(_cleared(rt, table, free)).where(
            pk.is_in([row["id"] for row in pending])
        )
        await name_index.clear(rt, [row["id"] for row in pending])
        await mention_index.clear(rt, [row["id"] for row in pending])
        await gw.audit.append(
            _event(
                actor,
                "anonymise",
                rt.resource,
                tuple(dict.fromkeys(str(row["subject_id"]) for row in pending)),
                fields=[f.name for f in free],
                reason="retention_period_ended",
                detail={"records": len(pending)},
            )
        )
    return len(pending)
