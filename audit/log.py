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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

from audit.entry_mac import EntryMac
from audit.events import AuditEvent
from audit.tables import AuditRecord

GENESIS = "0" * 64
PG_APPEND_LOCK = 0x0C0A_0D17  # advisory lock id for audit appends
VERIFY_BATCH = 5000


NOT_HASHED = frozenset({"id", "hash", "mac"})


def canonical(row: dict[str, Any]) -> bytes:
    """The bytes an entry's hash and MAC cover: every column but ``id``, ``hash`` and
    ``mac``, as compact JSON with sorted keys (docs/audit-format.md)."""
    body = {k: row[k] for k in sorted(row) if k not in NOT_HASHED}
    ts = body["ts"]
    if isinstance(ts, dt.datetime):
        body["ts"] = ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def entry_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditLog:
    def __init__(self, mac: EntryMac, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.mac = mac
        # Injectable only so that tests can lay events out over hours in a moment.
        self._clock = clock

    async def append(self, event: AuditEvent) -> int:
        """Append one event inside the caller's transaction; returns its sequence number.

        Raises whatever the database raises: the caller's operation must then fail too.
        """
        engine = AuditRecord._meta.db
        if engine.engine_type == "postgres":
            await AuditRecord.raw("SELECT pg_advisory_xact_lock({})", PG_APPEND_LOCK)
        last = (
            await AuditRecord.select(AuditRecord.seq, AuditRecord.hash)
            .order_by(AuditRecord.seq, ascending=False)
            .first()
        )
        seq = 1 if last is None else int(last["seq"]) + 1
        prev_hash = GENESIS if last is None else str(last["hash"])
        row: dict[str, Any] = {
            "seq": seq,
            "ts": self._clock(),
            "actor_id": event.actor_id,
            "actor_role": event.actor_role,
            "action": str(event.action),
            "resource_type": event.resource_type,
            "resource_id": event.resource_id,
            "subject_ids": json.dumps(sorted(set(event.subject_ids))),
            "fields": json.dumps(sorted(set(event.fields))),
            "purpose": event.purpose,
            "outcome": str(event.outcome),
            "reason": event.reason,
            "request_id": event.request_id,
            "detail": json.dumps(event.detail, sort_keys=True),
            "prev_hash": prev_hash,
        }
        body = canonical(row)
        row["hash"] = hashlib.sha256(body).hexdigest()
        row["mac"] = self.mac.mac(body)
        await AuditRecord.insert(AuditRecord(**row)).run()
        return seq
