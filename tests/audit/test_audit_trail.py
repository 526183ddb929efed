"""Sealing and verifying the audit trail: signed Merkle tree heads, tampering detected and
located, proofs that verify offline, and correct sealing with several processes at once.

Every tampering test does what a database administrator could: connect as the owner, turn
the append-only triggers off, and change the tables directly. The verifier must then fail
and name the first bad sequence number (or, for a consistently rewritten history, the
range between two signed heads where the rewrite happened).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.log import entry_hash
from audit.signing import SignedTreeHead, TreeHeadSigner, TreeHeadVerifier
from audit.tables import AuditRecord
from audit.trail import AuditTrail, SealRefused, read_checkpoints, verify_slice
from server.services import Services
from tests.conftest import ENGINE, Staff, contact_values, owner_url
from tests.dbutil import count_rows, raw_sql

REPO = Path(__file__).resolve().parents[2]


async def _activity(services: Services, staff: Staff, contacts: int = 2) -> None:
    """Some real gateway traffic: creates, a read, a list and a denial."""
    admin = staff.actor(await staff.create("admin"))
    first = None
    for _ in range(contacts):
        record = await services.gateway.create(admin, "contact", contact_values())
        first = first or record
    assert first is not None
    await services.gateway.read(admin, "contact", first.id)
    await services.gateway.list(admin, "contact")


async def _as_owner(database_url: str, *statements: str, args: tuple[Any, ...] = ()) -> None:
    """Turn the append-only triggers off, as the tables' owner, and run ``statements``."""
    owner = owner_url(database_url)
    if ENGINE == "postgres":
        for table in ("audit", "audit_checkpoint"):
            await raw_sql(owner, f"ALTER TABLE {table} DISABLE TRIGGER USER")
    else:
        for trigger in (
            "audit_no_update",
            "audit_no_delete",
            "audit_checkpoint_no_update",
            "audit_checkpoint_no_delete",
        ):
            await raw_sql(owner, f"DROP TRIGGER IF EXISTS {trigger}")
    for statement in statements:
        await raw_sql(owner, statement, *args)


async def _sealed_log(services: Services, staff: Staff) -> int:
    """A log with two signed heads; returns its size."""
    await _activity(services, staff)
    first = await services.audit_trail.seal()
    assert first is not None
    await _activity(services, staff)
    second = await services.audit_trail.seal()
    assert second is not None
    assert second.tree_size > first.tree_size
    return second.tree_size


# --- sealing and verifying an honest log ------------------------------------------------


async def test_untouched_log_verifies_fully_and_incrementally(
    services: Services, staff: Staff, database_url: str
) -> None:
    trail = services.audit_trail
    size = await _sealed_log(services, staff)

    full = await trail.verify()
    assert full.ok, full
    assert (full.mode, full.checked, full.heads_checked) == ("full", size, 2)
    assert full.head is not None
    assert full.head.tree_size == size
    assert full.unsealed == 0

    await _activity(services, staff)
    newest = await trail.newest_event()
    assert newest is not None
    unsealed = await trail.verify(incremental=True)
    assert unsealed.ok
    assert unsealed.mode == "incremental"
    assert unsealed.checked == newest[0] - size  # only what came after the verified head
    assert unsealed.unsealed == newest[0] - size

    await trail.seal()
    again = await trail.verify(incremental=True)
    assert again.ok
    assert again.unsealed == 0
    assert again.heads_checked == 1


async def test_sealing_signs_every_event_once_and_heads_only_grow(
    services: Services, staff: Staff, database_url: str
) -> None:
    trail = services.audit_trail
    assert await trail.seal() is None  # an empty log has nothing to sign
    await _activity(services, staff)
    head = await trail.seal()
    assert head is not None
    assert head.tree_size == await count_rows(database_url, "audit")
    assert not trail.verifier.problem(head)
    assert await trail.seal() is None  # nothing new: no new head
    assert await count_rows(database_url, "audit_checkpoint") == 1


