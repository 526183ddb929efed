# Over 800 lines: AuditTrail seals, verifies and proves one Merkle log; all three share its
# signed heads, frontier and MAC key, and the verifier must read as one algorithm next to
# docs/audit-format.md and audit/standalone_verify.py.
"""Sealing, verifying and proving the audit trail.

The log (``audit``) is a gap-free sequence of entries, each carrying the hash of its own
canonical contents and of the entry before it. Sealing folds those entry hashes into an
RFC 6962 Merkle tree and writes a signed tree head (``audit_checkpoint``) covering every
event so far; server workers seal at least once per second while events arrive.

What each layer catches:

- an edited row: its recomputed hash no longer matches (the sequence number is named);
- a deleted or inserted row: a gap or a broken link in the sequence;
- a consistently rewritten history (hashes recomputed): the Merkle root no longer matches
  a signed head, which cannot be re-signed without the key kept outside the database;
- deleted newest rows: a signed head covers more events than the log holds;
- deleted newest rows *and* heads: only a head kept outside the database can tell - the
  witness file every sealer appends its heads to, a head exported earlier (``checkpoints
  export``) or the verifier's own record of what it verified last;
- an entry appended by someone holding the database credentials, however well chained:
  its MAC (``audit.entry_mac``) does not verify, and the sealer will not sign past it.

The sealer trusts the database no more than the verifier does: it continues only from the
newest head whose signature verifies and whose root matches the log it covers, reports
every other checkpoint row (``findings``) instead of obeying it, and says how long the
oldest unsigned entry has waited (``unsigned_backlog``), which ``/ready`` and the alerts use.

Several workers may seal at once: on PostgreSQL the sealer takes a transaction-scoped
advisory lock (others skip their turn), on SQLite the write lock; ``tree_size`` is unique,
so two heads for the same size cannot both be written and the tree cannot fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import hashlib
import hmac
import json
import os
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from audit.entry_mac import BASELINE_ACTION, MAC_DOMAIN, Baseline, EntryMac, baseline_of
from audit.events import AuditEvent, Outcome, audit_event
from audit.log import (
    CANONICAL_KEYS,
    GENESIS,
    NOT_HASHED,
    VERIFY_BATCH,
    canonical,
    canonical_values,
    entry_hash,
)
from audit.merkle import Frontier, MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from audit.signing import SignedTreeHead, TreeHeadSigner, TreeHeadVerifier
from audit.tables import AuditCheckpoint, AuditRecord
from audit.witness import WitnessFile

log = structlog.get_logger("consentry.audit")

PG_SEAL_LOCK = 0x0C0A_5EA1  # advisory lock id for sealing (appends use PG_APPEND_LOCK)
SEAL_BATCH = 50_000  # events folded into one head at most; the next round takes the rest
SLICE_FORMAT = "consentry-audit-slice/1"
# Inclusion proofs for a data subject (their access log, their receipts): each event's
# hash, never its contents, which name staff accounts and other people.
PROOFS_FORMAT = "consentry-inclusion-proofs/1"
CHECKPOINTS_FORMAT = "consentry-audit-checkpoints/1"
STATE_FORMAT = "consentry-audit-verified/1"
EXPORT_FORMAT = "consentry-audit-export/1"
HEADS_PAGE = 50  # checkpoint rows read at a time while looking for a genuine head
# What verification reads of each entry, as tuples: the hashed columns in canonical order,
# then the stored hash and MAC (``_HASH``, ``_MAC``).
ENTRY_COLUMNS = (*CANONICAL_KEYS, "hash", "mac")
# The same statement for each driver (test_audit_verify_fast compares what it reads with
# Piccolo's select()).
_SQLITE_ENTRIES = (
    'SELECT "action", "actor_id", "actor_role", "detail", "fields", "outcome", "prev_hash", '
    '"purpose", "reason", "request_id", "resource_id", "resource_type", "seq", '
    '"subject_ids", "ts", "hash", "mac" FROM "audit" WHERE "seq" > ? ORDER BY "seq" LIMIT ?'
)
_POSTGRES_ENTRIES = (
    'SELECT "action", "actor_id", "actor_role", "detail", "fields", "outcome", "prev_hash", '
    '"purpose", "reason", "request_id", "resource_id", "resource_type", "seq", '
    '"subject_ids", "ts", "hash", "mac" FROM "audit" WHERE "seq" > $1 ORDER BY "seq" LIMIT $2'
)
_PREV, _SEQ, _HASH, _MAC = (
    ENTRY_COLUMNS.index(name) for name in ("prev_hash", "seq", "hash", "mac")
)
_HASHED = len(CANONICAL_KEYS)


class Problem(enum.StrEnum):
    """What the sealer found; each is logged and raised as an alert (ids and counts only)."""

    FORGED_ENTRY = "forged_entry"  # an entry whose MAC does not verify (or is missing)
    TAMPERED_ENTRY = "tampered_entry"  # an entry that does not match its hash or link
    MISSING_ENTRY = "missing_entry"  # a gap in the sequence
    BOGUS_HEAD = "bogus_head"  # a checkpoint row whose signature or frontier is wrong
    HEAD_CONTRADICTS_LOG = "head_contradicts_log"  # a genuine head the log no longer matches
    SEALING_STALLED = "sealing_stalled"  # an entry unsigned for longer than the threshold


@dataclass(frozen=True)
class Finding:
    kind: Problem
    seq: int  # the entry's sequence number, or the checkpoint's tree size
    problem: str  # one line, sequence numbers and sizes only
    count: int = 1  # entries concerned (unsigned entries, for a stalled sealer)


class SealRefused(Exception):
    """The events to seal do not fit the signed history: sealing them would hide tampering."""

    def __init__(self, problem: str, kind: Problem = Problem.TAMPERED_ENTRY, seq: int = 0) -> None:
        super().__init__(problem)
        self.kind = kind
        self.seq = seq


@dataclass(frozen=True)
class Backlog:
    """Entries after the newest genuinely signed head."""

    next_seq: int  # the oldest unsigned entry
    unsigned: int
    since: dt.datetime  # when it was first seen unsigned here, or its own time if older

    def age(self, now: dt.datetime | None = None) -> float:
        return ((now or dt.datetime.now(dt.UTC)) - self.since).total_seconds()


@dataclass
class _Anchor:
    """The newest head the sealer trusts: signature verified, root matched against the log."""

    head: SignedTreeHead
    frontier: Frontier
    last_hash: str


@dataclass(frozen=True)
class VerificationReport:
    ok: bool
    mode: str  # "full" | "incremental"
    checked: int  # events whose contents were recomputed
    first_bad_seq: int | None = None
    problem: str = ""
    head: SignedTreeHead | None = None  # the latest signed head that was checked
    unsealed: int = 0  # events after the latest signed head
    heads_checked: int = 0
    external_heads_checked: int = 0
    macs_checked: bool = False  # False: this verifier holds no MAC key (public keys only)


@dataclass(frozen=True)
class SliceReport:
    ok: bool
    events: int
    problems: list[str] = field(default_factory=list)
    head: SignedTreeHead | None = None


def _head_of(row: dict[str, Any]) -> SignedTreeHead:
    return SignedTreeHead(
        tree_size=int(row["tree_size"]),
        root_hash=str(row["root_hash"]),
        signed_at=row["signed_at"],
        key_id=str(row["key_id"]),
        signature=str(row["signature"]),
    )


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _same_head(a: SignedTreeHead, b: SignedTreeHead) -> bool:
    return (a.tree_size, a.root_hash, a.signature) == (b.tree_size, b.root_hash, b.signature)


def _event_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as exported: every column that is hashed, in its canonical form."""
    doc = {key: value for key, value in row.items() if key != "id"}
    doc["ts"] = _iso(row["ts"]) if isinstance(row["ts"], dt.datetime) else row["ts"]
    return doc


