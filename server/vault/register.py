"""The erasure register: who was shredded, kept with the keys and never in a data backup.

A backup taken before an erasure still holds the person's wrapped data key. Restoring it
must not bring them back, so every shred is first appended here - one JSON line per
subject: the pseudonymous subject id and the time, nothing else - and ``consentry
restore`` erases everyone listed again. The file lives beside the master key file (or
where ``CONSENTRY_ERASURE_REGISTER_FILE`` says), mode 0600, append-only by convention:
lines are only ever added, each with a single ``write`` and an ``fsync``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path


class RegisterError(Exception):
    """The register cannot be read or written; an erasure must then not go ahead."""


@dataclass(frozen=True)
class RegisterEntry:
    subject_id: str
    shredded_at: dt.datetime


class ErasureRegister:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, subject_id: str, now: dt.datetime | None = None) -> None:
        """Append the subject; durable before this returns. Nothing is kept in memory and
        the file is never read here (it grows with every erasure, for years): someone
        shredded twice is simply listed twice, and ``entries`` keeps the first."""
        sid = str(uuid.UUID(subject_id))
        when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
        line = json.dumps({"subject_id": sid, "shredded_at": when}, sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # A torn write (a crash before its newline) is closed off first, so it
                    # never swallows this entry.
                    line = "\n" + line
                os.write(fd, line.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise RegisterError(
                f"cannot append to the erasure register {self.path}: "
                f"{exc.strerror or type(exc).__name__}"
            ) from None

    def entries(self) -> list[RegisterEntry]:
        """Every person once, in the order first shredded; a torn last line (a crash
        mid-write) is skipped."""
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise RegisterError(f"cannot read the erasure register {self.path}: {reason}") from None
        found: dict[str, RegisterEntry] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if line.startswith("{") and not line.rstrip().endswith("}"):
                continue  # a write torn by a crash (closed off by the next entry's newline)
            try:
                doc = json.loads(line)
                entry = RegisterEntry(
                    str(uuid.UUID(doc["subject_id"])),
                    dt.datetime.fromisoformat(doc["shredded_at"]),
                )
                found.setdefault(entry.subject_id, entry)  # the first shred of each person
            except (ValueError, KeyError, TypeError):
                raise RegisterError(
                    f"erasure register {self.path}: line {number} is not an entry"
                ) from None
        return list(found.values())
