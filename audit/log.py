"""Appending to the hash-chained audit log (sealing and verification: ``audit.trail``).

Every entry's hash covers its canonical JSON and the previous entry's hash, so editing,
deleting, inserting or reordering rows breaks the chain at the first altered sequence
number. The entry hashes are the leaves of the Merkle tree that signed heads cover, which
is what catches a rewritten chain and a truncated log.

Every entry also carries a MAC (``audit.entry_mac``) under a key the database never holds,
computed here at append time over the same canonical bytes: an entry appended by anyone
else - even with a correct hash and link - is named by the sealer and the verifier.

Appends are serialised: SQLite writes already hold the database writer lock (IMMEDIATE
transactions), and on PostgreSQL a transaction-scoped advisory lock orders concurrent
writers, so sequence numbers have no gaps or duplicates.

A read has no transaction of its own to put its event in, so every read would otherwise be
one more serialised write transaction (lock, read the chain head, insert, commit): that is
what capped a deployment near a thousand audited reads a second however many workers ran.
``append_committed`` groups them instead (group commit): the events of one process that
arrive while a batch is being written go together into the next one - one lock, one read of
the chain head, one multi-row insert, one commit. Each caller still waits for the commit of
its own event and gets the batch's error if it fails. The rows are exactly what one-by-one
appends would have written (same chain, sequence numbers, hashes and MACs).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from piccolo.columns import Varchar
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from audit.entry_mac import EntryMac
from audit.events import AuditEvent
from audit.tables import AuditRecord

GENESIS = "0" * 64
PG_APPEND_LOCK = 0x0C0A_0D17  # advisory lock id for audit appends
VERIFY_BATCH = 5000
# Events per group commit at most (16 columns each: well inside both engines' limits on
# bound parameters); whatever waits beyond goes into the next batch straight away.
GROUP_COMMIT_MAX = 500


NOT_HASHED = frozenset({"id", "hash", "mac"})


# The hashed columns of an entry, in canonical (sorted) order.
CANONICAL_KEYS = (
    "action",
    "actor_id",
    "actor_role",
    "detail",
    "fields",
    "outcome",
    "prev_hash",
    "purpose",
    "reason",
    "request_id",
    "resource_id",
    "resource_type",
    "seq",
    "subject_ids",
    "ts",
)
_CANONICAL_KEY_SET = frozenset(CANONICAL_KEYS)
_KEY_PREFIXES = tuple(("," if i else "{") + f'"{k}":' for i, k in enumerate(CANONICAL_KEYS))


def canonical(row: dict[str, Any]) -> bytes:
    """The bytes an entry's hash and MAC cover: every column but ``id``, ``hash`` and
    ``mac``, as compact JSON with sorted keys (docs/audit-format.md).

    That is ``json.dumps(body, sort_keys=True, separators=(",", ":"))`` (ASCII, non-ASCII
    as ``\\uXXXX``), which the standalone verifier reimplements and every stored hash and
    MAC covers. Verification recomputes it for every entry, so a row with exactly the
    entry's columns is written out directly, in fixed order, with the same C string
    escaper ``json.dumps`` uses: the same bytes in about half the time
    (tests/audit/test_audit_canonical.py compares them). Anything else takes ``json.dumps``.
    """
    if row.keys() - NOT_HASHED == _CANONICAL_KEY_SET:
        fast = _canonical_fixed(row)
        if fast is not None:
            return fast
    return _canonical_json(row)


def _canonical_json(row: dict[str, Any]) -> bytes:
    body = {k: row[k] for k in sorted(row) if k not in NOT_HASHED}
    ts = body["ts"]
    if isinstance(ts, dt.datetime):
        body["ts"] = ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _canonical_fixed(row: dict[str, Any]) -> bytes | None:
    """``_canonical_json``'s bytes for a row of strings, ints and None; None otherwise."""
    parts: list[str] = []
    for prefix, key in zip(_KEY_PREFIXES, CANONICAL_KEYS, strict=True):
        value = row[key]
        kind = type(value)
        if kind is str:
            parts.append(prefix + _json_string(value))
        elif kind is int:  # exactly int: a bool would be true/false
            parts.append(prefix + int.__repr__(value))
        elif value is None:
            parts.append(prefix + "null")
        elif kind is dt.datetime and key == "ts":
            utc = value.astimezone(dt.UTC)
            if utc.year < 1000:  # strftime and isoformat pad years differently
                return None
            stamp = utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
            parts.append(prefix + '"' + stamp + '"')
        else:
            return None
    parts.append("}")
    return "".join(parts).encode("ascii")


