"""The ``consentry`` command line, run the way an operator runs it.

Commands are invoked through click's test runner with ``CONSENTRY_*`` environment
variables pointing at a private data directory and a fresh database (a SQLite file, or a
new PostgreSQL database when ``CONSENTRY_TEST_DATABASE_URL`` is set). The CLI calls
``asyncio.run`` itself, so these tests are plain functions. Between invocations the
process-wide caches (settings, engine, the engine each Piccolo table remembers) are
cleared, so every command starts as it would in a new process.

The last test starts the real server (``consentry serve --demo``) as a subprocess and
talks to it over HTTP, as the README's first command does.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
import pyotp
import pytest
from click.testing import CliRunner, Result
from piccolo.table import TABLE_REGISTRY

from server import db, settings
from server.auth.service import TOTP_LABEL
from server.auth.tables import StaffUser
from server.cli import cli
from server.services import build_services
from server.settings import Settings
from tests.conftest import PG_URL, _pg_admin

READY_TIMEOUT_SECONDS = 60
DEMO_ADMIN = "admin@staff.example.com"


def forget_process_state() -> None:
    """What a new process would start with: no settings, no engine, tables unbound."""
    settings._current = None
    db._engine = None
    for table in TABLE_REGISTRY:
        table._meta._db = None  # Piccolo caches the engine it first found on each table


@dataclass(frozen=True)
class Install:
    home: Path
    database_url: str

    @property
    def key_file(self) -> Path:
        return self.home / "master.key"

    @property
    def session_secret(self) -> Path:
        return self.home / "session.secret"


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """An empty installation: a data directory and an empty database, nothing else."""
    for name in list(os.environ):
        if name.startswith("CONSENTRY_") and name != "CONSENTRY_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    home = tmp_path / "consentry-data"
    pg_name = ""
    if PG_URL:
        pg_name = f"consentry_cli_{uuid.uuid4().hex[:12]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{pg_name}"'))
        url = f"{PG_URL.rsplit('/', 1)[0]}/{pg_name}"
    else:
        url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    monkeypatch.setenv("CONSENTRY_HOME", str(home))
    monkeypatch.setenv("CONSENTRY_DATABASE_URL", url)
    forget_process_state()
    yield Install(home, url)
    forget_process_state()
    if pg_name:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


def consentry(*args: str) -> Result:
    forget_process_state()
    return CliRunner().invoke(cli, list(args), prog_name="consentry", catch_exceptions=False)


def one_line_error(result: Result) -> str:
    """A failure explains itself in exactly one line on stderr."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


# --- help ----------------------------------------------------------------------------------


