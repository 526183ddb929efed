"""The vault: per-subject data keys and field encryption, driven by the data map."""

from __future__ import annotations

import datetime as dt
import functools
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from piccolo.columns import Column
from piccolo.query.functions.aggregate import Count
from piccolo.querystring import QueryString

from server import db
from server.datamap import Field, FieldKind, RecordType, normalize_index_value
from server.vault.blind_index import blind_index, index_width
from server.vault.envelope import (
    field_ad,
    open_field,
    parse_field,
    seal_field,
    unwrap_key,
    wrap_ad,
    wrap_key,
)
from server.vault.keys import KeyProvider, derive_key
from server.vault.register import ErasureRegister
from server.vault.tables import DataSubject, SubjectKey
from server.vault.words import index_terms, query_term, word_token


@dataclass(frozen=True)
class DataKey:
    """One person's data key, unwrapped for the operation at hand (never cached)."""

    subject_id: str
    version: int
    key: bytes = field(repr=False)

    @functools.cached_property
    def cipher(self) -> AESGCM:
        """The key's AES-GCM cipher, built once for all the fields this operation seals or
        opens under it (the key schedule costs more than a short field); it lives and dies
        with this object."""
        return AESGCM(self.key)


class Vault:
    def __init__(
        self,
        keys: KeyProvider,
        *,
        default_phone_region: str = "GB",
        register: ErasureRegister | None = None,
    ) -> None:
        self._keys = keys
        self._region = default_phone_region
        # Every shredded subject is listed here, outside the database, so that a restored
        # backup can be erased again (``consentry restore``). None: not kept (unit tests).
        self.register = register

    # --- subjects and keys -------------------------------------------------------------

    async def new_subject(self, kind: str) -> DataKey:
        """Create a data subject and its first data key (call inside the write transaction)."""
        return (await self.new_subjects(kind, 1))[0]

    async def new_subjects(self, kind: str, count: int) -> list[DataKey]:
        """Create ``count`` subjects with fresh data keys in multi-row inserts."""
        now = dt.datetime.now(dt.UTC)
        kek_id, kek = self._keys.active_kek()
        keys = [DataKey(str(uuid.uuid4()), 1, os.urandom(32)) for _ in range(count)]
        if not keys:
            return keys
        await db.insert_all(
            DataSubject,
            [DataSubject(id=uuid.UUID(k.subject_id), kind=kind, created_at=now) for k in keys],
        )
        await db.insert_all(
            SubjectKey,
            [
                SubjectKey(
                    subject_id=uuid.UUID(k.subject_id),
                    version=k.version,
                    kek_id=kek_id,
                    wrapped_key=wrap_key(kek, k.key, wrap_ad(k.subject_id, k.version, kek_id)),
                    created_at=now,
                )
                for k in keys
            ],
        )
        return keys

    async def keys_for(self, subject_ids: Iterable[str]) -> dict[str, DataKey]:
        """Current data keys for these subjects; a shredded subject is simply absent."""
        wanted = list({uuid.UUID(str(s)) for s in subject_ids})
        if not wanted:
            return {}
        rows = await SubjectKey.select(
            SubjectKey.subject_id, SubjectKey.version, SubjectKey.kek_id, SubjectKey.wrapped_key
        ).where(SubjectKey.subject_id.is_in(wanted))
        found: dict[str, DataKey] = {}
        for row in rows:
            sid = str(row["subject_id"])
            if sid in found and found[sid].version > row["version"]:
                continue
            ad = wrap_ad(sid, row["version"], row["kek_id"])
            key = unwrap_key(self._keys.kek(row["kek_id"]), row["wrapped_key"], ad)
            found[sid] = DataKey(sid, row["version"], key)
        return found

    def key_column(self, subject_column: Column) -> QueryString:
        """The subject's current wrapped data key as one more column of the caller's own
        SELECT (a correlated sub-select on ``subject_column``), so a record and its key
        come back in one statement; :meth:`key_from_column` unwraps it. NULL once the
        subject is shredded. Read from the table on every query and never cached, so a
        shredded key is unusable on the very next request in every worker."""
        outer = subject_column._meta.get_full_name(with_alias=False)
        keys = f'"{SubjectKey._meta.tablename}"'
        return QueryString(
            f"(SELECT CAST({keys}.version AS TEXT) || ' ' || {keys}.kek_id || ' ' || "  # noqa: S608 - table and column names only
            f"{keys}.wrapped_key FROM {keys} WHERE {keys}.subject_id = {outer} "
            f"ORDER BY {keys}.version DESC LIMIT 1)"
        )

    def key_from_column(self, subject_id: str, selected: str | None) -> DataKey | None:
        """The data key a :meth:`key_column` value holds, unwrapped (None: shredded)."""
        if not selected:
            return None
        version, rest = selected.split(" ", 1)
        kek_id, wrapped = rest.rsplit(" ", 1)  # base64 has no space; a KEK id might
        sid = str(uuid.UUID(str(subject_id)))
        ad = wrap_ad(sid, int(version), kek_id)
        return DataKey(sid, int(version), unwrap_key(self._keys.kek(kek_id), wrapped, ad))

    async def holds_key(self, subject_id: str) -> bool:
        """Whether any data key of the subject exists (without unwrapping it)."""
        sid = uuid.UUID(str(subject_id))
        return bool(await SubjectKey.count().where(SubjectKey.subject_id == sid))

    # --- fields ---------------------------------------------------------------------------

    def encrypt_values(
        self, record_type: RecordType, row_id: str, key: DataKey, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Turn cleaned field values into column values (ciphertext + blind indexes)."""
        columns: dict[str, Any] = {}
        for name, value in values.items():
            spec = record_type.field(name)
            if not spec.encrypted:
                columns[name] = value
                continue
            if value is None:
                columns[name] = None
            else:
                ad = field_ad(record_type.table, name, row_id, key.subject_id, key.version)
                columns[name] = seal_field(key.cipher, key.version, str(value), ad)
            if spec.blind_index:
                columns[spec.index_column] = (
                    None if value is None else self.index_token(record_type, spec, str(value))
                )
        return columns

    def decrypt_value(
        self, record_type: RecordType, spec: Field, row_id: str, key: DataKey, token: str
    ) -> Any:
        version, raw = parse_field(token)
        ad = field_ad(record_type.table, spec.name, row_id, key.subject_id, version)
        text = open_field(key.cipher, raw, ad)
        return int(text) if spec.kind is FieldKind.INTEGER else text

    def index_token(self, record_type: RecordType, spec: Field, value: str) -> int:
        normalized = normalize_index_value(spec, value, self._region)
        width = index_width(record_type.expected_rows)
        return blind_index(
            self._keys.index_root_key(), record_type.table, spec.name, normalized, width
        )

    def word_tokens(self, record_type: RecordType, spec: Field, value: str) -> set[int]:
        """Name-search tokens of one field value (server.vault.words)."""
        width = index_width(record_type.expected_rows)
        root = self._keys.index_root_key()
        return {
            word_token(root, record_type.table, spec.name, term, width)
            for term in index_terms(value)
        }

    def query_token(self, record_type: RecordType, spec: Field, word: str) -> int:
        """The token a normalised search word is looked up by in one field."""
        width = index_width(record_type.expected_rows)
        root = self._keys.index_root_key()
        return word_token(root, record_type.table, spec.name, query_term(word), width)

    def mention_token(self, table: str, column: str, term: str, width: int) -> int:
        """A mention-index token (server.gateway.mention_index): the blind index of one
        labelled term under the column's own ``<column>#mentions`` key, ``width`` bits."""
        root = self._keys.index_root_key()
        return blind_index(root, table, f"{column}#mentions", term, width)

    def normalize(self, spec: Field, value: str) -> str:
        return normalize_index_value(spec, value, self._region)

    async def shred_subject(self, subject_id: str) -> None:
        """Destroy every data key of a subject: all their ciphertext becomes unreadable.

        The subject goes into the erasure register first (durably, outside the database):
        a backup restored later still holds the key, and the register is how the restore
        knows to erase them again. On SQLite the deleted row's bytes are overwritten in
        the file (``secure_delete``); on PostgreSQL see :meth:`compact_keys`.
        """
        sid = uuid.UUID(subject_id)
        if self.register is not None:
            self.register.record(str(sid))
        if db.is_sqlite(SubjectKey._meta.db):
            await SubjectKey.raw("PRAGMA secure_delete = ON")
        await SubjectKey.delete().where(SubjectKey.subject_id == sid)
        await DataSubject.update({DataSubject.erased_at: dt.datetime.now(dt.UTC)}).where(
            DataSubject.id == sid
        )

    async def compact_keys(self) -> str:
        """Shorten the time a shredded key's bytes stay in the database files (call outside
        a transaction, after shredding). Returns what was done, for the audit detail.

        SQLite: the row was overwritten in the main file (``secure_delete``); a WAL
        checkpoint copies that page over and truncates the WAL file. PostgreSQL: ``VACUUM``
        of ``subject_key`` when the connected role owns the table; otherwise the table's
        autovacuum settings (zero thresholds, set by the migration) vacuum it within
        ``autovacuum_naptime``. Neither reaches WAL already written, archived WAL,
        replicas' own files or filesystem blocks: KEK pruning covers those.
        """
        engine = SubjectKey._meta.db
        if db.is_sqlite(engine):
            await engine.run_ddl("PRAGMA wal_checkpoint(TRUNCATE)")
            return "checkpoint"
        rows = await SubjectKey.raw(
            "SELECT pg_has_role(current_user, c.relowner, 'USAGE') AS owner "
            "FROM pg_class c WHERE c.oid = 'subject_key'::regclass"
        )
        if rows and rows[0]["owner"]:
            await engine.run_ddl("VACUUM subject_key")
            return "vacuum"
        return "autovacuum"

    # --- KEK rotation -----------------------------------------------------------------

    async def kek_usage(self) -> dict[str, int]:
        """How many wrapped data keys each KEK version wraps."""
        rows = await SubjectKey.select(SubjectKey.kek_id, Count(alias="n")).group_by(
            SubjectKey.kek_id
        )
        return {str(row["kek_id"]): int(row["n"]) for row in rows}

    async def rewrap_batch(self, limit: int) -> int:
        """Re-wrap up to ``limit`` data keys not under the active KEK with the active KEK,
        in one transaction; returns how many were looked at (0: none left).

        Each row is replaced only if it is still wrapped as it was read (a concurrent
        shred or rotation wins), and holds a complete wrapped key under the old or the new
        KEK at every moment, so a crash anywhere leaves every key readable.
        """
        kek_id, kek = self._keys.active_kek()
        rows = (
            await SubjectKey.select(
                SubjectKey.id,
                SubjectKey.subject_id,
                SubjectKey.version,
                SubjectKey.kek_id,
                SubjectKey.wrapped_key,
            )
            .where(SubjectKey.kek_id != kek_id)
            .order_by(SubjectKey.id)
            .limit(limit)
        )
        if not rows:
            return 0
        async with db.write_transaction():
            for row in rows:
                sid, version, old = str(row["subject_id"]), int(row["version"]), row["kek_id"]
                old_ad = wrap_ad(sid, version, old)
                key = unwrap_key(self._keys.kek(old), row["wrapped_key"], old_ad)
                wrapped = wrap_key(kek, key, wrap_ad(sid, version, kek_id))
                await SubjectKey.update(
                    {SubjectKey.kek_id: kek_id, SubjectKey.wrapped_key: wrapped}
                ).where((SubjectKey.id == row["id"]) & (SubjectKey.kek_id == old))
        return len(rows)

    # --- free text about a person outside the records (consent evidence) ----------------

    async def seal_for_subject(self, subject_id: str, label: str, plaintext: str) -> str | None:
        """Encrypt ``plaintext`` under the person's data key, bound to ``label`` (where it
        is kept): erasing the person makes it unreadable wherever it was copied to, an
        append-only table included. None if the person has no key (erased, or unknown)."""
        key = (await self.keys_for([subject_id])).get(str(uuid.UUID(str(subject_id))))
        if key is None:
            return None
        ad = field_ad(label, "", "", key.subject_id, key.version)
        return seal_field(key.cipher, key.version, plaintext, ad)

    async def seal_many(self, label: str, plaintexts: Mapping[str, str]) -> dict[str, str]:
        """:meth:`seal_for_subject` for many people at once (one key lookup): subject id ->
        token. People without a key (erased, unknown) are left out."""
        keys = await self.keys_for(plaintexts)
        sealed: dict[str, str] = {}
        for subject_id, plaintext in plaintexts.items():
            key = keys.get(str(uuid.UUID(str(subject_id))))
            if key is not None:
                ad = field_ad(label, "", "", key.subject_id, key.version)
                sealed[subject_id] = seal_field(key.cipher, key.version, plaintext, ad)
        return sealed

    async def open_for_subject(self, subject_id: str, label: str, token: str) -> str | None:
        """The plaintext of :meth:`seal_for_subject`; None once the person's key is gone."""
        key = (await self.keys_for([subject_id])).get(str(uuid.UUID(str(subject_id))))
        if key is None:
            return None
        version, raw = parse_field(token)
        return open_field(key.cipher, raw, field_ad(label, "", "", key.subject_id, version))

    # --- operational secrets (not customer data) --------------------------------------

    def _secret_key(self, label: str) -> bytes:
        # Derived from the index root, not the KEK, so KEK rotation does not strand them.
        return derive_key(self._keys.index_root_key(), f"consentry/secret/v1|{label}".encode())

    def derived_key(self, info: bytes) -> bytes:
        """A 256-bit key for one labelled use, from the index root (which never rotates):
        for signatures and pseudonyms that must stay valid for years, such as unsubscribe
        links and staff pseudonyms in subject exports. Never stored anywhere."""
        return derive_key(self._keys.index_root_key(), info)

    def seal_secret(self, label: str, context: str, plaintext: str) -> str:
        """Encrypt a staff secret (e.g. a TOTP seed) bound to ``label`` and ``context``."""
        ad = f"consentry/secret/v1|{label}|{context}".encode()
        return seal_field(self._secret_key(label), 0, plaintext, ad)

    def open_secret(self, label: str, context: str, token: str) -> str:
        _, raw = parse_field(token)
        ad = f"consentry/secret/v1|{label}|{context}".encode()
        return open_field(self._secret_key(label), raw, ad)
