"""Erasure that reaches backups: KEK rotation and pruning, the erasure register, backup and
restore (issue 22).

What an auditor would try: take a backup, erase a person, restore the backup with the
documented command and look for the person by every route (read, list, search, export);
restore an old backup with the engine's own tools after the KEK retention has passed and
try to decrypt anything in it; kill a rotation half-way and check that every key still
opens and that running it again finishes.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import shutil
import stat
import subprocess
import uuid
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from server import db
from server import settings as settings_module
from server.background import prune_retired_keks, rotate_kek_if_due
from server.cli import cli
from server.gateway import Actor
from server.services import Services, build_services
from server.settings import Settings, set_settings
from server.vault import FileKeyProvider, MasterKeyMissing, Vault
from server.vault.envelope import CiphertextError, unwrap_key, wrap_ad
from server.vault.keys import read_key_document
from server.vault.register import RegisterError
from tests.admin_ui.test_admin_ui import sales_contact
from tests.conftest import APP_ROLE, PG_URL, _pg_admin, as_app_role
from tests.dbutil import raw_sql
from tests.server.cli.test_cli import (
    Install,
    consentry,
    forget_process_state,
    install,
    one_line_error,
)

__all__ = ["install"]

T = TypeVar("T")
ADMIN = Actor.system("test-admin")
ERASED = {"first_name": "Philomena", "last_name": "Brackenridge"}
ERASED_EMAIL = "philomena.b@example.org"
LIVING = {"first_name": "Ottoline", "last_name": "Featherstone"}
LIVING_EMAIL = "ottoline.f@example.org"
DAY = dt.timedelta(days=1)


class Crash(Exception):
    """A rotation dying half-way (raised from ``after_batch``)."""


# --- in-process helpers for CLI installs ---------------------------------------------------


def in_process(work: Callable[[Services], Awaitable[T]], url: str | None = None) -> T:
    """Run ``work`` against the installation's database, as a separate process would."""
    forget_process_state()
    if url is not None:
        settings_module.set_settings(
            settings_module.Settings.from_env().with_overrides(database_url=url)
        )

    async def main() -> T:
        engine = db.set_engine(
            db.engine_for_url(settings_module.get_settings().resolved_database_url)
        )
        await db.start(engine)
        try:
            return await work(build_services(settings_module.get_settings()))
        finally:
            await db.stop(engine)

    try:
        return asyncio.run(main())
    finally:
        forget_process_state()


async def _seed(services: Services) -> dict[str, str]:
    gw = services.gateway
    erased = await gw.create(ADMIN, "contact", sales_contact(**ERASED, email=ERASED_EMAIL))
    living = await gw.create(ADMIN, "contact", sales_contact(**LIVING, email=LIVING_EMAIL))
    for n in range(5):  # more people, so that batches and counts mean something
        notes = "Met Philomena Brackenridge at the fair" if n == 0 else "Prefers e-mail"
        await gw.create(ADMIN, "contact", sales_contact(first_name=f"Extra{n}", notes=notes))
    return {
        "erased": erased.subject_id,
        "erased_id": erased.id,
        "living": living.subject_id,
        "living_id": living.id,
    }


def seed(install: Install) -> dict[str, str]:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    return in_process(_seed)


async def _visible(services: Services) -> dict[str, Any]:
    """Everything the app shows of the two people, by every route."""
    gw = services.gateway
    page = await gw.list(ADMIN, "contact", purpose="compliance", page=1, page_size=100)
    names = {str(r.values.get("last_name")) for r in page.items}
    return {
        "names": names,
        "erased_found": await gw.locate(
            ADMIN, "contact", "email", ERASED_EMAIL, purpose="compliance"
        ),
        "living_found": await gw.locate(
            ADMIN, "contact", "email", LIVING_EMAIL, purpose="compliance"
        ),
    }


