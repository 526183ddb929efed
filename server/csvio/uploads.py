"""Uploaded CSV files kept between the steps of the admin's import wizard.

Upload, mapping, dry run and import are separate requests, so the file must wait
somewhere. It waits in a directory under ``CONSENTRY_HOME`` (mode 0700; files 0600),
encrypted with AES-256-GCM under a key made for that one upload and never stored: the key
goes back to the browser in the wizard's form and returns with each step. What is on
disk is unreadable without it - a leftover file is noise, not personal data - and files
are deleted when the import starts, when the person cancels, and by a sweep of anything
older than :data:`MAX_AGE` (run on every upload). The owner's id is the associated data,
so one staff member cannot continue another's upload with a copied form.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import os
import secrets
import uuid
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAX_AGE = dt.timedelta(hours=1)
NONCE_BYTES = 12


class UploadGone(Exception):
    """The upload expired, was finished or cancelled, or the key does not open it."""


class UploadStore:
    def __init__(self, directory: Path, *, max_age: dt.timedelta = MAX_AGE) -> None:
        self.directory = directory
        self.max_age = max_age

    def _path(self, upload_id: str) -> Path:
        try:
            return self.directory / str(uuid.UUID(upload_id))
        except ValueError:
            raise UploadGone() from None

    def put(self, content: bytes, owner: str) -> tuple[str, str]:
        """Store ``content`` encrypted; returns (upload id, key) for the browser."""
        self.sweep()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        upload_id = str(uuid.uuid4())
        key = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, content, f"{upload_id}:{owner}".encode())
        path = self._path(upload_id)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(nonce + sealed)
        return upload_id, base64.urlsafe_b64encode(key).decode()

    def get(self, upload_id: str, key: str, owner: str) -> bytes:
        path = self._path(upload_id)
        try:
            raw = path.read_bytes()
            secret = base64.urlsafe_b64decode(key.encode())
            return AESGCM(secret).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], f"{upload_id}:{owner}".encode()
            )
        except (OSError, ValueError, binascii.Error, InvalidTag):
            raise UploadGone() from None

    def discard(self, upload_id: str) -> None:
        with contextlib.suppress(UploadGone):
            self._path(upload_id).unlink(missing_ok=True)

    def sweep(self) -> int:
        """Delete uploads older than ``max_age`` (abandoned wizards); returns how many."""
        if not self.directory.is_dir():
            return 0
        cutoff = dt.datetime.now(dt.UTC).timestamp() - self.max_age.total_seconds()
        removed = 0
        for path in self.directory.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
            except OSError:
                continue
        return removed
