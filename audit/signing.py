"""Signed tree heads: Ed25519 signatures over (size, Merkle root, time, key id).

The signing key lives outside the database (a file readable only by its owner, or an
environment variable), like the master key: someone who can rewrite the audit tables
cannot produce a head for the rewritten history. Verifiers trust public keys they were
given out of band — never a key read from the database or from the file being verified.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.entry_mac import EntryMac, derive_mac_key

SIGNING_KEY_FORMAT = "consentry-audit-signing-key/1"
HEAD_FORMAT = b"consentry-audit-tree-head/1"


class SigningKeyMissing(Exception):
    """No usable signing key; the message says how to create one (never prints a key)."""


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key as printed by ``consentry audit public-key`` (base64 of 32 raw bytes)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise ValueError("not an Ed25519 public key (expected base64 of 32 bytes)") from None


@dataclass(frozen=True)
class SignedTreeHead:
    tree_size: int  # events 1..tree_size are covered
    root_hash: str  # hex RFC 6962 root
    signed_at: dt.datetime
    key_id: str
    signature: str  # base64

    def message(self) -> bytes:
        """The exact bytes that are signed: a fixed format, no JSON ambiguity."""
        fields = (str(self.tree_size), self.root_hash, _timestamp(self.signed_at), self.key_id)
        return b"\n".join([HEAD_FORMAT, *(f.encode("ascii") for f in fields)])

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "signed_at": _timestamp(self.signed_at),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SignedTreeHead:
        try:
            signed_at = dt.datetime.fromisoformat(str(doc["signed_at"]).replace("Z", "+00:00"))
            head = cls(
                tree_size=int(doc["tree_size"]),
                root_hash=str(doc["root_hash"]),
                signed_at=signed_at,
                key_id=str(doc["key_id"]),
                signature=str(doc["signature"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError("not a signed tree head") from None
        if head.tree_size < 0 or len(head.root_hash) != 64:
            raise ValueError("not a signed tree head")
        return head


class TreeHeadSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)
        self.public_key_b64 = public_key_b64(self.public_key)

    def entry_mac(self) -> EntryMac:
        """The entry-MAC key, derived from this key (HKDF-SHA256): outside the database
        wherever the signing key is, and nothing new to store or back up."""
        return EntryMac(derive_mac_key(self._key.private_bytes_raw()))

    def sign_document(self, domain: bytes, content: bytes) -> str:
        """Sign other evidence (an export manifest) with the controller's key; ``domain``
        (e.g. ``b"consentry-export-manifest/1\n"``) keeps it from passing for a tree head."""
        if not domain.endswith(b"\n") or domain.startswith(HEAD_FORMAT):
            raise ValueError("a document domain is a newline-terminated label of its own")
        return base64.b64encode(self._key.sign(domain + content)).decode()

    def sign(self, tree_size: int, root: bytes, signed_at: dt.datetime) -> SignedTreeHead:
        unsigned = SignedTreeHead(tree_size, root.hex(), signed_at, self.key_id, "")
        signature = base64.b64encode(self._key.sign(unsigned.message())).decode()
        return SignedTreeHead(tree_size, root.hex(), signed_at, self.key_id, signature)


class TreeHeadVerifier:
    """Checks signatures against public keys trusted out of band, by key id."""

    def __init__(self, public_keys: Iterable[Ed25519PublicKey]) -> None:
        self.keys = {key_id_of(key): key for key in public_keys}

    def problem(self, head: SignedTreeHead) -> str:
        """ "" if the head is genuinely signed by a trusted key, else what is wrong."""
        key = self.keys.get(head.key_id)
        if key is None:
            return f"signed by unknown key {head.key_id}"
        try:
            key.verify(base64.b64decode(head.signature, validate=True), head.message())
        except (InvalidSignature, ValueError, binascii.Error):
            return "signature does not verify"
        return ""


# --- the key file ---------------------------------------------------------------------------


def write_signing_key(path: Path) -> None:
    """Create a new signing key file (mode 0600). Refuses to overwrite an existing one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = Ed25519PrivateKey.generate().private_bytes_raw()
    doc = {"format": SIGNING_KEY_FORMAT, "ed25519": base64.b64encode(raw).decode()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(doc, handle)
        handle.write("\n")


def _private_from_b64(text: str, what: str) -> Ed25519PrivateKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, binascii.Error):
        raise SigningKeyMissing(f"{what} is not an Ed25519 private key") from None


def load_signing_key(path: Path, env_value: str | None = None) -> TreeHeadSigner:
    """From ``CONSENTRY_AUDIT_SIGNING_KEY`` (base64) if set, else from the key file."""
    if env_value:
        return TreeHeadSigner(_private_from_b64(env_value, "CONSENTRY_AUDIT_SIGNING_KEY"))
    if not path.exists():
        raise SigningKeyMissing(
            f"no audit signing key at {path}: create one with `consentry keys init`"
        )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SigningKeyMissing(
            f"audit signing key {path} is readable by others (mode {mode:o}): chmod 600 it"
        )
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != SIGNING_KEY_FORMAT:
            raise SigningKeyMissing(f"{path} is not a Consentry audit signing key file")
        return TreeHeadSigner(_private_from_b64(str(doc["ed25519"]), str(path)))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SigningKeyMissing(f"{path} is not a valid audit signing key file") from None
