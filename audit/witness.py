"""Publishing signed tree heads outside the database (witnesses).

A signed head kept only in ``audit_checkpoint`` can be deleted together with the entries it
covers, and a verifier that never saw it cannot tell. So every worker appends the heads it
signs to a witness file - one JSON object per line, append-only, ideally on another volume
or host (``CONSENTRY_AUDIT_WITNESS_FILE``) - and ``consentry audit verify`` checks the log
against the newest witnessed head whose signature verifies.

At most one head per ``min_interval`` seconds is written (the newest; a head that was held
back is written on the next tick), so the file grows by about 250 bytes a second under
constant load. Heads carry sizes, hashes, times and a key id: nothing personal.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from audit.signing import SignedTreeHead, TreeHeadVerifier

WITNESS_FORMAT = "consentry-audit-witness/1"


def witness_line(head: SignedTreeHead) -> bytes:
    doc = {"format": WITNESS_FORMAT, **head.to_json()}
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii")


class WitnessFile:
    """Appends signed heads to a file; several processes may share it (O_APPEND, one
    ``write`` per line)."""

    def __init__(self, path: Path, min_interval: float = 1.0) -> None:
        self.path = path
        self.min_interval = min_interval
        self._pending: SignedTreeHead | None = None
        self._last_written = 0.0
        self.last_error = ""  # the exception type of the last failed write, "" if none

    def offer(self, head: SignedTreeHead) -> None:
        if self._pending is None or head.tree_size > self._pending.tree_size:
            self._pending = head
        self.flush()

    def flush(self, *, force: bool = False) -> SignedTreeHead | None:
        """Write the held-back head if its time has come; returns it if written."""
        head = self._pending
        now = time.monotonic()
        if head is None or (not force and now - self._last_written < self.min_interval):
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, witness_line(head))
            finally:
                os.close(fd)
        except OSError as exc:
            self.last_error = type(exc).__name__
            return None
        self.last_error = ""
        self._pending = None
        self._last_written = now
        return head


@dataclass(frozen=True)
class WitnessRead:
    newest: SignedTreeHead | None  # the largest head whose signature verifies
    heads: int  # lines that are heads with a good signature
    rejected: list[str] = field(default_factory=list)  # "line 7: signature does not verify"


def read_witness(path: Path, verifier: TreeHeadVerifier) -> WitnessRead:
    """The newest genuinely signed head in a witness file; other lines are reported."""
    newest: SignedTreeHead | None = None
    good = 0
    rejected: list[str] = []
    roots: dict[int, tuple[str, int]] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
                if doc.get("format") != WITNESS_FORMAT:
                    raise ValueError
                head = SignedTreeHead.from_json(doc)
            except (ValueError, AttributeError):
                rejected.append(f"line {number}: not a witnessed head")
                continue
            problem = verifier.problem(head)
            if problem:
                rejected.append(f"line {number}: {problem}")
                continue
            seen = roots.setdefault(head.tree_size, (head.root_hash, number))
            if seen[0] != head.root_hash:  # two signed roots for one size: a forked log
                rejected.append(f"line {number}: contradicts line {seen[1]} (same size)")
                continue
            good += 1
            if newest is None or head.tree_size > newest.tree_size:
                newest = head
    return WitnessRead(newest, good, rejected)
