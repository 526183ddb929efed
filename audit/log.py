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
import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from piccolo.columns import Varchar

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


def stored_columns(event: AuditEvent) -> tuple[dict[str, str | None], list[str]]:
    """The event's short text columns as stored, and the names of those that were replaced.

    A value that does not fit is stored as ``sha256:`` and the start of its digest (still
    matchable against a known value, never the value itself); the event's ``detail``
    names the replaced columns under ``hashed``."""
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
            digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
            columns[name] = ("sha256:" + digest)[:limit]
            hashed.append(name)
    return columns, hashed


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
        columns, hashed = stored_columns(event)
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
        await AuditRecord.insert(AuditRecord(**row)).run()
        return seq
