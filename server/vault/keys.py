"""Where the master key comes from. It never enters the database, logs or error messages.

A ``KeyProvider`` yields key-encryption keys (KEKs, versioned so they can rotate) and the
root key for blind indexes. Blind-index keys must *not* rotate with the KEK (every index
would have to be recomputed), so they come from a separate root.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_FORMAT = "consentry-master-key/1"


class MasterKeyMissing(Exception):
    """No usable master key; the message says how to create one (never prints a key)."""


class KeyProvider(Protocol):
    def active_kek(self) -> tuple[str, bytes]:
        """The KEK id and key used to wrap new data keys."""
        ...

    def kek(self, kek_id: str) -> bytes:
        """A KEK by id, to unwrap data keys wrapped under an older KEK."""
        ...

    def index_root_key(self) -> bytes:
        """Root key from which per-field blind-index keys are derived."""
        ...


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise MasterKeyMissing(f"{what} is not valid base64") from None
    if len(raw) != 32:
        raise MasterKeyMissing(f"{what} must be 32 bytes (256 bits)")
    return raw


class FileKeyProvider:
    """Keys from a JSON file readable only by its owner (``consentry keys init``).

    The file holds every KEK version still in use (``keks``), which one wraps new data keys
    (``active_kek``) and, per version, when it was created and retired (``kek_meta``).
    ``consentry keys rotate`` and ``consentry keys prune`` replace the file atomically; a
    running worker notices the change (a ``stat`` per call of :meth:`active_kek`, and a
    re-read whenever it meets a KEK id it does not know), so rotation needs no restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, int, int] | None = None
        self._load()

    def _load(self) -> None:
        path = self.path
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise MasterKeyMissing(
                f"no master key file at {path}: create one with `consentry keys init`"
            ) from None
        mode = stat.st_mode & 0o777
        if mode & 0o077:
            raise MasterKeyMissing(
                f"master key file {path} is readable by others (mode {mode:o}): chmod 600 it"
            )
        doc = read_key_document(path)
        try:
            self._keks = {kid: _unb64(val, f"KEK {kid}") for kid, val in doc["keks"].items()}
            self._active = str(doc["active_kek"])
            self._index_root = _unb64(doc["index_key"], "index key")
        except (KeyError, TypeError, AttributeError):
            raise MasterKeyMissing(f"{path} is not a valid Consentry master key file") from None
        if self._active not in self._keks:
            raise MasterKeyMissing(f"{path}: active KEK {self._active!r} is not in the file")
        self._destroyed = {str(k): str(v) for k, v in dict(doc.get("destroyed", {})).items()}
        self._signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def refresh(self) -> None:
        """Re-read the file if it changed since it was read (rotation, pruning)."""
        try:
            stat = self.path.stat()
        except OSError:
            return  # keep what we have: a missing file mid-replace is not a reason to fail
        if (stat.st_ino, stat.st_mtime_ns, stat.st_size) != self._signature:
            self._load()

    def active_kek(self) -> tuple[str, bytes]:
        self.refresh()
        return self._active, self._keks[self._active]

    def kek(self, kek_id: str) -> bytes:
        if kek_id not in self._keks:
            self.refresh()
        try:
            return self._keks[kek_id]
        except KeyError:
            if kek_id in self._destroyed:
                raise MasterKeyMissing(
                    f"KEK {kek_id!r} was destroyed on {self._destroyed[kek_id][:10]} "
                    "(older than the backup retention period): data keys wrapped under it "
                    "are unreadable"
                ) from None
            raise MasterKeyMissing(f"KEK {kek_id!r} is not in {self.path}") from None

    def kek_ids(self) -> tuple[str, ...]:
        self.refresh()
        return tuple(self._keks)

    def index_root_key(self) -> bytes:
        return self._index_root


class EnvKeyProvider:
    """A single 32-byte secret in ``CONSENTRY_MASTER_KEY`` (base64), for containers.

    The KEK and the index root are derived from it with HKDF under different labels, so
    one variable is enough and the two keys are still independent.
    """

    KEK_ID = "env-1"

    def __init__(self, secret_b64: str) -> None:
        secret = _unb64(secret_b64, "CONSENTRY_MASTER_KEY")
        self._kek = derive_key(secret, b"consentry/kek/env-1")
        self._index_root = derive_key(secret, b"consentry/blind-index-root")

    def active_kek(self) -> tuple[str, bytes]:
        return self.KEK_ID, self._kek

    def kek(self, kek_id: str) -> bytes:
        if kek_id != self.KEK_ID:
            raise MasterKeyMissing(f"KEK {kek_id!r} is not available from CONSENTRY_MASTER_KEY")
        return self._kek

    def index_root_key(self) -> bytes:
        return self._index_root


def derive_key(secret: bytes, info: bytes) -> bytes:
    """A 256-bit subkey of ``secret`` for one labelled use (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _now_text(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")


def new_kek() -> str:
    """A fresh 256-bit KEK, base64 (what a key file stores)."""
    return _b64(secrets.token_bytes(32))


def read_key_document(path: Path) -> dict[str, Any]:
    """The key file's JSON document; errors never quote the file's content."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        raise MasterKeyMissing(f"{path} is not a valid Consentry master key file") from None
    if not isinstance(doc, dict) or doc.get("format") != KEY_FILE_FORMAT:
        raise MasterKeyMissing(f"{path} is not a Consentry master key file")
    return doc


def write_key_document(path: Path, doc: dict[str, Any], *, replace: bool) -> None:
    """Write the key file with mode 0600 from the first byte, durably.

    ``replace``: write a temporary file beside it, fsync, rename over the old file and
    fsync the directory, so a crash leaves either the old or the new file, never half of
    one. Without ``replace`` an existing file is never clobbered.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if replace:  # a copy of the keys left by a writer killed mid-write: not a key file
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
    target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(target, path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
    except BaseException:
        if replace:
            with contextlib.suppress(OSError):
                os.unlink(target)
        raise


@contextlib.contextmanager
def key_file_lock(path: Path) -> Iterator[None]:
    """One writer of the key file at a time (``keys rotate`` and ``keys prune``)."""
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_key_file(path: Path) -> None:
    """Create a new master key file with mode 0600; refuses to overwrite an existing one."""
    now = _now_text()
    doc = {
        "format": KEY_FILE_FORMAT,
        "created_at": now,
        "active_kek": "k1",
        "keks": {"k1": new_kek()},
        "kek_meta": {"k1": {"created_at": now, "retired_at": None}},
        "index_key": _b64(secrets.token_bytes(32)),
    }
    # O_EXCL: never clobber a key that data is encrypted under; 0o600 from the first byte.
    write_key_document(path, doc, replace=False)
