"""Issue 22: an audit trail that does not trust the database it lives in.

Everything the attacker does here needs only what the server itself holds: on PostgreSQL
the tests connect as the application role (INSERT and SELECT on the audit tables), on
SQLite as any client of the file. The owner's powers (dropping triggers) appear only where
a test says so, for truncation and rewrites. Each case is checked three ways: the sealer
(does it sign? does it say so?), ``consentry audit verify``, and the standalone verifier
``audit/standalone_verify.py``, which must agree with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from httpx import AsyncClient

from audit.alert_tables import AuditAlert
from audit.entry_mac import BASELINE_ACTION
from audit.log import GENESIS, entry_hash
from audit.signing import TreeHeadVerifier
from audit.tables import AuditRecord
from audit.trail import AuditTrail, SealRefused, VerificationReport
from audit.witness import WITNESS_FORMAT, WitnessFile, read_witness
from server.background import REFUSED_BACKOFF_SECONDS, seal_round
from server.services import Services, load_audit_signer
from server.settings import Settings
from tests.admin_ui.test_compliance_console import officer_client
from tests.audit.test_audit_trail import PERSON, _activity, _as_owner, _rewrite_from, _sealed_log
from tests.conftest import Staff
from tests.dbutil import count_rows, raw_sql

REPO = Path(__file__).resolve().parents[2]
STANDALONE = REPO / "audit" / "standalone_verify.py"
MAC_FAILS = "its MAC does not verify: not written by this server"


def _standalone() -> ModuleType:
    """The one-file verifier, loaded by path (it imports nothing of Consentry's)."""
    name = "consentry_standalone_verify_audit"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, STANDALONE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``consentry ...`` in a new process, against this test's database and keys."""
    env = {
        **os.environ,
        "CONSENTRY_HOME": str(settings.home),
        "CONSENTRY_DATABASE_URL": settings.database_url,
        "CONSENTRY_MASTER_KEY_FILE": str(settings.master_key_file),
        "CONSENTRY_AUDIT_SIGNING_KEY_FILE": str(settings.audit_signing_key_file),
        "CONSENTRY_SESSION_SECRET": "test-session-secret",
    }
    return subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", "from server.cli import main; main()", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _forge_entry(
    *, ts: dt.datetime | None = None, mac: str | None = None, action: str = "export"
) -> int:
    """What anyone holding the application's database credentials can do: append an entry
    that chains correctly ("admin exported 999,999 contacts"). The MAC is a guess."""
    last = await AuditRecord.select().order_by(AuditRecord.seq, ascending=False).first()
    prev_seq, prev_hash = (int(last["seq"]), str(last["hash"])) if last else (0, GENESIS)
    row: dict[str, Any] = {
        "seq": prev_seq + 1,
        "ts": ts or dt.datetime.now(dt.UTC),
        "actor_id": "user:1",
        "actor_role": "admin",
        "action": action,
        "resource_type": "contact",
        "resource_id": None,
        "subject_ids": "[]",
        "fields": "[]",
        "purpose": "analytics",
        "outcome": "allowed",
        "reason": "",
        "request_id": "forged",
        "detail": json.dumps({"rows": 999999}, sort_keys=True),
        "prev_hash": prev_hash,
    }
    row["hash"] = entry_hash(row)
    row["mac"] = hashlib.sha256(b"a guess").hexdigest() if mac is None else mac
    await AuditRecord.insert(AuditRecord(**row)).run()
    return prev_seq + 1


