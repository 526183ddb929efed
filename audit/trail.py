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
- deleted newest rows *and* heads: only a head exported earlier (``checkpoints export``)
  or the verifier's own record of what it verified last can tell — which is why both exist.

Several workers may seal at once: on PostgreSQL the sealer takes a transaction-scoped
advisory lock (others skip their turn), on SQLite the write lock; ``tree_size`` is unique,
so two heads for the same size cannot both be written and the tree cannot fork.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from audit.log import GENESIS, VERIFY_BATCH, entry_hash
from audit.merkle import Frontier, MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from audit.signing import SignedTreeHead, TreeHeadSigner, TreeHeadVerifier
from audit.tables import AuditCheckpoint, AuditRecord

log = structlog.get_logger("consentry.audit")

PG_SEAL_LOCK = 0x0C0A_5EA1  # advisory lock id for sealing (appends use PG_APPEND_LOCK)
SEAL_BATCH = 50_000  # events folded into one head at most; the next round takes the rest
SLICE_FORMAT = "consentry-audit-slice/1"
CHECKPOINTS_FORMAT = "consentry-audit-checkpoints/1"
STATE_FORMAT = "consentry-audit-verified/1"


class SealRefused(Exception):
    """The events to seal do not fit the signed history: sealing them would hide tampering."""


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