async def test_a_transaction_that_rolls_back_leaves_no_gap(
    services: Services, staff: Staff, database_url: str
) -> None:
    await _activity(services, staff)
    admin = staff.actor(await staff.create("admin"))
    with pytest.raises(Exception, match="invalid"):
        await services.gateway.create(admin, "contact", {"email": "invalid"})
    await services.gateway.list(admin, "contact")
    await services.audit_trail.seal()
    report = await services.audit_trail.verify()
    assert report.ok, report
    assert report.checked == await count_rows(database_url, "audit")


# --- tampering --------------------------------------------------------------------------


def _flip_last_hex(value: str) -> str:
    return value[:-1] + ("0" if value[-1] != "0" else "1")


async def test_changing_one_byte_names_that_entry(
    services: Services, staff: Staff, database_url: str
) -> None:
    await _sealed_log(services, staff)
    rows = await raw_sql(database_url, "SELECT hash FROM audit WHERE seq = 5")
    await _as_owner(
        database_url,
        "UPDATE audit SET hash = ? WHERE seq = 5",
        args=(_flip_last_hex(rows[0]["hash"]),),
    )
    report = await services.audit_trail.verify()
    assert not report.ok
    assert report.first_bad_seq == 5
    assert report.problem == "entry 5: contents do not match its hash"
    assert report.checked == 4


@pytest.mark.parametrize(
    ("statements", "first_bad", "problem"),
    [
        (["UPDATE audit SET actor_role = 'compliance' WHERE seq = 3"], 3, "contents do not match"),
        (["UPDATE audit SET fields = '[]' WHERE seq = 4"], 4, "contents do not match"),
        (["DELETE FROM audit WHERE seq = 3"], 3, "entry 3 is missing (deleted)"),
        (
            [
                "UPDATE audit SET seq = 1000 WHERE seq = 2",
                "UPDATE audit SET seq = 2 WHERE seq = 3",
                "UPDATE audit SET seq = 3 WHERE seq = 1000",
            ],
            2,
            "entry 2 does not link to entry 1",
        ),
    ],
    ids=["modify-a-field", "modify-field-names", "delete-a-row", "reorder-two-rows"],
)
async def test_tampering_is_located(
    services: Services,
    staff: Staff,
    database_url: str,
    statements: list[str],
    first_bad: int,
    problem: str,
) -> None:
    await _sealed_log(services, staff)
    await _as_owner(database_url, *statements)
    report = await services.audit_trail.verify()
    assert not report.ok
    assert report.first_bad_seq == first_bad
    assert problem in report.problem
    assert report.checked == first_bad - 1


async def test_an_inserted_entry_is_named_where_it_was_put(
    services: Services, staff: Staff, database_url: str
) -> None:
    """A forged entry slipped in at 3, with its own hash computed correctly and the later
    entries renumbered. With the MAC key its MAC fails; without it (an auditor holding only
    the public key), entry 4 - the real third - links to entry 2, which names 3 too."""
    await _sealed_log(services, staff)
    row = await AuditRecord.select().where(AuditRecord.seq == 2).first()
    assert row is not None
    forged = {k: v for k, v in row.items() if k != "id"}
    forged.update(seq=3, action="read", resource_id="forged", prev_hash=row["hash"])
    forged["hash"] = entry_hash(forged)
    columns = [k for k in forged if k != "ts"]
    await _as_owner(
        database_url,
        "UPDATE audit SET seq = seq + 100000 WHERE seq >= 3",
        "UPDATE audit SET seq = seq - 99999 WHERE seq >= 100003",
    )
    await raw_sql(
        owner_url(database_url),
        f"INSERT INTO audit (ts, {', '.join(columns)}) "
        f"SELECT ts, {', '.join('?' for _ in columns)} FROM audit WHERE seq = 2",
        *(forged[c] for c in columns),
    )
    report = await services.audit_trail.verify()
    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.problem == "entry 3: its MAC does not verify: not written by this server"
    public_only = await AuditTrail(None, trusted=services.audit_trail.verifier).verify()
    assert public_only.first_bad_seq == 3
    assert public_only.problem == "entry 3 was inserted (entry 4 links to entry 2)"


