"""Fast verification (``AuditTrail.verify``) recomputes exactly what was stored, reading in
bounded batches.

Verification reads entries as tuples straight from the driver and encodes them with
``audit.log.canonical_values``; every stored hash and MAC covers ``json.dumps``'s bytes,
so the two encoders are compared here over generated rows (unicode, lone surrogates,
control characters, NULLs, nested JSON text, odd numbers and timestamps). The tampering
tests of test_audit_trail.py are repeated on a log of thousands of entries read in small
batches, with the tampering placed on a batch boundary.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from hypothesis import given, settings
from hypothesis import strategies as st

import audit.trail
from audit.entry_mac import MAC_DOMAIN, EntryMac
from audit.events import Action, AuditEvent, Outcome
from audit.log import CANONICAL_KEYS, AuditLog, canonical, canonical_values
from audit.tables import AuditRecord
from audit.trail import ENTRY_COLUMNS, AuditTrail, _fetch_piccolo
from server import db
from server.services import Services
from tests.audit.test_audit_integrity import _standalone
from tests.audit.test_audit_trail import _as_owner, _flip_last_hex, _rewrite_from
from tests.conftest import Staff
from tests.dbutil import raw_sql


def _json_dumps_canonical(row: dict[str, Any]) -> bytes:
    """The encoder every stored hash was computed with, as docs/audit-format.md states it."""
    body = {k: v for k, v in row.items() if k not in {"id", "hash", "mac"}}
    if isinstance(body["ts"], dt.datetime):
        body["ts"] = body["ts"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


# Every code point, lone surrogates included (a client string may carry one).
_text = st.text(st.characters(exclude_categories=()), max_size=40)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_zones = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(hours=-8))]
)
_timestamps = st.one_of(
    st.datetimes(timezones=st.just(dt.UTC)),  # what both drivers return
    st.datetimes(
        min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31), timezones=_zones
    ),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(1200, 1, 1)).map(
        lambda moment: moment.replace(tzinfo=dt.UTC)  # years before 1000 pad differently
    ),
    _text,
)
_columns: dict[str, Any] = {name: _text for name in CANONICAL_KEYS}
_columns.update(
    seq=st.one_of(st.integers(), st.integers(min_value=2**63), st.booleans(), st.floats()),
    ts=_timestamps,
    resource_id=st.none() | _text,
    detail=_json_value.map(lambda value: json.dumps(value, sort_keys=True)) | _text,
    subject_ids=st.lists(_text, max_size=3).map(json.dumps),
    fields=st.lists(_text, max_size=3).map(json.dumps),
)
_rows = st.fixed_dictionaries(_columns)


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(_rows)
def test_the_tuple_encoder_gives_json_dumps_bytes(row: dict[str, Any]) -> None:
    values = tuple(row[name] for name in CANONICAL_KEYS)
    expected = _json_dumps_canonical(row)
    assert canonical_values(values) == expected
    assert canonical(row) == expected


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_rows.filter(lambda row: isinstance(row["ts"], dt.datetime) and type(row["seq"]) is int))
def test_the_standalone_verifier_computes_the_same_hash(row: dict[str, Any]) -> None:
    exported = {**row, "ts": row["ts"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    values = tuple(row[name] for name in CANONICAL_KEYS)
    assert _standalone().canonical(exported) == canonical_values(values)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=2000), st.binary(min_size=32, max_size=32))
def test_the_entry_mac_is_the_hmac_it_always_was(body: bytes, key: bytes) -> None:
    """hmac.digest replaced cryptography's HMAC object: the same MAC over the same bytes."""
    reference = crypto_hmac.HMAC(key, hashes.SHA256())
    reference.update(MAC_DOMAIN + body)
    mac = EntryMac(key)
    assert mac.mac(body) == reference.finalize().hex()
    assert mac.verifies(body, mac.mac(body))
    assert not mac.verifies(body + b" ", mac.mac(body))


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        actor_id=f"user:{i % 7}",
        actor_role="admin",
        action=Action.READ,
        resource_type="contact",
        outcome=Outcome.ALLOWED,
        purpose="customer_relationship",
        resource_id=None if i % 5 == 0 else f"réf-{i}-中文-\u2028",
        subject_ids=(f"sub_{i}", "sub_0"),
        fields=("email", "phone"),
        reason="allowed",
        request_id=f"r-{i}",
        detail={"rows": i, "note": "naïve 😀", "nested": {"list": [1, None, True, 2.5]}},
    )


