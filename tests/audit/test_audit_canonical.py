"""The canonical bytes of an audit entry (audit.log.canonical) are what every stored hash
and MAC covers: the fixed-order fast path must give exactly ``json.dumps``'s bytes, on
every kind of value an entry can hold. The expected hashes below were computed with the
``json.dumps`` implementation that wrote the existing logs, before the fast path existed."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.events import AuditEvent, Outcome
from audit.log import (
    CANONICAL_KEYS,
    NOT_HASHED,
    AuditLog,
    _canonical_fixed,
    _canonical_json,
    canonical,
    entry_hash,
)
from audit.signing import TreeHeadSigner
from tests.audit.test_audit_integrity import _standalone

UTC = dt.UTC
BASE: dict[str, Any] = {
    "id": 7,
    "seq": 1,
    "ts": dt.datetime(2026, 12, 2, 5, 30, 0, 41230, tzinfo=UTC),
    "actor_id": "user:3",
    "actor_role": "sales",
    "action": "read",
    "resource_type": "contact",
    "resource_id": "5b0c1f0e-1111-2222-3333-444455556666",
    "subject_ids": '["sub_4f"]',
    "fields": '["email", "first_name"]',
    "purpose": "sales",
    "outcome": "allowed",
    "reason": "allowed",
    "request_id": "r-81f0",
    "detail": '{"returned": 1}',
    "prev_hash": "0" * 64,
    "hash": "x",
    "mac": "y",
}
CHANGES: dict[str, dict[str, Any]] = {
    "plain": {},
    "unicode": {"resource_id": "café-中文-😀", "request_id": "ünïcødé", "reason": "naïve"},
    "escapes": {
        "resource_id": 'quote " back \\ slash / tab\t nl\n del\x7f nul\x00',
        "actor_id": "\u2028\u2029",
    },
    "surrogate": {"request_id": "lone \udc80 surrogate"},
    "nested": {
        "detail": '{"hashed": "resource_id", "nested": {"a": [1, 2.5, -3e10, null, true]}, '
        '"rows": 999999}',
        "subject_ids": '["a", "b", "c"]',
        "fields": "[]",
    },
    "numbers": {"seq": 2**53 + 1, "resource_id": None},
    "zero-micro": {"ts": dt.datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC), "seq": 0},
    "other-zone": {
        "ts": dt.datetime(
            2026, 6, 30, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-5, minutes=-30))
        )
    },
    "ts-as-text": {"ts": "2026-12-02T05:30:00.041230Z"},
    "empty": {"actor_id": "", "purpose": "", "detail": "{}"},
}
# entry_hash of each, computed by the json.dumps implementation (commit c4d484a).
EXPECTED = {
    "plain": "ea6086dd6fa3c4edae303da6c0efa1a7cb7a231ccd047e183df19beb4cec0dda",
    "unicode": "7a7b34035a85b4281262c84786ac8ec40cd308af43f67657680642b73b554d41",
    "escapes": "57c77fb5aa5080f96e70181e5194c0c820fe3e2cbd26ce417b9147841390df5f",
    "surrogate": "3d5e48a49a83b8fef836934db16ddf5e2dfb6a5232746e171ad0362664ad2208",
    "nested": "a34bbd7b4d7aab4de71e8784af20f186ddc4bcba416f08ceb5b1e8317b14f865",
    "numbers": "aa9e455b24c09d986e48294a60d304bb31e28a31fa9cc788a367b59b923b977e",
    "zero-micro": "b70319b82a4181a39b3574ced86b0f7506c38f698ed9d90ab6bed7967adb77b5",
    "other-zone": "caeac77104b4b7ea9850f278d3b067834eb04e76b48028bf50f65229e63c2252",
    "ts-as-text": "ea6086dd6fa3c4edae303da6c0efa1a7cb7a231ccd047e183df19beb4cec0dda",
    "empty": "b9ff33c5b1da20df81c0b8a96810df9f9cc144d5eb526f7324c5210d9c9caa7d",
}


def _standalone_canonical(row: dict[str, Any]) -> bytes:
    exported = dict(row)
    if isinstance(exported["ts"], dt.datetime):  # the export writes the timestamp as text
        exported["ts"] = exported["ts"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body: bytes = _standalone().canonical(exported)
    return body


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_the_fast_canonical_form_is_byte_identical(name: str) -> None:
    row = {**BASE, **CHANGES[name]}
    fast = _canonical_fixed(row)
    assert fast is not None, "every kind of value here takes the fast path"
    assert fast == _canonical_json(row)
    assert canonical(row) == fast
    assert _standalone_canonical(row) == fast
    assert hashlib.sha256(fast).hexdigest() == entry_hash(row) == EXPECTED[name]


def test_the_keys_are_the_entry_columns_in_sorted_order() -> None:
    assert list(CANONICAL_KEYS) == sorted(CANONICAL_KEYS)
    assert set(CANONICAL_KEYS) == set(BASE) - NOT_HASHED


@pytest.mark.parametrize(
    "change",
    [
        {"seq": True},  # a bool is an int to Python, not to JSON
        {"seq": 1.5},
        {"ts": dt.datetime(999, 1, 1, tzinfo=UTC)},
        {"extra": "column"},
    ],
    ids=["bool", "float", "year-999", "extra-column"],
)
def test_anything_unusual_takes_json_dumps(change: dict[str, Any]) -> None:
    row = {**BASE, **change}
    assert canonical(row) == _canonical_json(row)


def test_rows_the_log_writes_take_the_fast_path_with_the_same_bytes() -> None:
    log = AuditLog(TreeHeadSigner(Ed25519PrivateKey.generate()).entry_mac())
    event = AuditEvent(
        actor_id="user:1",
        actor_role="admin",
        action="read",
        resource_type="contact",
        outcome=Outcome.DENIED,
        purpose="customer_relationship",
        resource_id="x" * 500,  # stored as a digest, named in detail["hashed"]
        subject_ids=("b", "a"),
        fields=("phone", "email"),
        reason="ümlaut",
        request_id="r-1",
        detail={"rows": 3, "note": "naïve"},
    )
    row = log._row(event, 42, "f" * 64)
    assert json.loads(row["detail"])["hashed"] == "resource_id"
    assert _canonical_fixed(row) == _canonical_json(row)
    assert row["hash"] == hashlib.sha256(_canonical_json(row)).hexdigest()