def export_contacts(tmp: Path) -> str:
    out = tmp / f"export-{uuid.uuid4().hex[:6]}.csv"
    result = consentry("export", "contacts", "-o", str(out), "--reason", "backup")
    assert result.exit_code == 0, result.output
    return out.read_text()


def raw_restore(backup: Path, tmp: Path) -> str:
    """The backup restored with the engine's own tools only (no Consentry command)."""
    if not PG_URL:
        copy = tmp / f"raw-{uuid.uuid4().hex[:6]}.sqlite3"
        shutil.copyfile(backup, copy)
        return f"sqlite:///{copy}"
    name = f"consentry_raw_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    subprocess.run(  # noqa: S603 - a fixed binary and our own test database
        ["pg_restore", "--no-owner", f"--dbname={url}", str(backup)],  # noqa: S607
        check=True,
        capture_output=True,
    )
    return url


def drop_raw(url: str) -> None:
    if url.startswith("postgres"):
        name = url.rsplit("/", 1)[1]
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def unwrappable(url: str, provider: FileKeyProvider) -> tuple[int, int]:
    """(wrapped data keys in the database, how many open under any KEK in the key file)."""
    rows = await raw_sql(url, "SELECT subject_id, version, kek_id, wrapped_key FROM subject_key")
    keks = {kid: provider.kek(kid) for kid in provider.kek_ids()}
    opened = 0
    for row in rows:
        for kek in keks.values():
            ad = wrap_ad(str(row["subject_id"]), int(row["version"]), str(row["kek_id"]))
            try:
                unwrap_key(kek, row["wrapped_key"], ad)
            except CiphertextError:
                continue
            opened += 1
            break
    return len(rows), opened


# --- the acceptance path, through the CLI ---------------------------------------------------