def walk(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from walk(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_command_has_help() -> None:
    commands = list(walk(cli))
    names = {" ".join(path) for path, _ in commands}
    assert {"serve", "migrate", "keys init", "users create", "check", "audit verify"} <= names
    for path, command in commands:
        assert (command.help or "").strip(), path
        for flag in ("--help", "-h"):
            result = CliRunner().invoke(cli, [*path, flag], prog_name="consentry")
            assert result.exit_code == 0, (path, result.output)
            assert result.output.startswith(f"Usage: consentry {' '.join(path)}".rstrip()), path
            summary = " ".join(command.help.split("\n\n")[0].split())
            assert summary in " ".join(result.output.split()), path
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert (param.help or "").strip(), (path, param.name)


# --- keys, check, migrate ------------------------------------------------------------------


def test_keys_init_creates_private_files_once(install: Install) -> None:
    result = consentry("keys", "init")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(install.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(install.session_secret.stat().st_mode) == 0o600
    assert len(install.session_secret.read_text().strip()) >= 32
    doc = json.loads(install.key_file.read_text())
    for secret in (*doc["keks"].values(), doc["index_key"], install.session_secret.read_text()):
        assert secret.strip() not in result.output  # paths are printed, keys never
    assert str(install.key_file) in result.output

    before = install.key_file.read_bytes()
    again = consentry("keys", "init")
    assert again.exit_code == 1
    reason = one_line_error(again)
    assert "already exists" in reason
    assert str(install.key_file) in reason
    assert install.key_file.read_bytes() == before


def test_check_says_what_to_fix_until_keys_and_migrations_exist(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = consentry("check")
    assert missing.exit_code == 1
    assert "consentry keys init" in missing.stderr
    assert str(install.key_file) in missing.stderr
    assert "consentry migrate" in missing.stderr
    assert "CONSENTRY_CONTROLLER_NAME is not set" in missing.stderr
    assert all(line.startswith("problem: ") for line in missing.stderr.splitlines())
    monkeypatch.setenv("CONSENTRY_CONTROLLER_NAME", "Acme Widgets GmbH")
    forget_process_state()

    assert consentry("keys", "init").exit_code == 0
    unmigrated = consentry("check")
    assert unmigrated.exit_code == 1
    assert "master key: ok" in unmigrated.stdout
    assert "session secret: ok" in unmigrated.stdout
    [problem] = unmigrated.stderr.splitlines()
    assert re.fullmatch(r"problem: \d+ migration\(s\) pending: run `consentry migrate`", problem)

    first = consentry("migrate")
    assert first.exit_code == 0, first.output
    applied = re.fullmatch(r"applied (\d+) migration\(s\); database is current\n", first.stdout)
    assert applied, first.stdout
    assert int(applied[1]) > 0
    for _ in range(2):
        again = consentry("migrate")
        assert again.exit_code == 0, again.output
        assert again.stdout == "applied 0 migration(s); database is current\n"

    passed = consentry("check")
    assert passed.exit_code == 0, passed.output
    assert passed.stderr == ""
    assert f"database: {install.database_url}\n" in passed.stdout
    assert "database reachable, migrations current: ok" in passed.stdout
    assert passed.stdout.endswith("all checks passed\n")


def test_serve_refuses_to_start_without_the_controller_name(install: Install) -> None:
    assert consentry("keys", "init").exit_code == 0
    refused = consentry("serve", "--port", "1")
    assert refused.exit_code == 1
    assert one_line_error(refused) == (
        "Error: CONSENTRY_CONTROLLER_NAME is not set: name the organization responsible for the "
        "customers' data (customers see it in the portal and in e-mails); --demo sets a "
        "demo name"
    )


# --- users, audit ----------------------------------------------------------------------------


def sign_in(email: str, password: str) -> tuple[str, str, str] | None:
    """Sign in through the account service, as the server would.

    Returns (status, role, team) when the password is accepted - ``ok``, or
    ``enrolment_required`` for roles that must enrol a second factor first - else None.
    """
    forget_process_state()

    async def attempt() -> tuple[str, str, str] | None:
        await db.start()
        try:
            services = build_services(settings.get_settings())
            result = await services.accounts.login(email, password)
            if result.session is None:
                return None
            identity = result.session.identity
            return str(result.status), identity.role, identity.team
        finally:
            await db.stop()

    return asyncio.run(attempt())


def test_users_create_and_audit_verify(install: Install, monkeypatch: pytest.MonkeyPatch) -> None:
    no_keys = consentry("users", "create", "ops@staff.example.com", "--role", "admin")
    assert "consentry keys init" in one_line_error(no_keys)
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0

    created = consentry(
        "users", "create", "Ops@Staff.Example.com", "--role", "admin", "--team", "hq"
    )
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("created admin user ops@staff.example.com (id ")
    [password] = re.findall(r"^password: (\S+)$", created.stdout, flags=re.MULTILINE)
    assert len(password) >= 12
    signed_in = sign_in("ops@staff.example.com", password)
    assert signed_in == ("enrolment_required", "admin", "hq")  # admins enrol a 2nd factor next
    assert sign_in("ops@staff.example.com", password + "x") is None

    bad_role = consentry("users", "create", "root@staff.example.com", "--role", "root")
    assert bad_role.exit_code == 2
    [reason] = [line for line in bad_role.stderr.splitlines() if line.startswith("Error:")]
    assert "--role" in reason
    assert "root" in reason
    bad_email = consentry("users", "create", "not-an-address", "--role", "sales")
    assert one_line_error(bad_email) == "Error: not a valid e-mail address"
    for duplicate in ("ops@staff.example.com", "OPS@staff.example.com"):
        again = consentry("users", "create", duplicate, "--role", "sales")
        assert one_line_error(again) == "Error: a staff account with this e-mail already exists"

    chosen_password = "mauve quartz thimble 1987 lagoon"
    typed = iter([chosen_password, chosen_password + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    mismatch = consentry(
        "users", "create", "x@staff.example.com", "--role", "sales", "--prompt-password"
    )
    assert one_line_error(mismatch) == "Error: passwords do not match"
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "short")
    weak = consentry(
        "users", "create", "x@staff.example.com", "--role", "sales", "--prompt-password"
    )
    assert "at least 12 characters" in one_line_error(weak)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": chosen_password)
    chosen = consentry(
        "users", "create", "x@staff.example.com", "--role", "support", "--prompt-password"
    )
    assert chosen.exit_code == 0, chosen.output
    assert "password:" not in chosen.stdout  # the user typed it: it is not echoed back
    assert sign_in("x@staff.example.com", chosen_password) == ("ok", "support", "default")

    verified = consentry("audit", "verify")
    assert verified.exit_code == 0, verified.output
    counted = re.match(
        r"audit log intact \(full check\): (\d+) entries recomputed, (\d+) signed heads",
        verified.stdout,
    )
    assert counted, verified.stdout
    # two accounts created, two successful and one failed login: five events
    assert int(counted[1]) == 5
    assert int(counted[2]) >= 2  # each `users create` sealed what it wrote
    assert "latest signed head: " in verified.stdout


# --- the README's first command, for real ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_admin_password(stdout: str) -> str:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stdout)
    found = re.findall(
        rf"{re.escape(DEMO_ADMIN)}\s*[│|]\s*admin\s*[│|]\s*([A-Za-z0-9_-]{{12,}})\s*[│|]", plain
    )
    assert len(found) == 1, stdout
    return found[0]


def enrol_second_factor(home: Path, email: str) -> str:
    """Give a running server's staff user a TOTP secret; returns the secret.

    Admins must present a second factor, and enrolling one is a web-admin page, not an
    API call; this writes the sealed secret straight into the server's database, as
    ``tests/conftest.py``'s ``Staff.enrol_totp`` does for the in-process tests.
    """
    forget_process_state()
    settings.set_settings(Settings(home=home))

    async def enrol() -> str:
        await db.start()
        try:
            services = build_services(settings.get_settings())
            identity = await services.accounts.find_by_email(email)
            assert identity is not None, email
            secret = services.accounts.new_totp_secret()
            sealed = services.gateway.vault.seal_secret(TOTP_LABEL, str(identity.user_id), secret)
            await StaffUser.update({StaffUser.totp_secret: sealed}).where(
                StaffUser.id == identity.user_id
            )
            return secret
        finally:
            await db.stop()

    try:
        return asyncio.run(enrol())
    finally:
        forget_process_state()


def test_demo_server_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "consentry-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTRY_")}
    env.update(
        CONSENTRY_HOME=str(home), PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", COLUMNS="200"
    )
    executable = Path(sys.executable).parent / "consentry"
    assert executable.exists(), "the consentry entry point is not installed in this venv"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    email = f"ada.smoke.{uuid.uuid4().hex[:8]}@example.org"
    new_email = f"countess.smoke.{uuid.uuid4().hex[:8]}@example.org"

    with out_path.open("wb") as out, err_path.open("wb") as err:
        server = subprocess.Popen(  # noqa: S603 - a fixed argv: this venv's own entry point
            [str(executable), "serve", "--demo", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            assert server.poll() is None, err_path.read_text()
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready in time:\n{err_path.read_text()}"
            time.sleep(0.25)
        password = demo_admin_password(out_path.read_text(encoding="utf-8"))
        totp = pyotp.TOTP(enrol_second_factor(home, DEMO_ADMIN))

        with httpx.Client(base_url=base, timeout=10) as http:
            login = http.post(
                "/api/v1/auth/login",
                json={"email": DEMO_ADMIN, "password": password, "totp_code": totp.now()},
            )
            assert login.status_code == 200, login.text
            assert login.json()["role"] == "admin"
            seeded = http.get("/api/v1/contacts", params={"lifecycle_stage": "customer"})
            assert seeded.status_code == 200
            assert seeded.json()["total"] > 0

            created = http.post(
                "/api/v1/contacts",
                json={"first_name": "Ada", "last_name": "Smoketest", "email": email},
            )
            assert created.status_code == 201, created.text
            url = f"/api/v1/contacts/{created.json()['id']}"
            found = http.post("/api/v1/contacts/search", json={"email": email.upper()})
            assert [item["id"] for item in found.json()["items"]] == [created.json()["id"]]
            updated = http.patch(url, json={"email": new_email, "job_title": "Analyst"})
            assert updated.status_code == 200, updated.text
            assert http.get(url).json()["email"] == new_email
            assert http.delete(url).status_code == 204
            assert http.get(url).status_code == 404
            assert http.post("/api/v1/auth/logout").status_code == 204
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    database_files = sorted(home.glob("consentry.sqlite3*"))
    assert home / "consentry.sqlite3" in database_files
    for path in database_files:
        content = path.read_bytes().lower()
        for secret in (email, new_email, "smoketest"):
            assert secret.encode() not in content, f"{secret} in plaintext in {path.name}"
    server_logs = err_path.read_text(encoding="utf-8").lower()
    assert '"path": "/api/v1/contacts/search"' in server_logs
    for secret in (email, new_email, "smoketest", password.lower()):
        assert secret not in server_logs


def test_audit_commands_seal_prove_export_and_catch_a_truncation(install: Install) -> None:
    """The operator's and the auditor's view: seal, prove, export heads for a witness,
    verify offline, and catch a truncated history that the database alone cannot show."""
    assert consentry("keys", "init").exit_code == 0
    assert stat.S_IMODE((install.home / "audit-signing.key").stat().st_mode) == 0o600
    assert consentry("migrate").exit_code == 0
    for n in range(3):
        created = consentry("users", "create", f"u{n}@staff.example.com", "--role", "sales")
        assert created.exit_code == 0, created.output

    public_key = install.home / "audit.pub"
    printed = consentry("audit", "public-key")
    assert printed.exit_code == 0
    public_key.write_text(printed.stdout)
    assert "ed25519" not in printed.stdout  # the public half only, never the key file
    assert json.loads((install.home / "audit-signing.key").read_text())["ed25519"] not in (
        printed.stdout
    )

    sealed = consentry("audit", "seal")
    assert sealed.exit_code == 0, sealed.output
    assert sealed.stdout.startswith("signed head over 3 entries")

    proof = consentry("audit", "prove", "2")
    assert proof.exit_code == 0, proof.output
    doc = json.loads(proof.stdout)
    assert doc["verified"] is True
    assert doc["leaf_index"] == 1
    assert doc["event"]["action"] == "user.create"
    assert one_line_error(consentry("audit", "prove", "99")).startswith(
        "Error: event 99 is not covered"
    )

    listed = consentry("audit", "checkpoints", "list")
    assert listed.exit_code == 0
    sizes = [int(line.split()[0]) for line in listed.stdout.splitlines()]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[0] == 3
    consistent = consentry("audit", "consistency", str(sizes[-1]))
    assert consistent.exit_code == 0, consistent.output
    assert json.loads(consistent.stdout)["verified"] is True

    witness = install.home / "witness.json"
    exported = consentry("audit", "checkpoints", "export", "-o", str(witness))
    assert exported.exit_code == 0, exported.output
    assert json.loads(witness.read_text())["heads"][-1]["tree_size"] == 3

    slice_file = install.home / "slice.json"
    forget_process_state()

    async def write_slice() -> None:
        await db.start()
        try:
            services = build_services(settings.get_settings())
            bundle = await services.audit_trail.slice_bundle([1, 3])
            slice_file.write_text(json.dumps(bundle))
        finally:
            await db.stop()

    asyncio.run(write_slice())
    offline = consentry("audit", "verify-slice", str(slice_file), "--public-key", str(public_key))
    assert offline.exit_code == 0, offline.output
    assert "2 events proven" in offline.stdout
    doc = json.loads(slice_file.read_text())
    doc["events"][0]["actor_role"] = "admin"
    slice_file.write_text(json.dumps(doc))
    assert "does NOT verify" in one_line_error(consentry("audit", "verify-slice", str(slice_file)))

    # The owner deletes the newest entry and the head that covered it, then seals again:
    # the database is self-consistent, an exported head is not fooled.
    forget_process_state()

    async def truncate() -> None:
        from tests.dbutil import raw_sql

        url = install.database_url
        if url.startswith("sqlite"):
            await raw_sql(url, "DROP TRIGGER audit_no_delete")
            await raw_sql(url, "DROP TRIGGER audit_checkpoint_no_delete")
        else:
            await raw_sql(url, "ALTER TABLE audit DISABLE TRIGGER USER")
            await raw_sql(url, "ALTER TABLE audit_checkpoint DISABLE TRIGGER USER")
        await raw_sql(url, "DELETE FROM audit WHERE seq = 3")
        await raw_sql(url, "DELETE FROM audit_checkpoint WHERE tree_size = 3")

    asyncio.run(truncate())
    (install.home / "audit-verified.json").unlink(missing_ok=True)  # an auditor's fresh machine
    assert consentry("audit", "verify").exit_code == 0
    caught = consentry("audit", "verify", "--against", str(witness))
    reason = one_line_error(caught)
    assert caught.exit_code == 1
    assert "first bad entry: 3" in reason
    assert "truncated" in reason


def test_audit_witness_export_log_and_mac_existing(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heads go to the configured witness; a fresh verify reads it by default and catches
    rows and heads deleted together; mac-existing has nothing to do on a new install."""
    witness = install.home.parent / "elsewhere" / "witness.jsonl"
    monkeypatch.setenv("CONSENTRY_AUDIT_WITNESS_FILE", str(witness))
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    for n in range(3):
        created = consentry("users", "create", f"w{n}@staff.example.com", "--role", "sales")
        assert created.exit_code == 0, created.output
    assert consentry("audit", "seal").exit_code == 0
    heads = [json.loads(line) for line in witness.read_text().splitlines()]
    assert heads[-1]["tree_size"] == 3
    assert one_line_error(consentry("audit", "mac-existing")) == (
        "Error: not vouching: every entry already carries a MAC: nothing to vouch for"
    )
    export = install.home / "trail.jsonl"
    assert consentry("audit", "export-log", "-o", str(export)).exit_code == 0
    kinds = [json.loads(line).get("type") for line in export.read_text().splitlines()]
    assert kinds[0] is None
    assert kinds.count("entry") == 3
    assert "head" in kinds

    async def truncate() -> None:
        from tests.dbutil import raw_sql

        url = install.database_url
        if url.startswith("sqlite"):
            await raw_sql(url, "DROP TRIGGER audit_no_delete")
            await raw_sql(url, "DROP TRIGGER audit_checkpoint_no_delete")
        else:
            await raw_sql(url, "ALTER TABLE audit DISABLE TRIGGER USER")
            await raw_sql(url, "ALTER TABLE audit_checkpoint DISABLE TRIGGER USER")
        await raw_sql(url, "DELETE FROM audit WHERE seq = 3")
        await raw_sql(url, "DELETE FROM audit_checkpoint WHERE tree_size >= 3")

    forget_process_state()
    asyncio.run(truncate())
    (install.home / "audit-verified.json").unlink(missing_ok=True)  # a fresh machine
    assert consentry("audit", "verify", "--no-witness").exit_code == 0
    caught = consentry("audit", "verify")
    reason = one_line_error(caught)
    assert caught.exit_code == 1
    assert "first bad entry: 3" in reason
    assert "a witnessed head covers 3 entries" in reason


def test_db_grant_app_role(install: Install) -> None:
    if not PG_URL:
        sqlite = consentry("db", "grant-app-role", "consentry_app")
        assert one_line_error(sqlite) == (
            "Error: database roles exist on PostgreSQL only; SQLite has no users"
        )
        return
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    bad = consentry("db", "grant-app-role", "app; DROP TABLE audit")
    assert "not a plain role name" in one_line_error(bad)
    granted = consentry("db", "grant-app-role", "consentry_app", "--create")
    assert granted.exit_code == 0, granted.output
    assert "SELECT/INSERT only on audit tables" in granted.stdout


def test_tokens_create_list_revoke(install: Install) -> None:
    """Issue 19: API tokens from the command line; the secret is printed once."""
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    assert consentry("users", "create", "web@staff.example.com", "--role", "admin").exit_code == 0
    made = consentry(
        "tokens", "create", "--as", "web@staff.example.com", "--kind", "service",
        "--name", "Website sign-up form", "--role", "admin",
        "--purpose", "customer_relationship", "--purpose", "marketing_email", "--field", "email",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    [token_id] = re.findall(r"^created service token (\S+) ", made.stdout, flags=re.MULTILINE)
    [secret] = re.findall(r"^secret \(shown once\): (cst_\S+)$", made.stdout, flags=re.MULTILINE)
    listed = consentry("tokens", "list", "--as", "web@staff.example.com", "--kind", "service")
    assert token_id in listed.stdout
    assert "active" in listed.stdout
    assert secret not in listed.stdout
    wider = consentry(
        "tokens", "create", "--as", "web@staff.example.com", "--name", "x",
        "--role", "compliance", "--purpose", "compliance",
    )  # fmt: skip
    assert one_line_error(wider) == "Error: a token's role may not be wider than your own"
    revoked = consentry("tokens", "revoke", token_id, "--as", "web@staff.example.com")
    assert revoked.exit_code == 0, revoked.output
    listed = consentry("tokens", "list", "--as", "web@staff.example.com", "--kind", "service")
    assert "revoked" in listed.stdout
    assert consentry("audit", "verify").exit_code == 0
