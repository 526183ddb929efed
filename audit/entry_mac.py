"""Entry MACs: every audit entry is authenticated with a key the database never holds.

The hash chain and the Merkle tree use no secret, so whoever can INSERT into ``audit`` (the
application's own database role) could append an entry that chains correctly. The MAC
closes that: it is HMAC-SHA256 under a key derived (HKDF-SHA256) from the Ed25519 signing
key, which lives outside the database. The sealer refuses to sign past an entry whose MAC
does not verify, and ``consentry audit verify`` names it.

Entries written before MACs existed carry an empty ``mac``. ``consentry audit
mac-existing`` vouches for them once, with one MAC'd entry (action ``audit.mac_baseline``)
whose detail holds how many there are and the Merkle root over them; see docs/audit.md
for what that does and does not prove.
"""

from __future__ import annotations

import hmac as std_hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAC_KEY_INFO = b"consentry-audit-entry-mac-key/1"
MAC_DOMAIN = b"consentry-audit-entry-mac/1\n"
# A client string too long or unprintable for its column is stored as a keyed digest under
# this domain (audit.log.stored_columns): unlike a bare SHA-256, someone holding only the
# database cannot confirm a guess (an e-mail address typed into a URL, say).
STAND_IN_DOMAIN = b"consentry-audit-stand-in/1\n"
BASELINE_ACTION = "audit.mac_baseline"


def derive_mac_key(signing_key_raw: bytes) -> bytes:
    """HKDF-SHA256 (no salt) over the 32 raw bytes of the Ed25519 private key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=MAC_KEY_INFO).derive(
        signing_key_raw
    )


class EntryMac:
    """Computes and checks entry MACs. Never logs or prints the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("an entry MAC key is 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "EntryMac(<key>)"

    @property
    def key(self) -> bytes:
        """The raw key, for ``consentry audit mac-key`` (an auditor's standalone check)."""
        return self._key

    def mac(self, canonical: bytes) -> str:
        # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as an HMAC object at a
        # fraction of the cost per call (verification checks every entry's MAC).
        return std_hmac.digest(self._key, MAC_DOMAIN + canonical, "sha256").hex()

    def stand_in(self, value: str) -> str:
        """The keyed digest stored in place of a client string that does not fit."""
        h = crypto_hmac.HMAC(self._key, hashes.SHA256())
        h.update(STAND_IN_DOMAIN + value.encode("utf-8", "surrogatepass"))
        return h.finalize().hex()

    def verifies(self, canonical: bytes, mac: str) -> bool:
        return std_hmac.compare_digest(self.mac(canonical), str(mac or ""))


@dataclass(frozen=True)
class Baseline:
    """What ``consentry audit mac-existing`` vouched for: entries 1..legacy_upto (written
    before MACs) whose Merkle root was ``legacy_root`` when it ran, at entry ``seq``."""

    seq: int
    legacy_upto: int
    legacy_root: str


def baseline_of(row: Mapping[str, Any]) -> Baseline | None:
    """The baseline a (MAC-checked) entry states, if it is one."""
    if row.get("action") != BASELINE_ACTION:
        return None
    try:
        detail = json.loads(str(row["detail"]))
        return Baseline(int(row["seq"]), int(detail["legacy_upto"]), str(detail["legacy_root"]))
    except (KeyError, TypeError, ValueError):
        return None