async def _read_ahead(
    fetch: Callable[[int], Awaitable[Sequence[Sequence[Any]]]], after_seq: int
) -> AsyncGenerator[Sequence[Sequence[Any]], None]:
    """The batches ``fetch`` returns, each asked for while the previous one is checked."""
    pending = asyncio.ensure_future(fetch(after_seq))
    try:
        while True:
            batch = await pending
            if not batch:
                return
            pending = asyncio.ensure_future(fetch(int(batch[-1][_SEQ])))
            yield batch
    finally:
        # Let a read in flight finish (at most one batch): its connection is closed next.
        with contextlib.suppress(Exception):
            await asyncio.shield(pending)


async def _fetch_piccolo(after_seq: int) -> list[tuple[Any, ...]]:
    rows = (
        await AuditRecord.select()
        .where(AuditRecord.seq > after_seq)
        .order_by(AuditRecord.seq)
        .limit(VERIFY_BATCH)
    )
    return [tuple(row[name] for name in ENTRY_COLUMNS) for row in rows]


async def _fetch_postgres(engine: PostgresEngine, after_seq: int) -> Sequence[Sequence[Any]]:
    rows: list[Any]
    if engine.pool is not None:
        async with engine.pool.acquire() as connection:
            rows = await connection.fetch(_POSTGRES_ENTRIES, after_seq, VERIFY_BATCH)
    else:
        connection = await engine.get_new_connection()
        try:
            rows = await connection.fetch(_POSTGRES_ENTRIES, after_seq, VERIFY_BATCH)
        finally:
            await connection.close()
    return rows


@dataclass
class _Walk:
    """The state of a verification pass over the events in sequence order."""

    frontier: Frontier
    last_hash: str
    checked: int = 0
    before_last: str = ""  # the hash of the entry before the last one (inserted rows)