# ``_canonical_fixed``'s output as one format string: a prefix and a ``%s`` per column, the
# timestamp's quotes and ``Z`` included (it is passed without its ``+00:00``).
_CANONICAL_TEMPLATE = "".join(prefix + "%s" for prefix in _KEY_PREFIXES[:-1]) + (
    _KEY_PREFIXES[-1] + '"%sZ"}'
)
_SEQ = CANONICAL_KEYS.index("seq")
_TS = CANONICAL_KEYS.index("ts")
_RESOURCE_ID = CANONICAL_KEYS.index("resource_id")  # the one column that may be NULL


def canonical_values(values: Sequence[Any]) -> bytes:
    """``canonical`` of an entry given as its column values in ``CANONICAL_KEYS`` order (as
    verification reads them: tuples, no dict per row).

    The common row - every column text, ``resource_id`` text or NULL, ``seq`` an int and
    ``ts`` a UTC datetime from year 1000 on - is one ``%`` format over the same C string
    escaper ``json.dumps`` uses; ``encode_basestring_ascii`` raises TypeError on anything
    but text, and every other row takes ``canonical`` (tests/audit/test_audit_canonical.py
    compares the two over generated rows). No orjson: it writes non-ASCII as UTF-8 and
    DEL unescaped, where the canonical form has ``\\uXXXX``, and rejects lone surrogates.
    """
    (a, b, c, d, e, f, g, h, i, j, k, l, seq, n, ts) = values  # noqa: E741  # one per column
    if type(seq) is int and type(ts) is dt.datetime and ts.tzinfo is dt.UTC and ts.year >= 1000:
        esc = _json_string
        try:
            return (
                _CANONICAL_TEMPLATE
                % (
                    esc(a),
                    esc(b),
                    esc(c),
                    esc(d),
                    esc(e),
                    esc(f),
                    esc(g),
                    esc(h),
                    esc(i),
                    esc(j),
                    "null" if k is None else esc(k),
                    esc(l),
                    seq,
                    esc(n),
                    ts.isoformat(timespec="microseconds")[:-6],
                )
            ).encode("ascii")
        except TypeError:  # a column that is not text (only a damaged row): the exact path
            pass
    return canonical(dict(zip(CANONICAL_KEYS, values, strict=True)))


def entry_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@functools.cache
def _column_limit(name: str) -> int:
    """The column's length, read from the table so the two cannot drift apart (once per
    column: nine names, asked on every append)."""
    column = AuditRecord._meta.get_column_by_name(name)
    length = column.length if isinstance(column, Varchar) else None
    if length is None:
        raise TypeError(f"audit column {name} is not a bounded Varchar")
    return length


def fits(value: str, limit: int) -> bool:
    """Whether ``value`` may be stored as it is: printable text of at most ``limit`` characters.

    Most columns hold what the server produced, but a record id in a denial can be
    whatever a client put in a URL: 60,000 characters were once written into this
    append-only log on SQLite, and on PostgreSQL a NUL or a 65th character failed the
    insert (and with it the request)."""
    return len(value) <= limit and value.isprintable()