async def test_deleting_the_newest_rows_is_truncation(
    services: Services, staff: Staff, database_url: str
) -> None:
    size = await _sealed_log(services, staff)
    await _as_owner(database_url, "DELETE FROM audit WHERE seq > ?", args=(size - 3,))
    report = await services.audit_trail.verify()
    assert not report.ok
    assert report.first_bad_seq == size - 2
    assert "truncated" in report.problem
    assert f"entries {size - 2}-{size}" in report.problem


async def _rewrite_from(database_url: str, seq: int, **changes: str) -> None:
    """A careful forger: edit entry ``seq`` and recompute every hash after it, so the chain
    is perfectly consistent again (only the signed heads can tell)."""
    rows = await AuditRecord.select().where(AuditRecord.seq >= seq).order_by(AuditRecord.seq)
    previous = await AuditRecord.select(AuditRecord.hash).where(AuditRecord.seq == seq - 1).first()
    assert previous is not None
    last_hash = str(previous["hash"])
    statements = []
    for row in rows:
        if int(row["seq"]) == seq:
            row.update(changes)
        row["prev_hash"] = last_hash
        row["hash"] = entry_hash(row)
        last_hash = row["hash"]
        statements.append((row, row["prev_hash"], row["hash"]))
    await _as_owner(database_url)
    owner = owner_url(database_url)
    for row, prev_hash, new_hash in statements:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        if int(row["seq"]) == seq:
            await raw_sql(
                owner,
                f"UPDATE audit SET {assignments}, prev_hash = ?, hash = ? WHERE seq = ?",
                *changes.values(),
                prev_hash,
                new_hash,
                seq,
            )
        else:
            await raw_sql(
                owner,
                "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
                prev_hash,
                new_hash,
                int(row["seq"]),
            )


async def test_a_consistently_rewritten_history_fails_against_the_signed_heads(
    services: Services, staff: Staff, database_url: str
) -> None:
    await _activity(services, staff)
    first = await services.audit_trail.seal()
    await _activity(services, staff)
    second = await services.audit_trail.seal()
    assert first is not None
    assert second is not None
    target = first.tree_size + 2

    await _rewrite_from(database_url, target, outcome="denied", reason="action_not_allowed")

    report = await services.audit_trail.verify()
    assert not report.ok
    # The chain is whole again, but the forger could not recompute the MAC: named exactly.
    assert report.first_bad_seq == target
    assert report.problem == f"entry {target}: its MAC does not verify: not written by this server"
    # Without the MAC key, the root over entries first+1..second no longer matches.
    public_only = await AuditTrail(None, trusted=services.audit_trail.verifier).verify()
    assert public_only.first_bad_seq == first.tree_size + 1
    assert f"entries {first.tree_size + 1}-{second.tree_size}" in public_only.problem
    assert "rewritten" in public_only.problem


async def test_truncating_rows_and_heads_is_caught_by_exported_heads_and_incremental_state(
    services: Services, staff: Staff, database_url: str
) -> None:
    """The thorough attacker deletes the newest events *and* the heads that covered them.
    What is left is internally consistent; a head kept outside the database catches it."""
    trail = services.audit_trail
    await _activity(services, staff)
    first = await trail.seal()
    await _activity(services, staff)
    second = await trail.seal()
    assert first is not None
    assert second is not None
    exported = read_checkpoints(json.loads(json.dumps(await trail.export_checkpoints())))
    assert [h.tree_size for h in exported] == [first.tree_size, second.tree_size]
    assert (await trail.verify(incremental=True)).ok  # remembers the head over `second`

    await _as_owner(
        database_url,
        f"DELETE FROM audit WHERE seq > {first.tree_size}",
        f"DELETE FROM audit_checkpoint WHERE tree_size > {first.tree_size}",
    )

    # A verifier with no memory and nothing exported: the database alone cannot tell...
    amnesiac = AuditTrail(None, trusted=trail.verifier)
    assert (await amnesiac.verify()).ok
    against = await amnesiac.verify(against=exported)  # ...a head exported earlier can...
    assert not against.ok
    assert against.first_bad_seq == first.tree_size + 1
    assert "truncated" in against.problem
    for incremental in (True, False):  # ...and so can this machine's last verification.
        remembered = await trail.verify(incremental=incremental)
        assert not remembered.ok
        assert remembered.first_bad_seq == first.tree_size + 1
        assert "the head verified earlier on this machine covers" in remembered.problem
        assert "truncated" in remembered.problem


