"""Where the master key comes from. It never enters the database, logs or error messages.

A ``KeyProvider`` yields key-encryption keys (KEKs, versioned so they can rotate) and the
root key for blind indexes. Blind-index keys must *not* rotate with the KEK (every index
would have to be recomputed), so they come from a separate root.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Protocol

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
    """Keys from a JSON file readable only by its owner (``consentry keys init``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise MasterKeyMissing(
                f"no master key file at {path}: create one with `consentry keys init`"
            )
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise MasterKeyMissing(
                f"master key file {path} is readable by others (mode {mode:o}): chmod 600 it"
            )
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != KEY_FILE_FORMAT:
                raise MasterKeyMissing(f"{path} is not a Consentry master key file")
            self._keks = {kid: _unb64(val, f"KEK {kid}") for kid, val in doc["keks"].items()}
            self._active = str(doc["active_kek"])
            self._index_root = _unb64(doc["index_key"], "index key")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MasterKeyMissing(f"{path} is not a valid Consentry master key file") from None
        if self._active not in self._keks:
            raise MasterKeyMissing(f"{path}: active KEK {self._active!r} is not in the file")

    def active_kek(self) -> tuple[str, bytes]:
        return self._active, self._keks[self._active]

    def kek(self, kek_id: str) -> bytes:
        try:
            return self._keks[kek_id]
        except KeyError:
            raise MasterKeyMissing(f"KEK {kek_id!r} is not in {self.path}") from None

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


def write_key_file(path: Path) -> None:
    """Create a new master key file with mode 0600; refuses to overwrite an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": KEY_FILE_FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "active_kek": "k1",
        "keks": {"k1": _b64(secrets.token_bytes(32))},
        "index_key": _b64(secrets.token_bytes(32)),
    }
    # O_EXCL: never clobber a key that data is encrypted under; 0o600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(doc, handle, indent=2)
        handle.write("\n")