def stored_columns(event: AuditEvent, mac: EntryMac) -> tuple[dict[str, str | None], list[str]]:
    """The event's short text columns as stored, and the names of those that were replaced.

    A value that does not fit is stored as ``hmac:`` and the start of a keyed digest
    (``EntryMac.stand_in``): whoever holds the audit key can match it against a known
    value; whoever holds only the database cannot even confirm a guess. The event's
    ``detail`` names the replaced columns under ``hashed``."""
    columns: dict[str, str | None] = {
        "actor_id": event.actor_id,
        "actor_role": event.actor_role,
        "action": str(event.action),
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "purpose": event.purpose,
        "outcome": str(event.outcome),
        "reason": event.reason,
        "request_id": event.request_id,
    }
    hashed: list[str] = []
    for name, value in columns.items():
        if value is None:
            continue
        limit = _column_limit(name)
        if not fits(value, limit):
            columns[name] = ("hmac:" + mac.stand_in(value))[:limit]
            hashed.append(name)
    return columns, hashed


# Every stored column but the serial id, in table order.
_INSERT_COLUMNS = tuple(
    c._meta.db_column_name for c in AuditRecord._meta.columns if c._meta.db_column_name != "id"
)
_TABLE = AuditRecord._meta.tablename
_CHAIN_HEAD = f'SELECT "seq", "hash" FROM "{_TABLE}" ORDER BY "seq" DESC LIMIT 1'  # noqa: S608 - the table's name


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    """An insert of ``rows`` rows, with a ``{}`` placeholder per value (Piccolo's raw)."""
    names = ", ".join(f'"{name}"' for name in _INSERT_COLUMNS)
    one = "(" + ", ".join("{}" for _ in _INSERT_COLUMNS) + ")"
    head = f'INSERT INTO "{_TABLE}" ({names}) VALUES '  # noqa: S608 - the table's own names
    return head + ", ".join([one] * rows)


@dataclass
class GroupCommitStats:
    """How the grouped appends of this process went (tests, benchmarks, logs)."""

    commits: int = 0  # batches committed
    events: int = 0  # events in them
    failed_batches: int = 0
    largest: int = 0  # most events in one batch