async def _alerts(kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await AuditAlert.select().where(AuditAlert.kind == kind)
    return rows


async def _export(trail: AuditTrail, path: Path) -> Path:
    with path.open("w") as handle:
        async for doc in trail.export_log():
            handle.write(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
    return path


async def _agree(
    services: Services,
    tmp_path: Path,
    *,
    witness: Path | None = None,
) -> tuple[VerificationReport, Any]:
    """Verify with the product and with the standalone verifier; they must agree."""
    trail = services.audit_trail
    witnessed = []
    if witness is not None:
        newest = read_witness(witness, trail.verifier).newest
        witnessed = [newest] if newest else []
    fresh = AuditTrail(None, trusted=trail.verifier, mac=trail.mac)  # no saved state
    report = await fresh.verify(witnessed=witnessed)
    standalone = _standalone()
    entries, heads = standalone.read_export(await _export(trail, tmp_path / "trail.jsonl"))
    own_witnessed = []
    if witness is not None:
        keys = {standalone.key_id(trail.signer.public_key): trail.signer.public_key}
        newest_head = standalone.newest_witnessed(witness, keys)
        own_witnessed = [newest_head] if newest_head else []
    verdict = standalone.verify(
        entries,
        heads,
        [trail.signer.public_key],
        mac_key=trail.mac.key if trail.mac else None,
        witnessed=own_witnessed,
    )
    assert (verdict.ok, verdict.first_bad_seq, verdict.problem) == (
        report.ok,
        report.first_bad_seq,
        report.problem,
    )
    return report, verdict


# --- 1. a forged entry ----------------------------------------------------------------------


@pytest.mark.parametrize("mac", [None, ""], ids=["guessed-mac", "no-mac"])
async def test_a_forged_entry_is_not_signed_raises_an_alert_and_fails_verify(
    services: Services, staff: Staff, settings: Settings, tmp_path: Path, mac: str | None
) -> None:
    trail = services.audit_trail
    await _activity(services, staff)
    await trail.seal()
    forged = await _forge_entry(mac=mac)
    await _activity(services, staff)  # real traffic goes on, chained after the forgery

    delay = await seal_round(trail, alerts=services.alerts)
    assert delay == REFUSED_BACKOFF_SECONDS
    head = await trail.latest_head()
    assert head is not None
    assert head.tree_size == forged - 1  # everything before it is signed, nothing after
    signed_over = await count_rows(
        settings.database_url, "audit_checkpoint", "tree_size >= ?", forged
    )
    assert signed_over == 0

    alerts = await _alerts("forged_entry")
    assert [(a["first_seq"], a["actor_id"]) for a in alerts] == [(forged, "system:sealer")]
    await seal_round(trail, alerts=services.alerts)  # still refusing; alerted once
    assert len(await _alerts("forged_entry")) == 1

    report, _ = await _agree(services, tmp_path)
    expected = f"entry {forged}: {MAC_FAILS}" if mac is None else f"entry {forged} carries no MAC"
    assert report.first_bad_seq == forged
    assert report.problem.startswith(expected)

    verified = _cli(settings, "audit", "verify")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert f"first bad entry: {forged}: {expected}" in verified.stderr


# --- 2. a bogus checkpoint ------------------------------------------------------------------


async def test_a_bogus_checkpoint_does_not_stop_signing_and_is_reported(
    services: Services,
    staff: Staff,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    trail = services.audit_trail
    await _activity(services, staff)
    genuine = await trail.seal()
    assert genuine is not None
    for size in (99999999, 99999998):
        await raw_sql(  # as the application role
            database_url,
            "INSERT INTO audit_checkpoint (tree_size, root_hash, frontier, signed_at, key_id, "
            "signature) SELECT ?, ?, '[]', signed_at, key_id, ? FROM audit_checkpoint "
            "WHERE tree_size = ?",
            size,
            "ab" * 32,
            "AAAA",
            genuine.tree_size,
        )
    await _activity(services, staff)
    newest = await trail.newest_event()
    await seal_round(trail, alerts=services.alerts)  # (the alert itself is audited after)

    head = await trail.latest_head()
    assert newest is not None
    assert head is not None
    assert head.tree_size == newest[0] > genuine.tree_size  # still signing, past the bogus row
    alerts = await _alerts("bogus_head")  # one alert for the lot
    assert [(a["first_seq"], a["matched"]) for a in alerts] == [(99999999, 2)]
    logged = caplog.text
    assert "audit integrity problem" in logged
    assert "2 checkpoints ignored, the largest over 99999999 entries: signature does not" in logged

    report = await trail.verify()
    assert not report.ok
    assert report.problem == "head over 99999998 events: signature does not verify"
    exported = await trail.export_checkpoints()  # what a witness is given: genuine heads only
    assert [h["tree_size"] for h in exported["heads"]] == [genuine.tree_size, head.tree_size]
    await _agree(services, tmp_path)


async def test_a_genuine_head_the_log_no_longer_matches_stops_a_fresh_sealer(
    services: Services, staff: Staff, settings: Settings, database_url: str
) -> None:
    """A worker starting up checks the newest genuine head against the entries it covers
    before extending it: a history rewritten under it is refused and reported."""
    size = await _sealed_log(services, staff)
    await _rewrite_from(database_url, 4, outcome="denied", reason="action_not_allowed")
    await _activity(services, staff)
    fresh = AuditTrail(load_audit_signer(settings), mac=services.audit.mac)
    with pytest.raises(SealRefused, match=f"does not match the signed head over {size}"):
        await fresh.seal()
    [finding] = fresh.take_findings()
    assert (finding.kind, finding.seq) == ("head_contradicts_log", size)


# --- stalled sealing ----------------------------------------------------------------------


async def test_an_entry_left_unsigned_degrades_ready_alerts_and_shows_in_the_console(
    services: Services, staff: Staff, client: AsyncClient
) -> None:
    await _activity(services, staff)
    await services.audit_trail.seal()
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["audit_sealing"] == "ok"

    forged = await _forge_entry(ts=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    await seal_round(services.audit_trail, alerts=services.alerts)

    ready = await client.get("/ready")
    assert ready.status_code == 503
    sealing = ready.json()["checks"]["audit_sealing"]
    # (the forged entry, and the audit events of the alert raised about it)
    expected = rf"stalled: \d+ entries unsigned, the oldest \(entry {forged}\) for 6\d s"
    assert re.fullmatch(expected, sealing)
    assert [a["first_seq"] for a in await _alerts("sealing_stalled")] == [forged]

    _, officer = await officer_client(staff)
    page = await officer.get("/compliance")
    assert page.status_code == 200
    assert "Sealing is stalled" in page.text
    alerts_page = await officer.get("/compliance/alerts")
    assert "Audit sealing stalled" in alerts_page.text
    assert "Audit entry not written by this server" in alerts_page.text


# --- 3. witnesses ---------------------------------------------------------------------------


async def test_truncating_rows_and_heads_is_caught_by_a_fresh_verifier_with_the_witness(
    services: Services, staff: Staff, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    witness_file = tmp_path / "other-volume" / "witness.jsonl"
    trail = AuditTrail(
        load_audit_signer(settings),
        mac=services.audit.mac,
        witness=WitnessFile(witness_file, min_interval=0),
    )
    await _activity(services, staff)
    first = await trail.seal()
    await _activity(services, staff)
    second = await trail.seal()
    assert first is not None
    assert second is not None
    lines = [json.loads(line) for line in witness_file.read_text().splitlines()]
    assert [line["tree_size"] for line in lines] == [first.tree_size, second.tree_size]
    for line in lines:  # sizes, hashes, a time and a key id: nothing else
        assert set(line) == {"format", "tree_size", "root_hash", "signed_at", "key_id", "signature"}
        assert line["format"] == WITNESS_FORMAT

    await _as_owner(
        database_url,
        f"DELETE FROM audit WHERE seq > {first.tree_size}",
        f"DELETE FROM audit_checkpoint WHERE tree_size > {first.tree_size}",
    )
    assert (await AuditTrail(None, trusted=trail.verifier).verify()).ok  # no witness: fooled
    report, _ = await _agree(services, tmp_path, witness=witness_file)
    assert not report.ok
    assert report.first_bad_seq == first.tree_size + 1
    assert report.problem == (
        f"the log ends at entry {first.tree_size} but a witnessed head covers "
        f"{second.tree_size} entries: entries {first.tree_size + 1}-{second.tree_size} "
        "were deleted (truncated)"
    )
    caught = _cli(settings, "audit", "verify", "--witness", str(witness_file))
    assert caught.returncode == 1
    assert f"first bad entry: {first.tree_size + 1}" in caught.stderr
    assert "truncated" in caught.stderr


def test_a_witness_line_with_a_bad_signature_or_a_fork_is_not_trusted(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.signing import TreeHeadSigner

    signer = TreeHeadSigner(Ed25519PrivateKey.generate())
    path = tmp_path / "w.jsonl"
    witness = WitnessFile(path, min_interval=0)
    now = dt.datetime.now(dt.UTC)
    witness.offer(signer.sign(5, b"\x01" * 32, now))
    witness.offer(signer.sign(6, b"\x02" * 32, now))
    witness.offer(signer.sign(6, b"\x03" * 32, now))  # same size, another root: a fork
    with path.open("a") as handle:
        forged = json.loads(path.read_text().splitlines()[0])
        handle.write(json.dumps({**forged, "tree_size": 99}) + "\n")
        handle.write("not json\n")
    seen = read_witness(path, TreeHeadVerifier([signer.public_key]))
    assert seen.newest is not None
    assert seen.newest.tree_size == 6
    assert seen.rejected == [
        "line 3: contradicts line 2 (same size)",
        "line 4: signature does not verify",
        "line 5: not a witnessed head",
    ]


# --- 6. the standalone verifier agrees with `consentry audit verify` ------------------------


async def _modify(database_url: str) -> None:
    await _as_owner(database_url, "UPDATE audit SET actor_role = 'compliance' WHERE seq = 3")


async def _delete(database_url: str) -> None:
    await _as_owner(database_url, "DELETE FROM audit WHERE seq = 3")


async def _insert(database_url: str) -> None:
    await _as_owner(
        database_url,
        "UPDATE audit SET seq = seq + 100000 WHERE seq >= 3",
        "UPDATE audit SET seq = seq - 99999 WHERE seq >= 100003",
    )
    row = await AuditRecord.select().where(AuditRecord.seq == 2).first()
    assert row is not None
    forged = {k: v for k, v in row.items() if k != "id"}
    forged.update(seq=3, resource_id="forged", prev_hash=row["hash"])
    forged["hash"] = entry_hash(forged)
    await AuditRecord.insert(AuditRecord(**forged)).run()


async def _reorder(database_url: str) -> None:
    await _as_owner(
        database_url,
        "UPDATE audit SET seq = 1000 WHERE seq = 2",
        "UPDATE audit SET seq = 2 WHERE seq = 3",
        "UPDATE audit SET seq = 3 WHERE seq = 1000",
    )


async def _truncate(database_url: str) -> None:
    await _as_owner(database_url, "DELETE FROM audit WHERE seq > 4")


async def _forged(database_url: str) -> None:
    await _forge_entry()


async def _rewrite(database_url: str) -> None:
    await _rewrite_from(database_url, 4, outcome="denied", reason="action_not_allowed")


TAMPERING: dict[str, tuple[Callable[[str], Awaitable[None]], int | None, str]] = {
    "intact": (lambda url: _noop(), None, ""),
    "modification": (_modify, 3, "entry 3: contents do not match its hash"),
    "deletion": (_delete, 3, "entry 3 is missing (deleted)"),
    "insertion": (_insert, 3, f"entry 3: {MAC_FAILS}"),
    "reordering": (_reorder, 2, "entry 2 does not link to entry 1"),
    "truncation": (_truncate, 5, "the log ends at entry 4 but signed head covers"),
    "forged-entry": (_forged, 0, MAC_FAILS),
    "rewrite": (_rewrite, 4, f"entry 4: {MAC_FAILS}"),
}


async def _noop() -> None:
    return None


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_the_standalone_verifier_agrees_on_every_tampering_case(
    services: Services,
    staff: Staff,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
    case: str,
) -> None:
    tamper, first_bad, problem = TAMPERING[case]
    size = await _sealed_log(services, staff)
    await tamper(database_url)
    report, verdict = await _agree(services, tmp_path)
    cli = _cli(settings, "audit", "verify")  # and `consentry audit verify` itself
    if first_bad is None:
        assert report.ok, report
        assert verdict.checked == size
        assert cli.returncode == 0, cli.stderr
        return
    assert not report.ok
    assert report.first_bad_seq == (first_bad or size + 1)
    assert problem in report.problem
    assert cli.returncode == 1
    assert f"first bad entry: {report.first_bad_seq}: {report.problem} (" in cli.stderr


async def test_the_standalone_verifier_runs_alone_on_an_export_from_the_cli(
    services: Services, staff: Staff, settings: Settings, tmp_path: Path
) -> None:
    """``consentry audit export-log`` and ``mac-key`` give an auditor all they need; the
    verifier runs in an isolated interpreter where Consentry cannot even be imported."""
    await _sealed_log(services, staff)
    export = tmp_path / "trail.jsonl"
    assert _cli(settings, "audit", "export-log", "-o", str(export)).returncode == 0
    public_key = tmp_path / "audit.pub"
    public_key.write_text(_cli(settings, "audit", "public-key").stdout)
    mac_key = tmp_path / "mac.key"
    printed = _cli(settings, "audit", "mac-key")
    assert "secret" in printed.stderr
    mac_key.write_text(printed.stdout)
    for line in export.read_text().splitlines():  # ids, hashes, counts: never a value
        for secret in PERSON.values():
            assert secret.casefold() not in line.casefold()

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - this interpreter, the file under test
            [sys.executable, "-I", STANDALONE, export, "--public-key", public_key, *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    intact = run("--mac-key", str(mac_key))
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.startswith("intact: ")
    assert "MACs not checked" in run().stdout
    lines = export.read_text().splitlines()
    entry = json.loads(lines[2])
    lines[2] = json.dumps({**entry, "purpose": "marketing"})
    export.write_text("\n".join(lines) + "\n")
    tampered = run("--mac-key", str(mac_key))
    assert tampered.returncode == 1
    assert tampered.stdout.startswith(f"NOT intact: first bad entry: {entry['seq']}: ")


# --- 1. entries written before MACs ---------------------------------------------------------


async def _legacy_entries(count: int) -> None:
    """Entries as the previous version wrote them: chained, hashed, no MAC."""
    for _ in range(count):
        await _forge_entry(mac="", action="read")


async def test_mac_existing_vouches_once_for_the_entries_written_before_macs(
    services: Services, staff: Staff, database_url: str, tmp_path: Path
) -> None:
    trail = services.audit_trail
    await _legacy_entries(3)
    await _activity(services, staff)  # the new version, with MACs
    before = await trail.verify()
    assert before.first_bad_seq == 1
    assert before.problem == "entry 1 carries no MAC: not written by this server"

    event = await trail.legacy_baseline()
    assert event.action == BASELINE_ACTION
    assert event.detail["legacy_upto"] == 3
    baseline_seq = await services.audit.append(event)
    assert (await trail.seal_all()) is not None
    report, _ = await _agree(services, tmp_path)
    assert report.ok, report
    with pytest.raises(ValueError, match=f"vouched for already \\(entry {baseline_seq}\\)"):
        await trail.legacy_baseline()

    late = await _forge_entry(mac="")  # written later without a MAC: not covered
    report = await trail.verify()
    assert report.first_bad_seq == late
    assert report.problem == f"entry {late} carries no MAC: not written by this server"


async def test_mac_existing_refuses_an_entry_without_a_mac_after_one_with_it(
    services: Services, staff: Staff
) -> None:
    await _legacy_entries(2)
    await _activity(services, staff)
    sneaked = await _forge_entry(mac="")
    with pytest.raises(ValueError, match=f"entry {sneaked} carries no MAC but follows entry 3"):
        await services.audit_trail.legacy_baseline()