async def _long_log(services: Services, events: int) -> int:
    """``events`` entries (group commits of 500, as busy servers write them), sealed twice."""
    mac = services.audit_trail.mac
    assert mac is not None
    log = AuditLog(mac)
    written = 0
    while written < events:
        count = min(500, events - written)
        await log._commit([_event(written + i) for i in range(count)])
        written += count
        if written == events // 2:
            assert await services.audit_trail.seal() is not None
    assert await services.audit_trail.seal_all() is not None
    return written


async def test_the_driver_reads_what_piccolo_reads(
    services: Services, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The premise of byte-identical hashes: the tuples verification reads hold the same
    values, of the same types, as Piccolo's select() (the timestamp a UTC datetime)."""
    await _long_log(services, 40)

    async def not_through_piccolo(after_seq: int) -> Any:
        raise AssertionError("outside a transaction, verification reads from the driver")

    monkeypatch.setattr(audit.trail, "_fetch_piccolo", not_through_piccolo)
    direct = [tuple(row) async for batch in services.audit_trail._entry_batches(0) for row in batch]
    monkeypatch.undo()
    through_piccolo = await _fetch_piccolo(0)
    assert direct == through_piccolo
    assert [[type(v) for v in row] for row in direct] == [
        [type(v) for v in row] for row in through_piccolo
    ]
    assert {row[ENTRY_COLUMNS.index("ts")].tzinfo for row in direct} == {dt.UTC}
    assert any(row[ENTRY_COLUMNS.index("resource_id")] is None for row in direct)
    for row in direct:
        body = canonical_values(row[: len(CANONICAL_KEYS)])
        assert hashlib.sha256(body).hexdigest() == row[ENTRY_COLUMNS.index("hash")]


async def test_verification_reads_in_bounded_batches(
    services: Services, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However long the log, one batch is checked while at most one more is read."""
    events = await _long_log(services, 1000)
    batch = 64
    monkeypatch.setattr(audit.trail, "VERIFY_BATCH", batch)
    sizes: list[int] = []
    in_flight = 0
    most_in_flight = 0
    read_ahead = audit.trail._read_ahead

    def counting(fetch: Any, after: int) -> Any:
        async def counted(after_seq: int) -> Any:
            nonlocal in_flight, most_in_flight
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            rows = await fetch(after_seq)
            in_flight -= 1
            sizes.append(len(rows))
            return rows

        return read_ahead(counted, after)

    monkeypatch.setattr(audit.trail, "_read_ahead", counting)
    report = await services.audit_trail.verify()
    assert report.ok, report.problem
    assert report.checked == events
    full, rest = divmod(events, batch)
    assert sizes == [batch] * full + ([rest] if rest else []) + [0]
    assert most_in_flight == 1


_BOUNDARY = 256  # entries per read in the tests below: entry 1024 ends a batch, 1025 starts one


@pytest.mark.parametrize(
    ("statements", "first_bad", "problem"),
    [
        (["UPDATE audit SET actor_role = 'compliance' WHERE seq = 1024"], 1024, "contents do"),
        (["UPDATE audit SET detail = '{}' WHERE seq = 1025"], 1025, "contents do not match"),
        (["UPDATE audit SET resource_id = NULL WHERE seq = 1027"], 1027, "contents do not"),
        (["DELETE FROM audit WHERE seq = 1025"], 1025, "entry 1025 is missing (deleted)"),
        (
            [
                "UPDATE audit SET seq = 100000 WHERE seq = 1024",
                "UPDATE audit SET seq = 1024 WHERE seq = 1025",
                "UPDATE audit SET seq = 1025 WHERE seq = 100000",
            ],
            1024,
            "entry 1024 does not link to entry 1023",
        ),
        (["UPDATE audit SET mac = '' WHERE seq = 1025"], 1025, "entry 1025 carries no MAC"),
        (["UPDATE audit SET mac = '0' WHERE seq = 1024"], 1024, "its MAC does not verify"),
    ],
    ids=["edit-last", "edit-first", "null-a-column", "delete", "reorder", "strip-mac", "bad-mac"],
)
async def test_tampering_on_a_batch_boundary_of_a_long_log_is_located(
    services: Services,
    staff: Staff,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    statements: list[str],
    first_bad: int,
    problem: str,
) -> None:
    await _long_log(services, 3000)
    monkeypatch.setattr(audit.trail, "VERIFY_BATCH", _BOUNDARY)
    assert (await services.audit_trail.verify()).ok
    await _as_owner(database_url, *statements)
    report = await services.audit_trail.verify()
    assert not report.ok
    assert report.first_bad_seq == first_bad
    assert problem in report.problem
    assert report.checked == first_bad - 1


async def test_a_flipped_hash_and_a_rewrite_of_a_long_log_are_caught(
    services: Services, staff: Staff, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _long_log(services, 3000)
    monkeypatch.setattr(audit.trail, "VERIFY_BATCH", _BOUNDARY)
    rows = await raw_sql(database_url, "SELECT hash FROM audit WHERE seq = 2049")
    await _as_owner(
        database_url,
        "UPDATE audit SET hash = ? WHERE seq = 2049",
        args=(_flip_last_hex(rows[0]["hash"]),),
    )
    report = await services.audit_trail.verify()
    assert (report.first_bad_seq, report.problem) == (
        2049,
        "entry 2049: contents do not match its hash",
    )
    await _as_owner(
        database_url, "UPDATE audit SET hash = ? WHERE seq = 2049", args=(rows[0]["hash"],)
    )
    assert (await services.audit_trail.verify()).ok

    # A consistent rewrite (every later hash recomputed): the MAC names the entry, and
    # without the MAC key the signed heads name the range.
    await _rewrite_from(database_url, 2800, outcome="denied")
    report = await services.audit_trail.verify()
    assert report.first_bad_seq == 2800
    assert "its MAC does not verify" in report.problem
    public_only = await AuditTrail(None, trusted=services.audit_trail.verifier).verify()
    assert not public_only.ok
    assert public_only.first_bad_seq == 1501  # the first entry after the head over 1500
    assert "rewritten" in public_only.problem


async def test_truncating_a_long_log_is_caught(
    services: Services, staff: Staff, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _long_log(services, 3000)
    monkeypatch.setattr(audit.trail, "VERIFY_BATCH", _BOUNDARY)
    await _as_owner(database_url, "DELETE FROM audit WHERE seq > 2816")
    report = await services.audit_trail.verify()
    assert not report.ok
    assert report.first_bad_seq == 2817
    assert "entries 2817-3000 were deleted (truncated)" in report.problem
    assert await AuditRecord.count() == 2816


async def test_inside_a_transaction_verification_reads_through_piccolo(
    services: Services, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction's own uncommitted entries are visible only on its connection, so
    there verification reads through Piccolo, and still checks every entry."""
    await _long_log(services, 300)
    monkeypatch.setattr(audit.trail, "VERIFY_BATCH", 64)
    through_piccolo: list[int] = []

    async def spied(after_seq: int) -> list[tuple[Any, ...]]:
        through_piccolo.append(after_seq)
        return await _fetch_piccolo(after_seq)

    monkeypatch.setattr(audit.trail, "_fetch_piccolo", spied)
    async with db.write_transaction():
        report = await services.audit_trail.verify()
    assert report.ok, report.problem
    assert report.checked == 300
    assert through_piccolo[:2] == [0, 64]