async def test_a_rewrite_caught_by_saved_state_names_the_first_changed_entry(
    services: Services, staff: Staff, database_url: str
) -> None:
    """History rewritten from one entry on and every head deleted: this machine's record of
    the last verified head says something changed, and the MACs say where it started."""
    trail = services.audit_trail
    size = await _sealed_log(services, staff)
    assert (await trail.verify()).ok  # remembers the head over `size`
    await _rewrite_from(database_url, 4, outcome="denied", reason="action_not_allowed")
    await _as_owner(database_url, "DELETE FROM audit_checkpoint")
    for incremental in (True, False):
        report = await trail.verify(incremental=incremental)
        assert not report.ok
        assert report.first_bad_seq == 4, report
        assert report.problem == "entry 4: its MAC does not verify: not written by this server"
    public_only = AuditTrail(None, trusted=trail.verifier, state_file=trail.state_file)
    report = await public_only.verify()
    assert report.first_bad_seq == 1  # no head left below it: the whole range is suspect
    assert f"entries 1-{size} do not match the head verified earlier" in report.problem


async def test_a_head_signed_by_another_key_is_rejected(
    services: Services, staff: Staff, database_url: str
) -> None:
    size = await _sealed_log(services, staff)
    await _activity(services, staff)
    # A valid tree, signed with a key nobody trusts (given the MAC key: it would otherwise
    # refuse the entries as not written by its own key).
    forger = AuditTrail(TreeHeadSigner(Ed25519PrivateKey.generate()), mac=services.audit.mac)
    forged = await forger.seal()
    assert forged is not None
    assert forged.tree_size > size
    report = await services.audit_trail.verify()
    assert not report.ok
    assert "signed by unknown key" in report.problem


async def test_the_sealer_refuses_to_sign_over_a_tampered_entry(
    services: Services, staff: Staff, database_url: str
) -> None:
    size = await _sealed_log(services, staff)
    await _activity(services, staff)
    await _as_owner(database_url, f"UPDATE audit SET outcome = 'error' WHERE seq = {size + 2}")
    signed = await services.audit_trail.seal()  # up to the entry before it...
    assert signed is not None
    assert signed.tree_size == size + 1
    with pytest.raises(SealRefused, match=f"event {size + 2}") as refused:  # ...and no further
        await services.audit_trail.seal()
    assert refused.value.seq == size + 2
    assert await count_rows(database_url, "audit_checkpoint") == 3


# --- proofs -----------------------------------------------------------------------------


async def test_every_event_has_an_inclusion_proof_and_heads_are_consistent(
    services: Services, staff: Staff, database_url: str
) -> None:
    trail = services.audit_trail
    await _activity(services, staff)
    first = await trail.seal()
    await _activity(services, staff, contacts=5)
    latest = await trail.seal()
    assert first is not None
    assert latest is not None
    for seq in range(1, latest.tree_size + 1):
        proof = await trail.inclusion(seq)
        assert proof["verified"], seq
        assert proof["leaf_index"] == seq - 1
    old = await trail.inclusion(1, first.tree_size)
    assert old["verified"]
    assert old["head"]["tree_size"] == first.tree_size
    with pytest.raises(LookupError, match="not sealed yet"):
        await trail.inclusion(latest.tree_size + 1)

    consistency = await trail.consistency(first.tree_size)
    assert consistency["verified"]
    assert consistency["new"]["tree_size"] == latest.tree_size


