"""The mention index: which records' free text may mention a person, found without
decrypting the database.

Every free-text field (``Category.FREE_TEXT`` in the data map: new record types and fields
join in by themselves) is indexed when it is written, in the write's own transaction, by
the terms that :class:`server.gateway.mentions.Matcher` needs to find anyone in it:

- ``w:<word>`` - each run of letters and digits of the folded text (case, accents and
  apostrophes unified exactly as the matcher compares names);
- ``a:<local>@<domain>`` - for each ``@``, the word before it and the word after it
  ("grace.a@example.org" gives ``a:a@example``);
- ``d:<six digits>`` - every six digits in a row of the text's digits, separators and
  words between them ignored (what the matcher asks of a text before it looks for a phone
  number: its national digits in a row).

A term is stored as its blind index (HMAC-SHA256 under a key of its own per table and
column, HKDF label ``<column>#mentions``, :meth:`server.vault.Vault.mention_token`)
truncated to :func:`width` bits, with the record type, record id and field name - never a
value. Replaced when the text changes, removed when the record is deleted, erased,
anonymised or scrubbed (re-indexed from what is left).

Looking a person up (:func:`candidates`) turns each of their names, addresses and numbers
into the terms any text that mentions it must hold (all the words of a name, the address's
``local@domain`` pair, all six-digit runs of a national number) and returns the records
holding them. The index only narrows: the callers decrypt the candidates and check them
with the matcher, so a truncated token's false matches cost a decryption, never a wrong
answer. While :func:`is_complete` is false (records written before the index existed and
not yet back-filled by :func:`rebuild_all`, or an index key that changed) the lookup
answers ``None`` and the callers read every free text, as before.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import phonenumbers

from server import db
from server.datamap import Field, RecordType
from server.gateway import mentions
from server.gateway.actor import Actor
from server.gateway.events import allowed_event
from server.gateway.tables import TABLES, MentionIndexState, MentionToken
from server.vault import Vault
from server.vault.blind_index import MAX_WIDTH, index_width
from server.vault.envelope import CiphertextError

if TYPE_CHECKING:
    from server.gateway.core import GatewayCore

TERMS_PER_RECORD = 32  # sizing: distinct terms of a typical note (the bench measures it)
DIGIT_RUN = 6  # digits in a row per phone term: mentions.SHORTEST_NATIONAL
STATE_ID = 1
_PROBE = ("consentry", "probe", "probe")  # a fixed term: its token changes with the key
_WORD = re.compile(r"\w+")
_BATCH = 1000
_LOOKUP_BATCH = 500

# The purpose a back-fill reads every free text under (as erasure scans do).
REINDEX_PURPOSE = "compliance"


# --- terms ---------------------------------------------------------------------------------


def _address_pairs(folded_text: str) -> set[str]:
    """``local@domain`` for each ``@``: the word run ending at it and the one starting after."""
    pairs: set[str] = set()
    at = folded_text.find("@")
    while at >= 0:
        start = at
        while start > 0 and (folded_text[start - 1].isalnum() or folded_text[start - 1] == "_"):
            start -= 1
        end = _WORD.match(folded_text, at + 1)
        pairs.add(folded_text[start:at] + "@" + (end.group(0) if end else ""))
        at = folded_text.find("@", at + 1)
    return pairs


def _digit_runs(digits: str) -> set[str]:
    return {digits[i : i + DIGIT_RUN] for i in range(len(digits) - DIGIT_RUN + 1)}


def text_terms(text: str) -> set[str]:
    """The labelled terms one free-text value is indexed by (before keying)."""
    folded = mentions.folded(text)
    terms = {"w:" + word for word in _WORD.findall(folded)}
    if "@" in folded:
        terms.update("a:" + pair for pair in _address_pairs(folded))
    digits = phonenumbers.normalize_digits_only(text)
    terms.update("d:" + run for run in _digit_runs(digits))
    return terms


Requirement = frozenset[str]  # terms a text must all hold to possibly mention one value


def requirements(identities: Iterable[mentions.Identity]) -> list[Requirement] | None:
    """For each name, address and number of these identities, the terms every text that
    the matcher finds it in holds; ``None`` if one of them has none to look up (a name
    without a letter or digit, a national number shorter than six digits): then only
    reading every text finds it."""
    found: set[Requirement] = set()
    for identity in identities:
        for value in identity.texts:
            key = mentions.fold_key(value)
            if not key:
                continue  # the matcher ignores it too
            if "@" in key:
                terms = frozenset("a:" + pair for pair in _address_pairs(key))
            else:
                terms = frozenset("w:" + word for word in _WORD.findall(key))
            if not terms:
                return None
            found.add(terms)
        for e164 in identity.phones:
            national = mentions.national_digits(e164)
            if not national:
                continue  # not a number: the matcher never finds it
            if len(national) < DIGIT_RUN:
                return None
            found.add(frozenset("d:" + run for run in _digit_runs(national)))
    # A requirement holding another one only finds records the smaller one finds already.
    return sorted((r for r in found if not any(o < r for o in found)), key=sorted)


# --- tokens --------------------------------------------------------------------------------


def indexed_fields(rt: RecordType) -> list[Field]:
    return mentions.free_text_fields(rt)


def width(rt: RecordType) -> int:
    """Token width of ``rt``'s fields: the blind-index rule (about two false matches per
    term looked up) for ``TERMS_PER_RECORD`` terms per expected record."""
    return index_width(rt.expected_rows * TERMS_PER_RECORD)


def _token(vault: Vault, rt: RecordType, spec: Field, term: str) -> int:
    return vault.mention_token(rt.table, spec.name, term, width(rt))


TokenRow = tuple[str, uuid.UUID, str, int]  # record type, record id, field, token


def token_rows(
    vault: Vault, rt: RecordType, row_id: str, values: Mapping[str, Any]
) -> list[TokenRow]:
    """The token rows of one record for the free-text fields present in ``values``."""
    rows: list[TokenRow] = []
    record_id = uuid.UUID(str(row_id))
    for spec in indexed_fields(rt):
        value = values.get(spec.name)
        if not isinstance(value, str) or not value:
            continue
        tokens = {_token(vault, rt, spec, term) for term in text_terms(value)}
        rows += [(rt.resource, record_id, spec.name, token) for token in sorted(tokens)]
    return rows


async def _insert(rows: Sequence[TokenRow]) -> None:
    """Multi-row INSERTs of plain tuples (building a Piccolo row object costs more than
    the HMACs of its token)."""
    for start in range(0, len(rows), _BATCH):
        chunk = rows[start : start + _BATCH]
        # Only placeholders are formatted in; every value is a bound parameter.
        placeholders = ", ".join(["({}, {}, {}, {})"] * len(chunk))
        sql = "INSERT INTO mention_token (record_type, record_id, field, token) VALUES "
        await MentionToken.raw(sql + placeholders, *(value for row in chunk for value in row))


# --- keeping the index in step (call in the write's transaction) ---------------------------


async def write_new(
    vault: Vault, rt: RecordType, records: Iterable[tuple[str, Mapping[str, Any]]]
) -> None:
    """The tokens of records just inserted (nothing to replace)."""
    if not indexed_fields(rt):
        return
    rows: list[TokenRow] = []
    for row_id, values in records:
        rows += token_rows(vault, rt, row_id, values)
    await _insert(rows)


async def write(
    vault: Vault, rt: RecordType, records: Iterable[tuple[str, Mapping[str, Any]]]
) -> None:
    """Replace the tokens of the free-text fields present in each record's ``values`` (an
    update or a scrub); fields not present keep theirs."""
    fields = indexed_fields(rt)
    if not fields:
        return
    rows: list[TokenRow] = []
    for row_id, values in records:
        changed = [f.name for f in fields if f.name in values]
        if not changed:
            continue
        await MentionToken.delete().where(
            (MentionToken.record_type == rt.resource)
            & (MentionToken.record_id == uuid.UUID(str(row_id)))
            & MentionToken.field.is_in(changed)
        )
        rows += token_rows(vault, rt, row_id, values)
    await _insert(rows)


async def clear(rt: RecordType, record_ids: Sequence[str | uuid.UUID]) -> None:
    """Remove every token of these records (deleted, or their free text cleared)."""
    if not indexed_fields(rt) or not record_ids:
        return
    ids = [uuid.UUID(str(i)) for i in record_ids]
    for start in range(0, len(ids), _BATCH):
        await MentionToken.delete().where(
            (MentionToken.record_type == rt.resource)
            & MentionToken.record_id.is_in(ids[start : start + _BATCH])
        )


async def clear_subject_rows(rt: RecordType, subject: uuid.UUID) -> None:
    """Remove the tokens of the person's records of one type (their tombstoning)."""
    if not indexed_fields(rt) or rt.resource not in TABLES:
        return
    table = TABLES[rt.resource]
    await MentionToken.delete().where(
        (MentionToken.record_type == rt.resource)
        & MentionToken.record_id.is_in(
            table.select(table._meta.primary_key).where(getattr(table, "subject_id") == subject)
        )
    )


