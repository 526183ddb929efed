"""Versioned AES-256-GCM envelopes for field values and wrapped data keys.

Field ciphertext is text so that it survives any column type and every dump format:

    cs1.<key_version>.<base64url(nonce || ciphertext || tag)>

The associated data binds the ciphertext to table, column, row, subject and key version,
so a value copied into another row, column or table fails to decrypt instead of being
silently accepted.

Sealing and opening take either a raw key or an ``AESGCM`` built from it: building the
cipher (the key schedule) costs more than sealing a short value, so a caller with many
fields under one key builds it once (``DataKey.cipher``: per key, per operation - never
kept across requests, so a shredded key is not held anywhere once its request ends).
"""

from __future__ import annotations

import base64
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FIELD_PREFIX = "cs1"
NONCE_BYTES = 12


class CiphertextError(Exception):
    """Malformed or tampered ciphertext, or the wrong key (shredded keys end up here too)."""


def field_ad(table: str, column: str, row_id: str, subject_id: str, key_version: int) -> bytes:
    return f"consentry/field/v1|{table}|{column}|{row_id}|{subject_id}|{key_version}".encode()


def _cipher(key: bytes | AESGCM) -> AESGCM:
    return key if isinstance(key, AESGCM) else AESGCM(key)


def seal_field(key: bytes | AESGCM, key_version: int, plaintext: str, ad: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = _cipher(key).encrypt(nonce, plaintext.encode("utf-8"), ad)
    body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
    return f"{FIELD_PREFIX}.{key_version}.{body}"


def parse_field(token: str) -> tuple[int, bytes]:
    try:
        prefix, version, body = token.split(".", 2)
        if prefix != FIELD_PREFIX:
            raise ValueError(prefix)
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return int(version), raw
    except (ValueError, TypeError):
        raise CiphertextError("not a Consentry field ciphertext") from None


def open_field(key: bytes | AESGCM, raw: bytes, ad: bytes) -> str:
    try:
        return _cipher(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], ad).decode("utf-8")
    except (InvalidTag, ValueError):  # ValueError: truncated body, too short for a nonce
        raise CiphertextError("field ciphertext does not authenticate") from None


def wrap_ad(subject_id: str, version: int, kek_id: str) -> bytes:
    return b"consentry/data-key/v1|" + f"{subject_id}|{version}|{kek_id}".encode()


def wrap_key(kek: bytes, data_key: bytes, ad: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(kek).encrypt(nonce, data_key, ad)
    return base64.b64encode(struct.pack(">B", 1) + nonce + sealed).decode("ascii")


def unwrap_key(kek: bytes, wrapped: str, ad: bytes) -> bytes:
    try:
        raw = base64.b64decode(wrapped)
        if raw[:1] != b"\x01":
            raise ValueError("unknown wrap version")
        return AESGCM(kek).decrypt(raw[1 : 1 + NONCE_BYTES], raw[1 + NONCE_BYTES :], ad)
    except (InvalidTag, ValueError):
        raise CiphertextError("data key does not unwrap under this KEK") from None