async def test_an_exported_slice_verifies_offline_and_detects_edits(
    services: Services, staff: Staff, database_url: str
) -> None:
    trail = services.audit_trail
    await _activity(services, staff, contacts=4)
    bundle = json.loads(json.dumps(await trail.slice_bundle([2, 3, 5])))
    assert [e["seq"] for e in bundle["events"]] == [2, 3, 5]
    assert bundle["unsealed"] == []  # the export seals first

    public_only = TreeHeadVerifier([trail.signer.public_key])
    report = verify_slice(bundle, public_only)
    assert report.ok, report.problems
    assert report.events == 3

    edited = json.loads(json.dumps(bundle))
    edited["events"][1]["outcome"] = "denied"
    assert verify_slice(edited, public_only).problems == ["event 3: contents do not match its hash"]
    stranger = TreeHeadVerifier([Ed25519PrivateKey.generate().public_key()])
    assert not verify_slice(bundle, stranger).ok
    forged_head = dict(bundle, head=dict(bundle["head"], tree_size=bundle["head"]["tree_size"] + 1))
    assert not verify_slice(forged_head, public_only).ok


def test_signed_head_round_trips_and_any_field_change_breaks_it() -> None:
    signer = TreeHeadSigner(Ed25519PrivateKey.generate())
    verifier = TreeHeadVerifier([signer.public_key])
    import datetime as dt

    head = signer.sign(7, b"\x11" * 32, dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC))
    again = SignedTreeHead.from_json(json.loads(json.dumps(head.to_json())))
    assert again == head
    assert verifier.problem(again) == ""
    for change in (
        {"tree_size": 8},
        {"root_hash": "22" * 32},
        {"signed_at": "2026-11-29T12:00:01.000000Z"},
    ):
        altered = SignedTreeHead.from_json({**head.to_json(), **change})
        assert verifier.problem(altered) == "signature does not verify"


# --- several processes at once ----------------------------------------------------------


async def test_four_processes_appending_and_sealing_at_once_make_one_log(
    services: Services, database_url: str, key_file: Path, signing_key_file: Path
) -> None:
    """Four writer processes, each running its own sealer, plus the CLI sealing at the same
    time: no duplicate or missing sequence numbers, no forked tree, and the log verifies."""
    events = 60
    writers = [
        asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.audit_writer",
            database_url,
            str(key_file),
            str(signing_key_file),
            str(events),
            str(worker),
            cwd=REPO,
            stderr=subprocess.PIPE,
        )
        for worker in range(4)
    ]
    processes = [await spawn for spawn in writers]
    # Read their output while they run (a full pipe would stall them), and seal meanwhile.
    finished = asyncio.ensure_future(asyncio.gather(*(p.communicate() for p in processes)))
    cli_seals = 0
    while not finished.done():
        await services.audit_trail.seal_all()  # the CLI's `consentry audit seal`, in-process
        cli_seals += 1
        await asyncio.sleep(0.05)
    for process, (_, stderr) in zip(processes, finished.result(), strict=True):
        assert process.returncode == 0, stderr.decode()[-2000:]
        assert b"audit sealing failed" not in stderr, stderr.decode()[-2000:]

    seqs = [int(r["seq"]) for r in await raw_sql(database_url, "SELECT seq FROM audit")]
    assert sorted(seqs) == list(range(1, 4 * events + 1))
    sizes = [
        int(r["tree_size"])
        for r in await raw_sql(database_url, "SELECT tree_size FROM audit_checkpoint")
    ]
    assert len(sizes) == len(set(sizes)) > 1
    assert max(sizes) == 4 * events
    report = await services.audit_trail.verify()
    assert report.ok, report
    assert report.heads_checked == len(sizes)
    assert cli_seals > 0


# --- nothing personal in any audit table ---------------------------------------------------

PERSON = {
    "first_name": "Hildegard",
    "last_name": "Vanstone-Pyke",
    "email": "hildegard.vanstone@example.org",
    "phone": "+44 20 7946 0321",
    "city": "Llanfairfechan",
    "notes": "Prefers calls after lunch",
}