def test_a_restored_backup_does_not_bring_an_erased_person_back(
    install: Install, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = seed(install)
    backup = tmp_path / "before-erasure.backup"
    made = consentry("backup", "-o", str(backup))
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert consentry("dsr", "erase", people["erased"], "--yes").exit_code == 0

    register = install.key_file.parent / "erasure-register.jsonl"
    lines = [json.loads(line) for line in register.read_text().splitlines()]
    assert lines == [{"subject_id": people["erased"], "shredded_at": lines[0]["shredded_at"]}]
    assert stat.S_IMODE(register.stat().st_mode) == 0o600

    if PG_URL:  # as in production: the server's role is granted afresh by the restore
        monkeypatch.setenv("CONSENTRY_APP_ROLE", APP_ROLE)
    restored = consentry("restore", str(backup), "--yes")
    assert restored.exit_code == 0, restored.output
    assert "1 erased again" in restored.stdout

    # What the server, connected as its application role, shows.
    seen = in_process(_visible, url=as_app_role(install.database_url) if PG_URL else None)
    assert "Brackenridge" not in seen["names"]
    assert "Featherstone" in seen["names"]
    assert seen["erased_found"] == []
    assert seen["living_found"]

    async def read_both(services: Services) -> tuple[Any, Any]:
        gw = services.gateway
        return (
            await gw.read(ADMIN, "contact", people["erased_id"], purpose="compliance"),
            await gw.read(ADMIN, "contact", people["living_id"], purpose="compliance"),
        )

    erased, living = in_process(read_both)
    assert erased.erased
    assert erased.values["email"] is None
    assert living.values["email"] == LIVING_EMAIL
    exported = export_contacts(tmp_path)
    assert "Brackenridge" not in exported
    assert ERASED_EMAIL not in exported
    assert LIVING_EMAIL in exported
    assert "Met [erased] at the fair" in exported  # mentions are scrubbed again too
    # The erased person's key is gone from the restored database, not merely unused.
    assert not in_process(lambda s: s.gateway.vault.holds_key(people["erased"]))
    # Their own subject export holds nothing of them either.
    bundle = tmp_path / "subject.zip"
    dsr_export = consentry("dsr", "export", people["erased"], "-o", str(bundle))
    assert dsr_export.exit_code == 0, dsr_export.output
    with zipfile.ZipFile(bundle) as archive:
        for name in archive.namelist():
            content = archive.read(name).decode("utf-8", "replace")
            assert "Brackenridge" not in content, name
            assert ERASED_EMAIL not in content, name

    # Restoring again is as safe: the register is re-applied every time.
    again = consentry("restore", str(backup), "--yes")
    assert again.exit_code == 0, again.output
    assert "Brackenridge" not in in_process(_visible)["names"]


def test_a_broken_backup_leaves_the_database_as_it_was(
    install: Install, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A truncated backup file (a copy cut short, a full disk) must fail the restore in one
    line and leave every record where it was: on PostgreSQL the schema reset and the load
    are one transaction, so nothing is dropped before the whole backup has been read."""
    seed(install)
    backup = tmp_path / "whole.backup"
    assert consentry("backup", "-o", str(backup)).exit_code == 0
    broken = tmp_path / "broken.backup"
    data = backup.read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])
    if PG_URL:
        monkeypatch.setenv("CONSENTRY_APP_ROLE", APP_ROLE)

    failed = consentry("restore", str(broken), "--yes")

    assert failed.exit_code != 0
    assert one_line_error(failed)
    seen = in_process(_visible)
    assert {"Brackenridge", "Featherstone"} <= seen["names"]
    assert seen["living_found"]


def test_old_backups_become_unreadable_once_old_keks_are_pruned(
    install: Install, tmp_path: Path
) -> None:
    people = seed(install)
    backup = tmp_path / "old.backup"
    assert consentry("backup", "-o", str(backup)).exit_code == 0
    assert consentry("dsr", "erase", people["erased"], "--yes").exit_code == 0

    rotated = consentry("keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    assert "rotated to KEK k2" in rotated.stdout
    assert "retired: k1" in rotated.stdout
    status = consentry("keys", "status")
    assert status.exit_code == 0, status.output
    assert "k2" in status.stdout
    assert "active" in status.stdout
    assert "retired" in status.stdout

    # Before the retention period ends the old backup still opens (it is a backup).
    raw = raw_restore(backup, tmp_path)
    try:
        total, opened = asyncio.run(unwrappable(raw, FileKeyProvider(install.key_file)))
        assert total == opened == 7
    finally:
        drop_raw(raw)

    not_yet = consentry("keys", "prune")
    assert not_yet.exit_code == 0, not_yet.output
    assert "destroyed KEK version(s): none" in not_yet.stdout
    assert "kept k1 until" in not_yet.stdout

    # The daily housekeeping, with its clock set past the retention period.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=35) + DAY
    assert in_process(lambda s: prune_retired_keks(s, now=later)) == ["k1"]
    doc = read_key_document(install.key_file)
    assert list(doc["keks"]) == ["k2"]
    assert set(doc["destroyed"]) == {"k1"}
    assert re.search(r"^k1 +destroyed \d{4}-\d\d-\d\d$", consentry("keys", "status").stdout, re.M)

    # The old backup, restored with the engine's own tools: nothing in it opens any more,
    # for the erased person and the living alike.
    raw = raw_restore(backup, tmp_path)
    try:
        total, opened = asyncio.run(unwrappable(raw, FileKeyProvider(install.key_file)))
        assert total == 7
        assert opened == 0

        async def read_living(services: Services) -> None:
            await services.gateway.read(ADMIN, "contact", people["living_id"], purpose="compliance")

        with pytest.raises(MasterKeyMissing, match="destroyed"):
            in_process(read_living, url=raw)
    finally:
        drop_raw(raw)

    # The live database, rotated, reads every living person.
    async def read_living_live(services: Services) -> Any:
        return await services.gateway.read(
            ADMIN, "contact", people["living_id"], purpose="compliance"
        )

    assert in_process(read_living_live).values["email"] == LIVING_EMAIL
    assert "Featherstone" in in_process(_visible)["names"]
    exported = export_contacts(tmp_path)
    assert LIVING_EMAIL in exported
    assert ERASED_EMAIL not in exported


def test_the_rotate_command_finishes_a_rotation_that_died_half_way(install: Install) -> None:
    seed(install)

    async def die_half_way(services: Services) -> dict[str, int]:
        rotation = services.key_rotation
        assert rotation is not None
        rotation.batch_size = 2

        async def crash(done: int) -> None:
            raise Crash(done)

        rotation.after_batch = crash
        with pytest.raises(Crash):
            await rotation.rotate()
        return await services.gateway.vault.kek_usage()

    assert in_process(die_half_way) == {"k1": 5, "k2": 2}
    status = consentry("keys", "status")
    assert "rotation unfinished" in status.stdout
    finished = consentry("keys", "rotate")
    assert finished.exit_code == 0, finished.output
    assert finished.stdout == (
        "resumed rotation to KEK k2: 5 data key(s) re-wrapped; retired: k1\n"
    )
    assert in_process(lambda s: s.gateway.vault.kek_usage()) == {"k2": 7}
    assert "Featherstone" in in_process(_visible)["names"]


def test_the_master_key_never_leaves_the_key_file(install: Install, tmp_path: Path) -> None:
    seed(install)
    outputs = [consentry("keys", "rotate"), consentry("keys", "status"), consentry("keys", "prune")]
    backup = tmp_path / "b.backup"
    outputs.append(consentry("backup", "-o", str(backup)))
    doc = json.loads(install.key_file.read_text())
    secrets = [*doc["keks"].values(), doc["index_key"]]
    raw_secrets = [base64.b64decode(s) for s in secrets]
    assert len(doc["keks"]) == 2
    for result in outputs:
        assert result.exit_code == 0, result.output
        for secret in secrets:
            assert secret not in result.output
    blob = backup.read_bytes()
    for secret, raw in zip(secrets, raw_secrets, strict=True):
        assert secret.encode() not in blob
        assert raw not in blob
    register = install.key_file.parent / "erasure-register.jsonl"
    for path in install.home.rglob("*"):
        if path.is_file() and path != install.key_file:
            content = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in content, path
    assert not register.exists() or all(
        set(json.loads(line)) == {"subject_id", "shredded_at"}
        for line in register.read_text().splitlines()
    )


def test_key_commands_fail_in_one_line(install: Install, tmp_path: Path, monkeypatch: Any) -> None:
    seed(install)
    existing = tmp_path / "exists.backup"
    existing.write_text("x")
    reason = one_line_error(consentry("backup", "-o", str(existing)))
    assert "already exists" in reason
    assert existing.read_text() == "x"

    not_a_backup = tmp_path / "nonsense.backup"
    not_a_backup.write_text("not a backup at all")
    reason = one_line_error(consentry("restore", str(not_a_backup), "--yes"))
    assert "restore failed" in reason

    good = tmp_path / "good.backup"
    assert consentry("backup", "-o", str(good)).exit_code == 0
    forget_process_state()
    declined = CliRunner().invoke(cli, ["restore", str(good)], input="n\n")
    assert declined.exit_code == 1
    assert "restore cancelled; nothing was changed" in declined.stderr

    bad_register = install.key_file.parent / "erasure-register.jsonl"
    bad_register.write_text("garbage\n{}\n")
    reason = one_line_error(consentry("restore", str(not_a_backup), "--yes"))
    assert "erasure register" in reason
    assert "line 1" in reason
    bad_register.unlink()

    monkeypatch.setenv("CONSENTRY_MASTER_KEY", base64.b64encode(b"m" * 32).decode())
    for command in (("keys", "rotate"), ("keys", "prune"), ("keys", "status")):
        result = consentry(*command)
        assert result.exit_code == 1
        assert "CONSENTRY_MASTER_KEY_FILE" in one_line_error(result)


# --- rotation in process: resumable, online -------------------------------------------------


@pytest.fixture
def own_keys(settings: Settings, key_file: Path, tmp_path: Path) -> Iterator[Settings]:
    """This test's own copy of the key file (the session's is shared by every test)."""
    path = tmp_path / "keys" / "master.key"
    path.parent.mkdir()
    shutil.copyfile(key_file, path)
    path.chmod(0o600)
    return set_settings(
        settings.with_overrides(
            master_key_file=path, erasure_register_file=tmp_path / "keys" / "register.jsonl"
        )
    )


async def _people(services: Services, n: int) -> list[str]:
    subjects = []
    for i in range(n):
        record = await services.gateway.create(
            ADMIN, "contact", sales_contact(first_name=f"Person{i}", email=f"p{i}@example.org")
        )
        subjects.append(record.subject_id)
    return subjects


async def test_rotation_interrupted_half_way_keeps_every_key_readable_and_finishes(
    own_keys: Settings,
) -> None:
    services = build_services(own_keys)
    rotation = services.key_rotation
    assert rotation is not None
    subjects = await _people(services, 9)
    # Another worker, started before the rotation, never restarted.
    worker = Vault(FileKeyProvider(own_keys.resolved_master_key_file))
    seen: list[int] = []

    async def crash_half_way(done: int) -> None:
        # Every key opens at every point, for a worker that never restarted too.
        assert set(await worker.keys_for(subjects)) == set(subjects)
        fresh = Vault(FileKeyProvider(own_keys.resolved_master_key_file))
        assert set(await fresh.keys_for(subjects)) == set(subjects)
        seen.append(done)
        if done >= 4:
            raise Crash(done)

    rotation.batch_size = 2
    rotation.after_batch = crash_half_way
    with pytest.raises(Crash):
        await rotation.rotate()
    usage = await services.gateway.vault.kek_usage()
    assert usage == {"k1": 5, "k2": 4}  # half-way: both versions in use
    versions = {v.kek_id: v for v in await rotation.versions()}
    assert versions["k2"].active
    assert versions["k1"].retired_at is None
    # A worker started before the rotation wraps new keys under the active version now.
    assert worker._keys.active_kek()[0] == "k2"

    rotation.after_batch = None
    progress: list[tuple[int, int]] = []
    report = await rotation.rotate(progress=lambda done, total: progress.append((done, total)))
    assert report.resumed
    assert report.kek_id == "k2"  # the same rotation, finished; no third version
    assert report.rewrapped == 5
    assert report.retired == ("k1",)
    assert progress[0] == (0, 5)
    assert progress[-1] == (5, 5)
    assert await services.gateway.vault.kek_usage() == {"k2": 9}
    assert set(await worker.keys_for(subjects)) == set(subjects)
    for subject in subjects:
        found = await services.gateway.locate(
            ADMIN,
            "contact",
            "email",
            f"p{subjects.index(subject)}@example.org",
            purpose="compliance",
        )
        assert found
    actions = [
        r["action"]
        for r in await raw_sql(own_keys.database_url, "SELECT action FROM audit ORDER BY seq")
    ]
    assert actions.count("keys.rotate_start") == 2
    assert actions.count("keys.rotate") == 1

    # A further rotation starts a new version.
    again = await rotation.rotate()
    assert (again.kek_id, again.resumed, again.retired) == ("k3", False, ("k2",))


async def test_prune_waits_for_the_retention_period_and_rewraps_stragglers(
    own_keys: Settings,
) -> None:
    services = build_services(own_keys)
    rotation = services.key_rotation
    assert rotation is not None
    subjects = await _people(services, 3)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rotation.clock = lambda: start
    await rotation.rotate()
    # A worker that had not noticed the rotation wrapped a new person's key under k1.
    stale = Vault(FileKeyProvider(own_keys.resolved_master_key_file))
    stale._keys._active = "k1"  # type: ignore[attr-defined]  # frozen as it was before
    stale._keys.refresh = lambda: None  # type: ignore[method-assign]  # never re-reads
    [late] = await stale.new_subjects("contact", 1)
    assert await services.gateway.vault.kek_usage() == {"k1": 1, "k2": 3}

    retention = dt.timedelta(days=35)
    early = await rotation.prune(retention, now=start + retention - DAY)
    assert early.destroyed == ()
    assert early.kept == (("k1", "2026-02-05"),)
    report = await rotation.prune(retention, now=start + retention)
    assert report.destroyed == ("k1",)
    assert report.rewrapped == 1  # the straggler was saved, not destroyed
    keys = await services.gateway.vault.keys_for([*subjects, late.subject_id])
    assert set(keys) == {*subjects, late.subject_id}
    assert keys[late.subject_id].key == late.key
    with pytest.raises(MasterKeyMissing, match="destroyed"):
        FileKeyProvider(own_keys.resolved_master_key_file).kek("k1")


async def test_erasure_records_the_subject_in_the_register_before_shredding(
    own_keys: Settings,
) -> None:
    services = build_services(own_keys)
    [subject, other] = await _people(services, 2)
    await services.erasure.erase(subject, by="user:1")
    register = own_keys.resolved_erasure_register_file
    text = register.read_text()
    assert subject in text
    assert other not in text
    assert "Person" not in text
    assert "example.org" not in text

    # A register that cannot be written stops the erasure before the key is destroyed.
    vault_register = services.gateway.vault.register
    assert vault_register is not None
    blocker = register.with_name("not-a-directory")
    blocker.write_text("")
    vault_register.path = blocker / "register.jsonl"
    with pytest.raises(RegisterError, match="erasure register"):
        await services.erasure.erase(other, by="user:1")
    assert await services.gateway.vault.holds_key(other)
    vault_register.path = register
    await services.erasure.erase(other, by="user:1")
    assert not await services.gateway.vault.holds_key(other)


async def test_shredded_keys_do_not_linger_in_the_key_table(
    own_keys: Settings,
) -> None:
    services = build_services(own_keys)
    [subject] = await _people(services, 1)
    [row] = await raw_sql(
        own_keys.database_url, "SELECT wrapped_key FROM subject_key WHERE subject_id = ?", subject
    )
    await services.erasure.erase(subject, by="user:1")
    if PG_URL:
        from tests.conftest import owner_url

        [options] = await raw_sql(
            owner_url(own_keys.database_url),
            "SELECT reloptions FROM pg_class WHERE relname = 'subject_key'",
        )
        assert "autovacuum_vacuum_threshold=0" in options["reloptions"]
        assert "autovacuum_vacuum_scale_factor=0" in options["reloptions"]
    else:
        path = Path(own_keys.database_url.removeprefix("sqlite:///"))
        wrapped = row["wrapped_key"].encode()
        for part in (path, path.with_name(path.name + "-wal")):
            if part.exists():
                assert wrapped not in part.read_bytes(), part


async def test_the_daily_housekeeping_rotates_when_configured(own_keys: Settings) -> None:
    off = build_services(own_keys)
    assert not await rotate_kek_if_due(off, now=dt.datetime.now(dt.UTC) + 400 * DAY)
    services = build_services(set_settings(own_keys.with_overrides(kek_rotation_days=30)))
    subjects = await _people(services, 3)
    created = dt.datetime.fromisoformat(
        read_key_document(own_keys.resolved_master_key_file)["kek_meta"]["k1"]["created_at"]
    )
    assert not await rotate_kek_if_due(services, now=created + 29 * DAY)
    assert await rotate_kek_if_due(services, now=created + 30 * DAY)
    assert await services.gateway.vault.kek_usage() == {"k2": 3}
    assert set(await services.gateway.vault.keys_for(subjects)) == set(subjects)
    assert Settings.from_env({"CONSENTRY_KEK_ROTATION_DAYS": "30"}).kek_rotation_days == 30
    assert Settings.from_env({"CONSENTRY_BACKUP_RETENTION_DAYS": "7"}).backup_retention_days == 7
