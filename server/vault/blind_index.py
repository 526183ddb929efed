"""Blind indexes: exact-match lookup over encrypted columns without decrypting every row.

The token is HMAC-SHA256 under a per-field key (HKDF from the index root, labelled with
table and column, so equal e-mails in two tables do not share tokens), truncated to a width
chosen by the CipherSweet rule: expected false matches per lookup between 2 and sqrt(rows).
Truncation is deliberate: a full-width token would let anyone holding the database confirm
a guessed value row by row; a short one only narrows the search, and the gateway decrypts
candidates and re-checks them so no false positive is ever returned.
"""

from __future__ import annotations

import math
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_WIDTH = 8
MAX_WIDTH = 31  # fits a signed 32-bit integer column on both engines


def index_width(expected_rows: int) -> int:
    """Widest width whose expected coincidences (rows / 2**bits) stay at least 2.

    For 1,000,000 rows that is 18 bits (about 3.8 candidates per lookup), well under the
    sqrt(rows) = 1,000 upper bound.
    """
    if expected_rows < 2 ** (MIN_WIDTH + 1):
        return MIN_WIDTH
    bits = math.floor(math.log2(expected_rows / 2))
    return max(MIN_WIDTH, min(MAX_WIDTH, bits))


@lru_cache(maxsize=64)
def _field_key(root: bytes, table: str, column: str) -> bytes:
    info = f"consentry/blind-index/v1|{table}|{column}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(root)


def blind_index(root: bytes, table: str, column: str, normalized: str, width: int) -> int:
    mac = hmac.HMAC(_field_key(root, table, column), hashes.SHA256())
    mac.update(normalized.encode("utf-8"))
    return int.from_bytes(mac.finalize()[:4], "big") >> (32 - width)