class AuditTrail:
    def __init__(
        self,
        signer: TreeHeadSigner | None,
        *,
        trusted: TreeHeadVerifier | None = None,
        state_file: Path | None = None,
        mac: EntryMac | None = None,
        witness: WitnessFile | None = None,
    ) -> None:
        """``signer`` may be None for a verifier that holds only public keys (an auditor's
        machine): it can verify and prove, not seal, and cannot check entry MACs unless it
        is given the MAC key (``mac``). ``witness``: where signed heads are published."""
        self._signer = signer
        self.key_id = signer.key_id if signer else ""
        self.public_key_b64 = signer.public_key_b64 if signer else ""
        keys = [signer.public_key] if signer else []
        self.verifier = trusted or TreeHeadVerifier(keys)
        self.state_file = state_file
        self.mac = mac if mac is not None else (signer.entry_mac() if signer else None)
        self.witness = witness
        self._anchor: _Anchor | None = None
        self._baseline: Baseline | None = None
        self._findings: list[Finding] = []
        self._reported: set[tuple[Problem, int]] = set()
        self._unsigned_seen: tuple[int, dt.datetime] | None = None

    @property
    def signer(self) -> TreeHeadSigner:
        if self._signer is None:
            raise SealRefused("no audit signing key here: this verifier cannot seal")
        return self._signer

    # --- reading ------------------------------------------------------------------------

    async def latest_head(self) -> SignedTreeHead | None:
        """The newest checkpoint whose signature verifies (a bogus row is not a head)."""
        return await self.newest_genuine_head()

    async def head_at(self, tree_size: int) -> SignedTreeHead | None:
        row = await AuditCheckpoint.select().where(AuditCheckpoint.tree_size == tree_size).first()
        return _head_of(row) if row else None

    async def newest_event(self) -> tuple[int, dt.datetime] | None:
        row = (
            await AuditRecord.select(AuditRecord.seq, AuditRecord.ts)
            .order_by(AuditRecord.seq, ascending=False)
            .first()
        )
        return (int(row["seq"]), row["ts"]) if row else None

    async def _events(
        self, after_seq: int, upto: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        cursor = after_seq
        while True:
            query = AuditRecord.select().where(AuditRecord.seq > cursor)
            if upto is not None:
                query = query.where(AuditRecord.seq <= upto)
            batch = await query.order_by(AuditRecord.seq).limit(VERIFY_BATCH)
            if not batch:
                return
            for row in batch:
                yield row
            cursor = int(batch[-1]["seq"])

    async def _entry_batches(self, after_seq: int) -> AsyncGenerator[Sequence[Sequence[Any]], None]:
        """Entries after ``after_seq`` in sequence order, ``VERIFY_BATCH`` rows at a time, as
        tuples of ``ENTRY_COLUMNS``: memory stays bounded (two batches: the next one is read
        while this one is checked) however long the log, and no per-row object is built.
        The values are what Piccolo's ``select()`` reads (same drivers, same SQLite
        converters), only not put into dicts.

        Inside a transaction the rows come through Piccolo (they may include the
        transaction's own writes); otherwise straight from the driver: a read-only
        connection of its own on SQLite (in a thread, as Piccolo's are), the pool on
        PostgreSQL.
        """
        engine = AuditRecord._meta.db
        direct = engine.current_transaction.get() is None and self._columns_are_canonical()
        if direct and isinstance(engine, SQLiteEngine):
            connection = sqlite3.connect(**engine.connection_kwargs, check_same_thread=False)
            try:
                connection.execute("PRAGMA query_only = 1")

                async def from_sqlite(after: int) -> Sequence[Sequence[Any]]:
                    arguments = (after, VERIFY_BATCH)
                    rows: list[Any] = await asyncio.to_thread(
                        lambda: connection.execute(_SQLITE_ENTRIES, arguments).fetchall()
                    )
                    return rows

                # Closed explicitly, so a read still in flight ends before its connection.
                async with contextlib.aclosing(_read_ahead(from_sqlite, after_seq)) as batches:
                    async for batch in batches:
                        yield batch
            finally:
                connection.close()
            return
        if direct and isinstance(engine, PostgresEngine):
            fetch: Callable[[int], Awaitable[Sequence[Sequence[Any]]]] = partial(
                _fetch_postgres, engine
            )
        else:
            fetch = _fetch_piccolo
        async with contextlib.aclosing(_read_ahead(fetch, after_seq)) as batches:
            async for batch in batches:
                yield batch

    @staticmethod
    def _columns_are_canonical() -> bool:
        """Whether the table's columns are exactly the ones ``ENTRY_COLUMNS`` names: the
        canonical form covers every column, so one added later must not be left out."""
        names = {column._meta.db_column_name for column in AuditRecord._meta.columns}
        return names - NOT_HASHED == set(CANONICAL_KEYS)

    async def _heads(self, after_size: int = 0) -> list[SignedTreeHead]:
        rows = (
            await AuditCheckpoint.select()
            .where(AuditCheckpoint.tree_size > after_size)
            .order_by(AuditCheckpoint.tree_size)
        )
        return [_head_of(row) for row in rows]

    async def _leaves(self, upto: int) -> MerkleTree:
        """Leaf hashes of events 1..upto from the stored entry hashes (for proofs: a proof
        built from tampered hashes simply fails against the signed root)."""
        leaves: list[bytes] = []
        cursor = 0
        while cursor < upto:
            batch = (
                await AuditRecord.select(AuditRecord.seq, AuditRecord.hash)
                .where((AuditRecord.seq > cursor) & (AuditRecord.seq <= upto))
                .order_by(AuditRecord.seq)
                .limit(VERIFY_BATCH)
            )
            if not batch:
                break
            leaves.extend(leaf_hash(bytes.fromhex(str(row["hash"]))) for row in batch)
            cursor = int(batch[-1]["seq"])
        if len(leaves) != upto:
            raise SealRefused(f"the log holds {len(leaves)} of the {upto} events signed for")
        return MerkleTree(leaves)

    # --- sealing ------------------------------------------------------------------------

    async def seal(self) -> SignedTreeHead | None:
        """Sign a head over every event committed so far; None if nothing new (or another
        worker is sealing right now). Raises SealRefused if the new events do not fit.

        The new head is published to the witness (if any) once it is committed."""
        engine = AuditCheckpoint._meta.db
        if isinstance(engine, SQLiteEngine):
            # IMMEDIATE: take SQLite's write lock up front so no append lands mid-seal.
            async with engine.transaction(transaction_type=TransactionType.immediate):
                head = await self._seal_locked()
        else:
            async with engine.transaction():
                got = await AuditCheckpoint.raw(
                    "SELECT pg_try_advisory_xact_lock({}) AS ok", PG_SEAL_LOCK
                )
                if not got or not got[0]["ok"]:
                    return None
                head = await self._seal_locked()
        if head is not None and self.witness is not None:
            self.witness.offer(head)
        return head

    # The sealer's view of the database: only genuinely signed heads count.

    def _report(self, finding: Finding) -> None:
        """Remember a problem for ``take_findings`` (once per kind and position)."""
        key = (finding.kind, finding.seq)
        if key not in self._reported:
            self._reported.add(key)
            self._findings.append(finding)

    def take_findings(self) -> list[Finding]:
        """Problems found since the last call (the background job logs and alerts them)."""
        found, self._findings = self._findings, []
        return found

    async def _checkpoint_rows(self) -> AsyncIterator[dict[str, Any]]:
        """Checkpoint rows, largest tree size first: the newest alone (usually genuine),
        then a page at a time."""
        below: int | None = None
        page = 1
        while True:
            query = AuditCheckpoint.select().order_by(AuditCheckpoint.tree_size, ascending=False)
            if below is not None:
                query = query.where(AuditCheckpoint.tree_size < below)
            rows = await query.limit(page)
            for row in rows:
                yield row
            if len(rows) < page:
                return
            below = int(rows[-1]["tree_size"])
            page = HEADS_PAGE

    def _head_problem(self, row: dict[str, Any]) -> tuple[SignedTreeHead, str]:
        head = _head_of(row)
        problem = self.verifier.problem(head)
        if problem:
            return head, problem
        try:
            frontier = Frontier.from_hex(head.tree_size, json.loads(row["frontier"]))
        except (TypeError, ValueError):
            return head, "its frontier is malformed"
        if not frontier.is_well_formed() or frontier.root().hex() != head.root_hash:
            return head, "its frontier does not fold to its root"
        return head, ""

    async def newest_genuine_head(self) -> SignedTreeHead | None:
        """The largest checkpoint whose signature verifies (signature only: cheap)."""
        async for row in self._checkpoint_rows():
            head = _head_of(row)
            if not self.verifier.problem(head):
                return head
        return None

    async def _trusted_anchor(self) -> _Anchor | None:
        """The newest head that is signed by a trusted key and matches the log; every
        larger checkpoint row is reported as bogus and ignored."""
        bogus: list[tuple[int, str]] = []
        try:
            async for row in self._checkpoint_rows():
                head, problem = self._head_problem(row)
                if self._anchor is not None and _same_head(self._anchor.head, head):
                    return self._anchor
                if problem:
                    bogus.append((head.tree_size, problem))
                    continue
                return await self._anchor_at(head)
            return None
        finally:
            if bogus:  # one finding (and alert) per largest bogus row, however many
                size, problem = bogus[0]
                what = (
                    f"checkpoint over {size} entries ignored"
                    if len(bogus) == 1
                    else f"{len(bogus)} checkpoints ignored, the largest over {size} entries"
                )
                self._report(Finding(Problem.BOGUS_HEAD, size, f"{what}: {problem}", len(bogus)))

    async def _anchor_at(self, head: SignedTreeHead) -> _Anchor:
        """Check a genuine head against the log it covers: fold the stored entry hashes
        (from the previous anchor if it is a prefix, else from the start) and compare."""
        anchor = self._anchor
        if anchor is not None and anchor.head.tree_size <= head.tree_size:
            frontier, last_hash = anchor.frontier.copy(), anchor.last_hash
        else:
            frontier, last_hash = Frontier(), GENESIS
        start = frontier.size
        while frontier.size < head.tree_size:
            batch = (
                await AuditRecord.select(AuditRecord.seq, AuditRecord.hash)
                .where((AuditRecord.seq > frontier.size) & (AuditRecord.seq <= head.tree_size))
                .order_by(AuditRecord.seq)
                .limit(VERIFY_BATCH)
            )
            if not batch or int(batch[0]["seq"]) != frontier.size + 1:
                break
            for row in batch:
                if int(row["seq"]) != frontier.size + 1:
                    break
                frontier.append(leaf_hash(bytes.fromhex(str(row["hash"]))))
                last_hash = str(row["hash"])
        if frontier.size != head.tree_size or frontier.root().hex() != head.root_hash:
            problem = (
                f"the log does not match the signed head over {head.tree_size} entries "
                f"(entries {start + 1}-{head.tree_size} were changed or deleted)"
            )
            self._report(Finding(Problem.HEAD_CONTRADICTS_LOG, head.tree_size, problem))
            raise SealRefused(problem, Problem.HEAD_CONTRADICTS_LOG, start + 1)
        self._anchor = _Anchor(head, frontier, last_hash)
        return self._anchor

    async def _mac_baseline(self) -> Baseline | None:
        """The entry in which ``consentry audit mac-existing`` vouched for the entries
        written before MACs (only one whose own MAC verifies counts)."""
        if self._baseline is not None or self.mac is None:
            return self._baseline
        rows = await AuditRecord.select().where(AuditRecord.action == BASELINE_ACTION)
        for row in sorted(rows, key=lambda r: int(r["seq"])):
            baseline = baseline_of(row)
            if baseline and row["mac"] and self.mac.verifies(canonical(row), str(row["mac"])):
                self._baseline = baseline
                break
        return self._baseline

    async def mac_problem(self, row: dict[str, Any], body: bytes | None = None) -> str:
        """Empty if the entry was written by a holder of the MAC key (or is a legacy entry a
        baseline vouches for), else what is wrong; empty when this trail holds no MAC key.
        ``body``: the entry's canonical bytes, if the caller has them already."""
        if self.mac is None:
            return ""
        seq = int(row["seq"])
        if row.get("mac"):
            if self.mac.verifies(canonical(row) if body is None else body, str(row["mac"])):
                return ""
            return f"entry {seq}: its MAC does not verify: not written by this server"
        baseline = await self._mac_baseline()
        if baseline is not None and seq <= baseline.legacy_upto:
            return ""
        return f"entry {seq} carries no MAC: not written by this server"

    async def _seal_locked(self) -> SignedTreeHead | None:
        anchor = await self._trusted_anchor()
        size = anchor.head.tree_size if anchor else 0
        batch = (
            await AuditRecord.select()
            .where(AuditRecord.seq > size)
            .order_by(AuditRecord.seq)
            .limit(SEAL_BATCH)
        )
        if not batch:
            return None
        if anchor is not None:
            frontier, last_hash = anchor.frontier.copy(), anchor.last_hash
        else:
            frontier, last_hash = Frontier(), GENESIS
        refusal: SealRefused | None = None
        for row in batch:
            seq = int(row["seq"])
            if seq != frontier.size + 1:
                missing = frontier.size + 1
                refusal = SealRefused(f"event {missing} is missing", Problem.MISSING_ENTRY, missing)
                break
            body = canonical(row)
            if row["prev_hash"] != last_hash or hashlib.sha256(body).hexdigest() != row["hash"]:
                refusal = SealRefused(
                    f"event {seq} does not match its hash", Problem.TAMPERED_ENTRY, seq
                )
                break
            mac_problem = await self.mac_problem(row, body)
            if mac_problem:
                refusal = SealRefused(mac_problem, Problem.FORGED_ENTRY, seq)
                break
            frontier.append(leaf_hash(bytes.fromhex(str(row["hash"]))))
            last_hash = str(row["hash"])
        if refusal is not None:
            self._report(Finding(refusal.kind, refusal.seq, str(refusal)))
            if frontier.size == size:
                raise refusal
            # Sign what precedes the bad entry; the next round stops at it and says so.
        head = self.signer.sign(frontier.size, frontier.root(), dt.datetime.now(dt.UTC))
        await AuditCheckpoint.insert(
            AuditCheckpoint(
                tree_size=head.tree_size,
                root_hash=head.root_hash,
                frontier=json.dumps(frontier.to_hex()),
                signed_at=head.signed_at,
                key_id=head.key_id,
                signature=head.signature,
            )
        ).run()
        # If this transaction does not commit, the next round finds a smaller genuine head
        # than this anchor and rebuilds from the log.
        self._anchor = _Anchor(head, frontier.copy(), last_hash)
        return head

    async def seal_all(self) -> SignedTreeHead | None:
        """Seal until every committed event is covered (the CLI, after writing)."""
        while True:
            newest = await self.newest_event()
            latest = await self.newest_genuine_head()
            if newest is None or (latest is not None and latest.tree_size >= newest[0]):
                if self.witness is not None:
                    if latest is not None:
                        self.witness.offer(latest)
                    self.witness.flush(force=True)
                return latest
            head = await self.seal()
            if head is None:  # another worker holds the lock: let it finish
                await asyncio.sleep(0.05)

    async def unsigned_backlog(self, now: dt.datetime | None = None) -> Backlog | None:
        """Entries after the newest genuinely signed head, and since when the oldest has
        waited: the first time this process saw it unsigned, or its own time if older
        (an entry's time is written by whoever wrote it, so it can only make this sooner)."""
        now = now or dt.datetime.now(dt.UTC)
        head = await self.newest_genuine_head()
        size = head.tree_size if head else 0
        first = (
            await AuditRecord.select(AuditRecord.seq, AuditRecord.ts)
            .where(AuditRecord.seq > size)
            .order_by(AuditRecord.seq)
            .first()
        )
        if first is None:
            self._unsigned_seen = None
            return None
        next_seq = int(first["seq"])
        if self._unsigned_seen is None or self._unsigned_seen[0] != next_seq:
            self._unsigned_seen = (next_seq, now)
        newest = await self.newest_event()
        unsigned = (newest[0] if newest else next_seq) - size
        since = min(self._unsigned_seen[1], _utc(first["ts"]))
        return Backlog(next_seq, max(1, unsigned), since)

    def stalled(
        self, backlog: Backlog, threshold_seconds: float, *, once: bool = True
    ) -> Finding | None:
        """A finding if the oldest unsigned entry has waited longer than the threshold
        (``once``: only the first time for that entry, for the log and the alert)."""
        waited = backlog.age()
        if waited <= threshold_seconds:
            return None
        if once:
            key = (Problem.SEALING_STALLED, backlog.next_seq)
            if key in self._reported:
                return None
            self._reported.add(key)
        problem = (
            f"{backlog.unsigned} entries unsigned, the oldest (entry {backlog.next_seq}) "
            f"for {int(waited)} s"
        )
        return Finding(Problem.SEALING_STALLED, backlog.next_seq, problem, backlog.unsigned)

    # --- verification -------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any] | None:
        if self.state_file is None or not self.state_file.exists():
            return None
        try:
            doc = json.loads(self.state_file.read_text())
            if doc.get("format") != STATE_FORMAT:
                return None
            return dict(doc)
        except (OSError, ValueError):
            return None

    def _save_state(self, head: SignedTreeHead, frontier: Frontier, last_hash: str) -> None:
        if self.state_file is None:
            return
        doc = {
            "format": STATE_FORMAT,
            "head": head.to_json(),
            "frontier": frontier.to_hex(),
            "last_hash": last_hash,
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.state_file)

    async def verify(
        self,
        *,
        incremental: bool = False,
        against: Sequence[SignedTreeHead] = (),
        witnessed: Sequence[SignedTreeHead] = (),
    ) -> VerificationReport:
        """Recompute the log and check it against every signed head, against ``against``
        (heads exported earlier) and ``witnessed`` (heads from a witness file): a rewrite of
        the database cannot touch those. With a MAC key, every entry's MAC is checked too,
        which names the first entry of any rewrite, however consistent.

        Incremental: start from the head this verifier last verified (recorded outside the
        database, in the data directory), after checking the database still holds exactly
        that head; a full pass otherwise. That head is checked in either mode.
        """
        mode = "full"
        walk = _Walk(Frontier(), GENESIS)
        start_after = 0
        state = self._load_state()
        known: SignedTreeHead | None = None
        frontier = Frontier()
        if state is not None:
            try:
                known = SignedTreeHead.from_json(state["head"])
                frontier = Frontier.from_hex(known.tree_size, state["frontier"])
            except (KeyError, TypeError, ValueError):
                known = None
            if known is not None and frontier.root().hex() != known.root_hash:
                known = None
        known_stored = known is not None and await self._holds(known)
        if known is not None and known_stored and incremental:
            mode = "incremental"
            walk = _Walk(frontier, str(state.get("last_hash", "")) if state else "")
            start_after = known.tree_size
        heads = await self._heads(after_size=start_after)
        outside: list[tuple[SignedTreeHead, str]] = [
            *((h, "a head exported earlier") for h in against),
            *((h, "a witnessed head") for h in witnessed),
        ]
        if known is not None and not start_after:
            outside.append((known, "the head verified earlier on this machine"))
        external = sorted(
            ((h, label) for h, label in outside if h.tree_size > start_after),
            key=lambda item: item[0].tree_size,
        )
        for head in [*heads, *(h for h, _ in external)]:
            problem = self.verifier.problem(head)
            if problem:
                return VerificationReport(
                    False, mode, 0, None, f"head over {head.tree_size} events: {problem}", head
                )
        baseline = await self._mac_baseline()
        checkpoints = sorted(
            [(h.tree_size, 0, h, "signed head") for h in heads]
            + [(h.tree_size, 1, h, label) for h, label in external],
            key=lambda item: (item[0], item[1]),
        )
        pending = iter(checkpoints)
        upcoming = next(pending, None)
        previous_size = start_after
        latest_checked: SignedTreeHead | None = None
        remembered: tuple[SignedTreeHead, Frontier, str] | None = None
        # The loop below runs once per entry of the whole log: the hashes, the MAC and the
        # Merkle fold are written out with the C primitives (the same RFC 6962 leaf and node
        # hashes as audit.merkle), and anything unusual goes the long way (mac_problem).
        sha256 = hashlib.sha256
        hmac_digest = hmac.digest
        same = hmac.compare_digest
        mac_key = self.mac.key if self.mac is not None else None
        frontier = walk.frontier
        nodes = frontier.nodes
        async with contextlib.aclosing(self._entry_batches(start_after)) as batches:
            async for batch in batches:
                for row in batch:
                    seq = int(row[_SEQ])
                    expected = frontier.size + 1
                    if seq != expected:
                        problem = "missing (deleted)" if seq > expected else "out of order"
                        return self._bad(
                            mode, walk, expected, f"entry {expected} is {problem}", latest_checked
                        )
                    if row[_PREV] != walk.last_hash:
                        if seq > start_after + 1 and row[_PREV] == walk.before_last:
                            # It links to the entry before the previous one: that one was put in.
                            return self._bad(
                                mode,
                                walk,
                                seq - 1,
                                f"entry {seq - 1} was inserted (entry {seq} links to entry "
                                f"{seq - 2})",
                                latest_checked,
                            )
                        return self._bad(
                            mode,
                            walk,
                            seq,
                            f"entry {seq} does not link to entry {seq - 1}",
                            latest_checked,
                        )
                    body = canonical_values(row[:_HASHED])
                    digest = sha256(body).digest()
                    stored_hash = row[_HASH]
                    if digest.hex() != stored_hash:
                        return self._bad(
                            mode,
                            walk,
                            seq,
                            f"entry {seq}: contents do not match its hash",
                            latest_checked,
                        )
                    stored_mac = row[_MAC]
                    if mac_key is not None and not (
                        stored_mac
                        and type(stored_mac) is str
                        and same(
                            hmac_digest(mac_key, MAC_DOMAIN + body, "sha256").hex(), stored_mac
                        )
                    ):
                        # No MAC, or one that does not verify: the full rules (a baseline
                        # may vouch for an entry written before MACs).
                        mac_problem = await self.mac_problem(
                            dict(zip(ENTRY_COLUMNS, row, strict=True)), body
                        )
                        if mac_problem:
                            return self._bad(mode, walk, seq, mac_problem, latest_checked)
                    # Frontier.append, inline: the leaf, then one node per trailing 1-bit.
                    nodes.append(sha256(b"\x00" + digest).digest())
                    frontier.size = size = frontier.size + 1
                    while not size & 1:
                        right = nodes.pop()
                        nodes[-1] = sha256(b"\x01" + nodes[-1] + right).digest()
                        size >>= 1
                    walk.before_last, walk.last_hash = walk.last_hash, stored_hash
                    walk.checked += 1
                    if (
                        mac_key is not None
                        and baseline is not None
                        and seq == baseline.legacy_upto
                        and frontier.root().hex() != baseline.legacy_root
                    ):
                        return self._bad(
                            mode,
                            walk,
                            start_after + 1,
                            f"entries {start_after + 1}-{seq} do not match what "
                            "`consentry audit mac-existing` vouched for: changed since",
                            latest_checked,
                        )
                    while upcoming is not None and upcoming[0] == frontier.size:
                        head, label = upcoming[2], upcoming[3]
                        if frontier.root().hex() != head.root_hash:
                            return self._bad(
                                mode,
                                walk,
                                previous_size + 1,
                                f"entries {previous_size + 1}-{head.tree_size} do not match "
                                f"{label} signed at {_iso(head.signed_at)}: history was "
                                "rewritten in that range",
                                latest_checked,
                            )
                        latest_checked = head
                        previous_size = head.tree_size
                        if not upcoming[1]:
                            remembered = (head, frontier.copy(), walk.last_hash)
                        upcoming = next(pending, None)
        if upcoming is not None:
            held = walk.frontier.size
            size, _, _, label = max(checkpoints, key=lambda item: item[0])
            return self._bad(
                mode,
                walk,
                held + 1,
                f"the log ends at entry {held} but {label} covers {size} "
                f"entries: entries {held + 1}-{size} were deleted (truncated)",
                latest_checked,
            )
        if known is not None and not known_stored:
            return self._bad(
                mode,
                walk,
                None,
                f"the signed head over {known.tree_size} entries verified earlier on this "
                "machine is gone from the database: signed heads were deleted",
                latest_checked,
            )
        report_head = latest_checked or (await self.latest_head() if start_after else None)
        unsealed = walk.frontier.size - (report_head.tree_size if report_head else 0)
        if remembered is not None and (known is None or remembered[0].tree_size > known.tree_size):
            self._save_state(*remembered)  # the anchor only ever moves forward
        return VerificationReport(
            True,
            mode,
            walk.checked,
            head=report_head,
            unsealed=max(0, unsealed),
            heads_checked=len(heads),
            external_heads_checked=len(external),
            macs_checked=self.mac is not None,
        )

    async def _holds(self, head: SignedTreeHead) -> bool:
        stored = await self.head_at(head.tree_size)
        return stored is not None and stored.root_hash == head.root_hash

    def _bad(
        self,
        mode: str,
        walk: _Walk,
        seq: int | None,
        problem: str,
        head: SignedTreeHead | None,
    ) -> VerificationReport:
        return VerificationReport(
            False, mode, walk.checked, seq, problem, head, macs_checked=self.mac is not None
        )

    # --- proofs -------------------------------------------------------------------------

    async def inclusion(self, seq: int, tree_size: int | None = None) -> dict[str, Any]:
        """An inclusion proof for event ``seq`` under a signed head (the latest, or the one
        over ``tree_size``), checked before it is returned."""
        head = await (self.head_at(tree_size) if tree_size else self.latest_head())
        if head is None:
            raise LookupError("no signed head covers that size yet: run `consentry audit seal`")
        if not 1 <= seq <= head.tree_size:
            raise LookupError(
                f"event {seq} is not covered by the head over {head.tree_size} events"
                + (": it is not sealed yet" if seq > head.tree_size else "")
            )
        row = await AuditRecord.select().where(AuditRecord.seq == seq).first()
        if row is None:
            raise LookupError(f"event {seq} does not exist")
        tree = await self._leaves(head.tree_size)
        proof = tree.inclusion_proof(seq - 1, head.tree_size)
        leaf = leaf_hash(bytes.fromhex(entry_hash(row)))
        ok = verify_inclusion(seq - 1, head.tree_size, leaf, proof, bytes.fromhex(head.root_hash))
        return {
            "event": _event_json(row),
            "leaf_index": seq - 1,
            "inclusion_proof": [p.hex() for p in proof],
            "head": head.to_json(),
            "verified": ok and not self.verifier.problem(head),
        }

    async def consistency(self, old_size: int, new_size: int | None = None) -> dict[str, Any]:
        """A consistency proof between two signed heads, checked before it is returned."""
        old = await self.head_at(old_size)
        new = await (self.head_at(new_size) if new_size else self.latest_head())
        if old is None or new is None:
            raise LookupError("both sizes must be signed heads (see `consentry audit checkpoints`)")
        if old.tree_size > new.tree_size:
            raise LookupError("the first head must be the older (smaller) one")
        tree = await self._leaves(new.tree_size)
        proof = tree.consistency_proof(old.tree_size, new.tree_size)
        ok = verify_consistency(
            old.tree_size,
            new.tree_size,
            bytes.fromhex(old.root_hash),
            bytes.fromhex(new.root_hash),
            proof,
        )
        return {
            "old": old.to_json(),
            "new": new.to_json(),
            "consistency_proof": [p.hex() for p in proof],
            "verified": ok and not self.verifier.problem(old) and not self.verifier.problem(new),
        }

    async def slice_bundle(self, seqs: Sequence[int]) -> dict[str, Any]:
        """Events with inclusion proofs under one signed head, verifiable offline with
        ``consentry audit verify-slice`` and the public key."""
        await self.seal_all()
        head = await self.latest_head()
        wanted = sorted({int(s) for s in seqs})
        if head is None:
            return {"format": SLICE_FORMAT, "head": None, "events": [], "unsealed": wanted}
        covered = [s for s in wanted if 1 <= s <= head.tree_size]
        tree = await self._leaves(head.tree_size) if covered else MerkleTree([])
        events: list[dict[str, Any]] = []
        for start in range(0, len(covered), 1000):
            chunk = covered[start : start + 1000]
            rows = (
                await AuditRecord.select()
                .where(AuditRecord.seq.is_in(chunk))
                .order_by(AuditRecord.seq)
            )
            for row in rows:
                seq = int(row["seq"])
                events.append(
                    {
                        **_event_json(row),
                        "leaf_index": seq - 1,
                        "inclusion_proof": [p.hex() for p in tree.inclusion_proof(seq - 1)],
                    }
                )
        return {
            "format": SLICE_FORMAT,
            "generated_at": _iso(dt.datetime.now(dt.UTC)),
            "head": head.to_json(),
            "public_key": self.public_key_b64,
            "key_id": self.key_id,
            "events": events,
            "unsealed": [s for s in wanted if s > head.tree_size],
        }

    async def inclusion_proofs(self, seqs: Sequence[int]) -> dict[str, Any]:
        """Inclusion proofs for ``seqs`` under one signed head, carrying each event's
        hash only (``PROOFS_FORMAT``, docs/audit-format.md): what a data subject may be
        given. Built from :meth:`slice_bundle` (which seals first, so an event committed
        a moment ago is covered) with the contents taken out; ``audit/standalone_verify.py
        --proofs`` checks it with the public key alone."""
        bundle = await self.slice_bundle(seqs)
        return {
            "format": PROOFS_FORMAT,
            "generated_at": bundle.get("generated_at") or _iso(dt.datetime.now(dt.UTC)),
            "head": bundle["head"],
            "public_key": self.public_key_b64,
            "key_id": self.key_id,
            "proofs": [
                {
                    "seq": event["seq"],
                    "hash": event["hash"],
                    "leaf_index": event["leaf_index"],
                    "inclusion_proof": event["inclusion_proof"],
                }
                for event in bundle["events"]
            ],
            "unsealed": bundle["unsealed"],
        }

    async def export_log(self) -> AsyncIterator[dict[str, Any]]:
        """The whole trail as JSON documents (``consentry audit export-log`` writes one per
        line): a header, every entry as stored, then every checkpoint row - the input of
        ``audit/standalone_verify.py``, specified in docs/audit-format.md."""
        yield {
            "format": EXPORT_FORMAT,
            "exported_at": _iso(dt.datetime.now(dt.UTC)),
            "public_key": self.public_key_b64,
            "key_id": self.key_id,
        }
        async for row in self._events(0):
            yield {"type": "entry", **_event_json(row)}
        for head in await self._heads(0):
            yield {"type": "head", **head.to_json()}

    # --- entries written before MACs -------------------------------------------------

    async def legacy_baseline(self) -> AuditEvent:
        """The event by which ``consentry audit mac-existing`` vouches, once, for the entries
        written before MACs: they must be a prefix 1..L of the log (every later entry has a
        MAC), and the whole log must verify. Raises ValueError saying why not."""
        if self.mac is None:
            raise ValueError("no MAC key here: run this where the signing key is")
        existing = await self._mac_baseline()
        if existing is not None:
            raise ValueError(
                f"entries 1-{existing.legacy_upto} were vouched for already (entry {existing.seq})"
            )
        first_mac = (
            await AuditRecord.select(AuditRecord.seq)
            .where(AuditRecord.mac != "")
            .order_by(AuditRecord.seq)
            .first()
        )
        newest = await self.newest_event()
        if first_mac is not None:
            legacy_upto = int(first_mac["seq"]) - 1
        else:
            legacy_upto = newest[0] if newest else 0
        if legacy_upto < 1:
            raise ValueError("every entry already carries a MAC: nothing to vouch for")
        later = (
            await AuditRecord.select(AuditRecord.seq)
            .where((AuditRecord.mac == "") & (AuditRecord.seq > legacy_upto))
            .order_by(AuditRecord.seq)
            .first()
        )
        if later is not None:
            raise ValueError(
                f"entry {later['seq']} carries no MAC but follows entry {legacy_upto + 1}, which "
                "does: it was not written by this server, and will not be vouched for"
            )
        root = (await self._leaves(legacy_upto)).root().hex()
        self._baseline = Baseline(0, legacy_upto, root)  # provisional, for the check below
        try:
            report = await self.verify()
        finally:
            self._baseline = None
        if not report.ok:
            where = f"entry {report.first_bad_seq}: " if report.first_bad_seq else ""
            raise ValueError(f"the log does not verify ({where}{report.problem})")
        return audit_event(
            actor_id="system:audit-mac-existing",
            actor_role="system",
            action=BASELINE_ACTION,
            resource_type="audit",
            outcome=Outcome.ALLOWED,
            purpose="compliance",
            reason="legacy_entries",
            detail={"legacy_upto": legacy_upto, "legacy_root": root},
        )

    async def export_checkpoints(self, after_size: int = 0) -> dict[str, Any]:
        """Genuinely signed heads only: a bogus row is no evidence to hand a witness."""
        heads = [h for h in await self._heads(after_size) if not self.verifier.problem(h)]
        return {
            "format": CHECKPOINTS_FORMAT,
            "exported_at": _iso(dt.datetime.now(dt.UTC)),
            "public_key": self.public_key_b64,
            "key_id": self.key_id,
            "heads": [h.to_json() for h in heads],
        }


def read_checkpoints(doc: dict[str, Any]) -> list[SignedTreeHead]:
    """Heads from a file written by ``consentry audit checkpoints export``."""
    if doc.get("format") != CHECKPOINTS_FORMAT or not isinstance(doc.get("heads"), list):
        raise ValueError("not a Consentry checkpoints file")
    return [SignedTreeHead.from_json(h) for h in doc["heads"]]


def verify_slice(doc: dict[str, Any], verifier: TreeHeadVerifier) -> SliceReport:
    """Check an exported slice offline: the head's signature, every event's hash and its
    inclusion proof under that head."""
    if doc.get("format") != SLICE_FORMAT:
        return SliceReport(False, 0, ["not a Consentry audit slice"])
    try:
        head = SignedTreeHead.from_json(doc["head"])
    except (KeyError, TypeError, ValueError):
        return SliceReport(False, 0, ["the slice has no valid signed head"])
    problems: list[str] = []
    signature_problem = verifier.problem(head)
    if signature_problem:
        problems.append(f"head: {signature_problem}")
    root = bytes.fromhex(head.root_hash)
    events = doc.get("events") or []
    for event in events:
        try:
            row = {k: v for k, v in event.items() if k not in {"leaf_index", "inclusion_proof"}}
            seq = int(row["seq"])
            proof = [bytes.fromhex(p) for p in event["inclusion_proof"]]
            if entry_hash(row) != row["hash"]:
                problems.append(f"event {seq}: contents do not match its hash")
                continue
            leaf = leaf_hash(bytes.fromhex(str(row["hash"])))
            if int(event["leaf_index"]) != seq - 1 or not verify_inclusion(
                seq - 1, head.tree_size, leaf, proof, root
            ):
                problems.append(f"event {seq}: inclusion proof does not verify")
        except (KeyError, TypeError, ValueError):
            problems.append("an event is malformed")
    return SliceReport(not problems, len(events), problems, head)