def _event_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as exported: every column that is hashed, in its canonical form."""
    doc = {key: value for key, value in row.items() if key != "id"}
    doc["ts"] = _iso(row["ts"]) if isinstance(row["ts"], dt.datetime) else row["ts"]
    return doc


@dataclass
class _Walk:
    """The state of a verification pass over the events in sequence order."""

    frontier: Frontier
    last_hash: str
    checked: int = 0


class AuditTrail:
    def __init__(
        self,
        signer: TreeHeadSigner | None,
        *,
        trusted: TreeHeadVerifier | None = None,
        state_file: Path | None = None,
    ) -> None:
        """``signer`` may be None for a verifier that holds only public keys (an auditor's
        machine): it can verify and prove, not seal."""
        self._signer = signer
        self.key_id = signer.key_id if signer else ""
        self.public_key_b64 = signer.public_key_b64 if signer else ""
        keys = [signer.public_key] if signer else []
        self.verifier = trusted or TreeHeadVerifier(keys)
        self.state_file = state_file

    @property
    def signer(self) -> TreeHeadSigner:
        if self._signer is None:
            raise SealRefused("no audit signing key here: this verifier cannot seal")
        return self._signer

    # --- reading ------------------------------------------------------------------------

    async def latest_head(self) -> SignedTreeHead | None:
        row = (
            await AuditCheckpoint.select()
            .order_by(AuditCheckpoint.tree_size, ascending=False)
            .first()
        )
        return _head_of(row) if row else None

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
        worker is sealing right now). Raises SealRefused if the new events do not fit."""
        engine = AuditCheckpoint._meta.db
        if isinstance(engine, SQLiteEngine):
            # IMMEDIATE: take SQLite's write lock up front so no append lands mid-seal.
            async with engine.transaction(transaction_type=TransactionType.immediate):
                return await self._seal_locked()
        async with engine.transaction():
            got = await AuditCheckpoint.raw(
                "SELECT pg_try_advisory_xact_lock({}) AS ok", PG_SEAL_LOCK
            )
            if not got or not got[0]["ok"]:
                return None
            return await self._seal_locked()

    async def _seal_locked(self) -> SignedTreeHead | None:
        latest_row = (
            await AuditCheckpoint.select()
            .order_by(AuditCheckpoint.tree_size, ascending=False)
            .first()
        )
        size = int(latest_row["tree_size"]) if latest_row else 0
        batch = (
            await AuditRecord.select()
            .where(AuditRecord.seq > size)
            .order_by(AuditRecord.seq)
            .limit(SEAL_BATCH)
        )
        if not batch:
            return None
        if latest_row:
            frontier = Frontier.from_hex(size, json.loads(latest_row["frontier"]))
            if not frontier.is_well_formed() or frontier.root().hex() != latest_row["root_hash"]:
                raise SealRefused(f"the stored frontier of head {size} does not fold to its root")
            previous = (
                await AuditRecord.select(AuditRecord.hash).where(AuditRecord.seq == size).first()
            )
            if previous is None:
                raise SealRefused(f"event {size}, covered by the latest signed head, is missing")
            last_hash = str(previous["hash"])
        else:
            frontier, last_hash = Frontier(), GENESIS
        for row in batch:
            seq = int(row["seq"])
            if seq != frontier.size + 1:
                raise SealRefused(f"event {frontier.size + 1} is missing")
            if row["prev_hash"] != last_hash or entry_hash(row) != row["hash"]:
                raise SealRefused(f"event {seq} does not match its hash")
            frontier.append(leaf_hash(bytes.fromhex(str(row["hash"]))))
            last_hash = str(row["hash"])
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
        return head

    async def seal_all(self) -> SignedTreeHead | None:
        """Seal until every committed event is covered (the CLI, after writing)."""
        head = None
        while True:
            newest = await self.newest_event()
            latest = await self.latest_head()
            if newest is None or (latest is not None and latest.tree_size >= newest[0]):
                return latest
            head = await self.seal()
            if head is None:  # another worker holds the lock: let it finish
                await asyncio.sleep(0.05)

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
    ) -> VerificationReport:
        """Recompute the log and check it against every signed head (and ``against``:
        heads exported earlier, which a rewrite of the database cannot touch).

        Incremental: start from the head this verifier last verified (recorded outside the
        database, in the data directory), after checking the database still holds exactly
        that head; fall back to a full pass when there is no such record.
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
        if known is not None:
            # This machine verified the log up to ``known`` before: that head is an anchor
            # kept outside the database, so the log must still match it, in either mode.
            stored = await self.head_at(known.tree_size)
            if stored is None or stored.root_hash != known.root_hash:
                newest = await self.newest_event()
                held = newest[0] if newest else 0
                return VerificationReport(
                    False,
                    "incremental" if incremental else "full",
                    0,
                    min(held + 1, known.tree_size),
                    f"the signed head over {known.tree_size} entries verified earlier on this "
                    "machine is gone or changed: the log was truncated or rewritten since",
                    known,
                )
            if incremental:
                mode = "incremental"
                walk = _Walk(frontier, str(state.get("last_hash", "")) if state else "")
                start_after = known.tree_size
            else:
                against = [*against, known]
        heads = await self._heads(after_size=start_after)
        external = sorted(
            (h for h in against if h.tree_size > start_after), key=lambda h: h.tree_size
        )
        for head in [*heads, *external]:
            problem = self.verifier.problem(head)
            if problem:
                return VerificationReport(
                    False, mode, 0, None, f"head over {head.tree_size} events: {problem}", head
                )
        checkpoints = sorted(
            [(h.tree_size, 0, h) for h in heads] + [(h.tree_size, 1, h) for h in external],
            key=lambda item: (item[0], item[1]),
        )
        pending = iter(checkpoints)
        upcoming = next(pending, None)
        previous_size = start_after
        latest_checked: SignedTreeHead | None = None
        remembered: tuple[SignedTreeHead, Frontier, str] | None = None
        async for row in self._events(start_after):
            seq = int(row["seq"])
            expected = walk.frontier.size + 1
            if seq != expected:
                problem = "missing (deleted)" if seq > expected else "out of order"
                return self._bad(
                    mode, walk, expected, f"entry {expected} is {problem}", latest_checked
                )
            if row["prev_hash"] != walk.last_hash:
                return self._bad(
                    mode, walk, seq, f"entry {seq} does not link to entry {seq - 1}", latest_checked
                )
            if entry_hash(row) != row["hash"]:
                return self._bad(
                    mode, walk, seq, f"entry {seq}: contents do not match its hash", latest_checked
                )
            walk.frontier.append(leaf_hash(bytes.fromhex(str(row["hash"]))))
            walk.last_hash = str(row["hash"])
            walk.checked += 1
            while upcoming is not None and upcoming[0] == walk.frontier.size:
                head = upcoming[2]
                if walk.frontier.root().hex() != head.root_hash:
                    which = "a head kept outside the database" if upcoming[1] else "signed head"
                    return self._bad(
                        mode,
                        walk,
                        previous_size + 1,
                        f"entries {previous_size + 1}-{head.tree_size} do not match {which} "
                        f"signed at {_iso(head.signed_at)}: history was rewritten in that range",
                        latest_checked,
                    )
                latest_checked = head
                previous_size = head.tree_size
                if not upcoming[1]:
                    remembered = (head, walk.frontier.copy(), walk.last_hash)
                upcoming = next(pending, None)
        if upcoming is not None:
            held = walk.frontier.size
            head = checkpoints[-1][2]
            return self._bad(
                mode,
                walk,
                held + 1,
                f"the log ends at entry {held} but a signed head covers {head.tree_size} "
                f"entries: entries {held + 1}-{head.tree_size} were deleted (truncated)",
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
        )

    def _bad(
        self,
        mode: str,
        walk: _Walk,
        seq: int,
        problem: str,
        head: SignedTreeHead | None,
    ) -> VerificationReport:
        return VerificationReport(False, mode, walk.checked, seq, problem, head)

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

    async def export_checkpoints(self, after_size: int = 0) -> dict[str, Any]:
        heads = await self._heads(after_size)
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