class AuditLog:
    def __init__(
        self,
        mac: EntryMac,
        clock: Callable[[], dt.datetime] = _utc_now,
        *,
        outbox: Callable[[AuditEvent], Awaitable[None]] | None = None,
    ) -> None:
        self.mac = mac
        # The transactional outbox (server.webhooks.outbox): told of every event appended
        # in a change's transaction, so that what a change must tell others (webhooks,
        # Art. 19 notices) is queued in that same transaction, or not at all.
        self._outbox = outbox
        # Injectable only so that tests can lay events out over hours in a moment.
        self._clock = clock
        self._waiting: list[tuple[AuditEvent, asyncio.Future[int]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.group_stats = GroupCommitStats()

    async def append(self, event: AuditEvent) -> int:
        """Append one event inside the caller's transaction; returns its sequence number.

        Raises whatever the database raises: the caller's operation must then fail too.
        Called outside any transaction, it opens one of its own: the append lock is
        transaction-scoped on PostgreSQL, so without one two workers would read the same
        chain head and both write the next sequence number (one request then fails).
        """
        if not AuditRecord._meta.db.transaction_exists():
            async with self._own_transaction():
                return await self.append(event)
        [seq] = await self._append_all([event])
        if self._outbox is not None:
            await self._outbox(event)
        return seq

    async def append_committed(self, event: AuditEvent) -> int:
        """Append ``event`` and return once it is committed; returns its sequence number.

        For an event with no transaction of its own (a read, a denial): it is committed in
        one batch with the other events this process is appending at the moment. Raises if
        that batch is not committed - the caller's operation fails, as does every other in
        the batch. Inside a transaction the event simply joins it (``append``).
        """
        if AuditRecord._meta.db.transaction_exists():
            return await self.append(event)
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[int] = loop.create_future()
        self._waiting.append((event, committed))
        committer = self._committer
        if committer is None or committer.done() or committer.get_loop() is not loop:
            # A fresh context: the committer must not inherit a caller's transaction (or
            # its log context); it lives as long as events keep arriving.
            self._committer = loop.create_task(
                self._commit_waiting(), context=contextvars.Context()
            )
        return await committed

    async def _commit_waiting(self) -> None:
        """Commit what is waiting, batch after batch, until nothing is left."""
        while self._waiting:
            batch = self._waiting[:GROUP_COMMIT_MAX]
            del self._waiting[: len(batch)]
            try:
                seqs = await self._commit([event for event, _ in batch])
            except Exception as exc:  # every request in the batch fails with it
                self.group_stats.failed_batches += 1
                for _, committed in batch:
                    if not committed.done():
                        committed.set_exception(exc)
                continue
            except BaseException:  # cancelled (the loop is shutting down): fail everyone
                stopped = RuntimeError("the audit committer stopped before this event")
                for _, committed in [*batch, *self._waiting]:
                    if not committed.done():
                        committed.set_exception(stopped)
                self._waiting.clear()
                raise
            stats = self.group_stats
            stats.commits += 1
            stats.events += len(batch)
            stats.largest = max(stats.largest, len(batch))
            for (_, committed), seq in zip(batch, seqs, strict=True):
                if not committed.done():  # its request may have been cancelled meanwhile
                    committed.set_result(seq)

    async def _commit(self, events: Sequence[AuditEvent]) -> list[int]:
        async with self._own_transaction():
            return await self._append_all(events)

    @staticmethod
    def _own_transaction() -> AbstractAsyncContextManager[Any]:
        """A write transaction for appends that have none (SQLite: IMMEDIATE, so the writer
        lock is held from the chain-head read to the insert)."""
        engine = AuditRecord._meta.db
        if isinstance(engine, SQLiteEngine):
            return engine.transaction(transaction_type=TransactionType.immediate)
        transaction: AbstractAsyncContextManager[Any] = engine.transaction()
        return transaction

    async def _append_all(self, events: Sequence[AuditEvent]) -> list[int]:
        """Chain ``events`` onto the log in the current transaction, in one insert.

        Plain parameterised SQL rather than Piccolo's query builder: building an insert
        through ``AuditRecord(**row)`` cost more than hashing and MAC-ing the row, on the
        path every read takes. The values, and so the stored rows, are the same."""
        engine = AuditRecord._meta.db
        if engine.engine_type == "postgres":
            await AuditRecord.raw("SELECT pg_advisory_xact_lock({})", PG_APPEND_LOCK)
        last = await AuditRecord.raw(_CHAIN_HEAD).run()
        seq = int(last[0]["seq"]) if last else 0
        prev_hash = str(last[0]["hash"]) if last else GENESIS
        values: list[Any] = []
        seqs: list[int] = []
        for event in events:
            seq += 1
            row = self._row(event, seq, prev_hash)
            prev_hash = row["hash"]
            values.extend(row[name] for name in _INSERT_COLUMNS)
            seqs.append(seq)
        # A large batch stays under the engines' bind-parameter limit (32,767 on asyncpg).
        per_statement = max(1, 32_000 // len(_INSERT_COLUMNS))
        width = len(_INSERT_COLUMNS)
        for start in range(0, len(seqs), per_statement):
            chunk = values[start * width : (start + per_statement) * width]
            await AuditRecord.raw(_insert_sql(len(chunk) // width), *chunk).run()
        return seqs

    def _row(self, event: AuditEvent, seq: int, prev_hash: str) -> dict[str, Any]:
        columns, hashed = stored_columns(event, self.mac)
        detail = {**event.detail, "hashed": ",".join(hashed)} if hashed else event.detail
        row: dict[str, Any] = {
            "seq": seq,
            "ts": self._clock(),
            **columns,
            "subject_ids": json.dumps(sorted(set(event.subject_ids))),
            "fields": json.dumps(sorted(set(event.fields))),
            "detail": json.dumps(detail, sort_keys=True),
            "prev_hash": prev_hash,
        }
        body = canonical(row)
        row["hash"] = hashlib.sha256(body).hexdigest()
        row["mac"] = self.mac.mac(body)
        return row