async def clear_subject(subject: uuid.UUID) -> None:
    """Remove the tokens of every record carrying this subject id (their key is shredded:
    no token of a text nobody can read may stay)."""
    for rt, _ in mentions.record_types():
        await clear_subject_rows(rt, subject)


def _plain(gw: GatewayCore, rt: RecordType, row: Mapping[str, Any], key: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in indexed_fields(rt):
        raw = row.get(spec.name)
        if not raw or key is None:
            values[spec.name] = None
            continue
        try:
            values[spec.name] = gw.vault.decrypt_value(rt, spec, str(row["id"]), key, raw)
        except CiphertextError:
            values[spec.name] = None
    return values


async def _reindex_rows(gw: GatewayCore, rt: RecordType, rows: Sequence[Mapping[str, Any]]) -> None:
    keys = await gw.vault.keys_for(str(r["subject_id"]) for r in rows)
    await clear(rt, [r["id"] for r in rows])
    await write_new(
        gw.vault,
        rt,
        ((str(r["id"]), _plain(gw, rt, r, keys.get(str(r["subject_id"])))) for r in rows),
    )


def _columns(rt: RecordType) -> list[Any]:
    table = TABLES[rt.resource]
    names = ["id", "subject_id", *(f.name for f in indexed_fields(rt))]
    return [getattr(table, name) for name in names]


async def refresh(gw: GatewayCore, rt: RecordType, record_ids: Sequence[str | uuid.UUID]) -> None:
    """Recompute the tokens of these records from what they hold now (a merge or its undo
    re-sealed a contact's notes): call in that transaction."""
    if not indexed_fields(rt) or not record_ids:
        return
    table = TABLES[rt.resource]
    ids = [uuid.UUID(str(i)) for i in record_ids]
    rows = await table.select(*_columns(rt)).where(table._meta.primary_key.is_in(ids))
    await clear(rt, ids)  # records gone since are cleared too
    await _reindex_rows(gw, rt, rows)


# --- the watermark -------------------------------------------------------------------------


def probe(vault: Vault) -> int:
    """A token of a fixed term: the same as long as the index key is."""
    table, column, term = _PROBE
    return vault.mention_token(table, column, term, MAX_WIDTH)


async def _set_state(complete: bool, probe_token: int | None) -> None:
    now = dt.datetime.now(dt.UTC)
    async with db.write_transaction():
        updated = await (
            MentionIndexState.update(
                {
                    MentionIndexState.complete: complete,
                    MentionIndexState.probe: probe_token,
                    MentionIndexState.updated_at: now,
                }
            )
            .where(MentionIndexState.id == STATE_ID)
            .returning(MentionIndexState.id)
        )
        if not updated:
            await MentionIndexState.insert(
                MentionIndexState(id=STATE_ID, complete=complete, probe=probe_token, updated_at=now)
            )


async def is_complete(gw: GatewayCore) -> bool:
    """Whether every record's free text is in the index under the current key: the
    watermark the lookup trusts. The first look after the migration records the key's
    probe; a different one later (the index key changed) means rebuild first."""
    row = await MentionIndexState.select().where(MentionIndexState.id == STATE_ID).first()
    if row is None or not row["complete"]:
        return False
    current = probe(gw.vault)
    if row["probe"] is None:
        await _set_state(True, current)
        return True
    return int(row["probe"]) == current


async def mark_incomplete() -> None:
    """Stop trusting the index until the next full rebuild (what a restore from parts or
    a data-map change that makes an existing column free text calls for)."""
    await _set_state(False, None)


# --- looking people up ---------------------------------------------------------------------


async def candidates(
    gw: GatewayCore, identities: Sequence[mentions.Identity]
) -> dict[str, set[uuid.UUID]] | None:
    """Record ids, per record type, whose free text may mention any of ``identities``;
    ``None`` when the index cannot answer (not complete, or a value with nothing to look
    up): the caller then reads every free text. Tokens are truncated, so some candidates
    are false: the caller decrypts each and checks it with the matcher."""
    wanted = requirements(identities)
    if wanted is None or not await is_complete(gw):
        return None
    terms = sorted({term for requirement in wanted for term in requirement})
    found: dict[str, set[uuid.UUID]] = {}
    if not terms:
        return found
    for rt, _ in mentions.record_types():
        fields = indexed_fields(rt)
        if not fields:
            continue
        meaning: dict[tuple[str, int], list[str]] = {}  # (field, token) -> terms
        for spec in fields:
            for term in terms:
                meaning.setdefault((spec.name, _token(gw.vault, rt, spec, term)), []).append(term)
        tokens = sorted({token for _, token in meaning})
        held: dict[tuple[uuid.UUID, str], set[str]] = {}
        for start in range(0, len(tokens), _LOOKUP_BATCH):
            rows = await MentionToken.select(
                MentionToken.record_id, MentionToken.field, MentionToken.token
            ).where(
                (MentionToken.record_type == rt.resource)
                & MentionToken.token.is_in(tokens[start : start + _LOOKUP_BATCH])
            )
            for row in rows:
                these = meaning.get((row["field"], int(row["token"])))
                if these:
                    record = uuid.UUID(str(row["record_id"]))
                    held.setdefault((record, row["field"]), set()).update(these)
        ids = {
            record
            for (record, _), holds in held.items()
            if any(requirement <= holds for requirement in wanted)
        }
        if ids:
            found[rt.resource] = ids
    return found


# --- back-fill -----------------------------------------------------------------------------


async def rebuild(
    gw: GatewayCore,
    rt: RecordType,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Recompute the tokens of every record of ``rt``, a batch per transaction, each
    batch read inside its transaction (locked on PostgreSQL), so a write racing the
    rebuild is never overwritten with tokens of its old text. Returns records read."""
    fields = indexed_fields(rt)
    if not fields:
        return 0
    table = TABLES[rt.resource]
    pk = table._meta.primary_key
    done = 0
    last: Any = None
    while True:
        async with db.write_transaction():
            query = table.select(*_columns(rt))
            if last is not None:
                query = query.where(pk > last)
            query = query.order_by(pk).limit(batch_size)
            if not db.is_sqlite():  # SQLite's IMMEDIATE transaction already holds writers
                query = query.lock_rows()
            rows = await query
            if rows:
                await _reindex_rows(gw, rt, rows)
        if not rows:
            break
        last = rows[-1]["id"]
        done += len(rows)
        if progress is not None:
            progress(len(rows))
    # Tokens of records that no longer exist (a restore from parts).
    await MentionToken.delete().where(
        (MentionToken.record_type == rt.resource) & MentionToken.record_id.not_in(table.select(pk))
    )
    return done


async def count_records() -> int:
    """Records of every type with free text: what a rebuild's progress bar counts to."""
    types = [table for rt, table in mentions.record_types() if indexed_fields(rt)]
    return sum([int(await table.count()) for table in types])


async def size() -> tuple[int, int]:
    """Token rows, and records of the types with free text (ids and counts only)."""
    return int(await MentionToken.count()), await count_records()


async def rebuild_all(
    gw: GatewayCore,
    actor: Actor,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Index every record's free text (``consentry mentions reindex``), then mark the
    index complete. Until it finishes the index is not trusted (erasure and exports read
    every free text); interrupted, it is run again. One audit event per record type with
    the records read, never a value."""
    await mark_incomplete()
    done: dict[str, int] = {}
    for rt, _ in mentions.record_types():
        if not indexed_fields(rt):
            continue
        done[rt.resource] = await rebuild(gw, rt, batch_size=batch_size, progress=progress)
        async with db.write_transaction():
            await gw.audit.append(
                allowed_event(
                    actor,
                    "mentions_reindex",
                    rt.resource,
                    REINDEX_PURPOSE,
                    (),
                    fields=[f.name for f in indexed_fields(rt)],
                    detail={"records": done[rt.resource]},
                )
            )
    await _set_state(True, probe(gw.vault))
    return done