async def _audit_tables(database_url: str) -> list[str]:
    if ENGINE == "postgres":
        sql = "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    return sorted(
        r["name"] for r in await raw_sql(database_url, sql) if r["name"].startswith("audit")
    )


async def test_no_personal_value_reaches_any_audit_table_or_export(
    services: Services,
    staff: Staff,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full scenario - writes, reads, searches, a denial, a compliance officer locating
    the person and exporting the slice, alert rules firing - then every audit table and
    the exported slice are searched for the person's values."""
    from audit.alerts.model import Changer
    from audit.alerts.rules import RuleKind, RuleSettings

    gateway = services.gateway
    seller = staff.actor(await staff.create("sales"))
    values = {k: v for k, v in contact_values(**PERSON).items() if k != "birth_date"}
    record = await gateway.create(seller, "contact", values)
    await gateway.read(seller, "contact", record.id)
    await gateway.update(seller, "contact", record.id, {"city": "Betws-y-Coed"})
    await gateway.search(seller, "contact", "email", PERSON["email"])
    with pytest.raises(Exception, match="birth_date"):
        await gateway.update(seller, "contact", record.id, {"birth_date": "1970-01-01"})

    officer_identity = await staff.create("compliance")
    officer = staff.actor(officer_identity)
    found = await gateway.locate(officer, "contact", "email", PERSON["email"])
    assert found == [(record.id, record.subject_id)]
    changer = Changer(officer.id, "compliance", "test")
    await services.alerts.create_rule(
        RuleSettings(RuleKind.BULK_READ, "Any read at all", 1, 60), by=changer
    )
    raised = await services.alerts.evaluate()
    assert raised  # the rule fired: alert rows exist to be searched too
    bundle = json.dumps(await services.audit_trail.slice_bundle(range(1, 100))).casefold()
    # The whole-log export, the witness file and the sealer's log lines (with a forged
    # entry, so that it has something to say) hold no value either.
    from audit.witness import WitnessFile
    from server.background import seal_round
    from tests.audit.test_audit_integrity import _forge_entry

    exported = json.dumps([doc async for doc in services.audit_trail.export_log()]).casefold()
    witness = WitnessFile(tmp_path / "witness.jsonl", min_interval=0)
    witnessed_trail = AuditTrail(
        services.audit_trail.signer, mac=services.audit.mac, witness=witness
    )
    await witnessed_trail.seal_all()  # publishes the newest head
    await _forge_entry()
    await seal_round(witnessed_trail, alerts=services.alerts, stall_seconds=0)
    assert witness.path.exists()
    outside = (witness.path.read_text() + caplog.text).casefold()
    assert "audit integrity problem" in outside

    tables = await _audit_tables(database_url)
    assert {"audit", "audit_checkpoint", "audit_alert", "audit_alert_rule"} <= set(tables)
    dump = json.dumps(
        {t: await raw_sql(database_url, f"SELECT * FROM {t}") for t in tables}, default=str
    ).casefold()
    assert record.subject_id in dump  # the pseudonymous id is there, as it should be
    secrets = [*PERSON.values(), "Betws-y-Coed", "+442079460321", "2079460321"]
    for secret in secrets:
        assert secret.casefold() not in dump, f"{secret!r} in an audit table"
        assert secret.casefold() not in bundle, f"{secret!r} in the exported slice"
        assert secret.casefold() not in exported, f"{secret!r} in the exported log"
        assert secret.casefold() not in outside, f"{secret!r} in a witness or log line"


def test_a_signed_document_cannot_pass_for_a_tree_head() -> None:
    signer = TreeHeadSigner(Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="label of its own"):
        signer.sign_document(b"consentry-audit-tree-head/1\n", b"1\nroot")
    with pytest.raises(ValueError, match="label of its own"):
        signer.sign_document(b"no-newline", b"x")
    assert signer.sign_document(b"consentry-export-manifest/1\n", b"{}")
