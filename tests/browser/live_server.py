"""The server under test: a real ``consentry serve`` process on its own fresh database.

The browser must talk to a real HTTP server, so the application runs exactly as it is
deployed (the CLI migrates, then uvicorn serves), configured only through ``CONSENTRY_*``
variables. Staff accounts are made with ``consentry users create``, as an operator would.

Playwright's sync API marks its event loop as running in the main thread between calls,
so ``asyncio.run`` cannot be called there while a browser is open: the few async steps
(asyncpg for PostgreSQL) run in a worker thread of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from audit.signing import write_signing_key
from server.vault import write_key_file

T = TypeVar("T")

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 60.0
LOG_TAIL_CHARACTERS = 4000
CREATED = re.compile(r"\(id (\d+), team ")
GENERATED_PASSWORD = re.compile(r"^password: (\S+)$", re.MULTILINE)


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion in a fresh thread (and so a fresh event loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def consentry_command() -> list[str]:
    """The ``consentry`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("consentry")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server.cli"]


APP_ROLE = "consentry_app"


def as_app_role(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{APP_ROLE}@{parts.netloc.rsplit('@', 1)[-1]}"))


def _pg_url(base_url: str, database: str) -> str:
    return f"{base_url.rsplit('/', 1)[0]}/{database}"


async def _pg_admin(base_url: str, sql: str) -> None:
    connection = await asyncpg.connect(_pg_url(base_url, "postgres"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def fresh_database(directory: Path, postgres_url: str = "") -> Iterator[str]:
    """An empty database for one server: a new SQLite file, or a new PostgreSQL database
    (created next to ``postgres_url`` and dropped, connections and all, afterwards)."""
    if not postgres_url:
        yield f"sqlite:///{directory / 'consentry.sqlite3'}"
        return
    name = f"consentry_browser_{uuid.uuid4().hex[:12]}"
    run_async(lambda: _pg_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _pg_url(postgres_url, name)
    finally:
        run_async(lambda: _pg_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True)
class StaffLogin:
    """A staff account made with the CLI, and the password the CLI generated for it."""

    email: str
    password: str
    user_id: int
    role: str
    team: str

    @property
    def actor_id(self) -> str:
        return f"user:{self.user_id}"


@dataclass(frozen=True)
class AuditRow:
    action: str
    outcome: str
    reason: str
    detail: dict[str, Any]


class LiveServer:
    """One ``consentry serve`` process; ``start`` waits for ``/ready``."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.database_url = database_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        key_file = home / "keys" / "master.key"
        write_key_file(key_file)
        signing_key = home / "keys" / "audit-signing.key"
        write_signing_key(signing_key)
        # Only our own settings: the unit tests' CONSENTRY_* variables must not leak in.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENTRY_")}
        self.env.update(
            {
                "CONSENTRY_HOME": str(home),
                "CONSENTRY_DATABASE_URL": database_url,
                "CONSENTRY_MASTER_KEY_FILE": str(key_file),
                "CONSENTRY_AUDIT_SIGNING_KEY_FILE": str(signing_key),
                "CONSENTRY_SESSION_SECRET": secrets.token_urlsafe(32),
                "CONSENTRY_COOKIE_SECURE": "0",  # plain http on loopback
                "CONSENTRY_LOG_JSON": "1",
                "CONSENTRY_CONTROLLER_NAME": "Example Ltd",
                # The test's own IMAP, SMTP and webhook servers listen on loopback, which
                # the outbound check refuses for a real deployment.
                "CONSENTRY_OUTBOUND_ALLOW": "127.0.0.0/8, ::1/128",
                "PYTHONUNBUFFERED": "1",
            }
        )

    # --- process ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.database_url.startswith("postgresql"):
            self._as_production()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                [*consentry_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"consentry serve exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if self._is_ready():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"consentry serve not ready after {READY_TIMEOUT_SECONDS:.0f} s:\n{self.log_tail()}"
        )

    def _as_production(self) -> None:
        """PostgreSQL as documented for production: the owner migrates and grants, the
        server runs as the application role (no UPDATE/DELETE on the audit tables)."""
        owner_env = {**self.env, "CONSENTRY_DATABASE_URL": self.database_url}
        for args in (("migrate",), ("db", "grant-app-role", APP_ROLE, "--create")):
            done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
                [*consentry_command(), *args],
                env=owner_env,
                cwd=self.home,
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT_SECONDS,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"consentry {' '.join(args)} failed: {done.stderr.strip()}")
        self.env["CONSENTRY_DATABASE_URL"] = as_app_role(self.database_url)

    def _is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/ready", timeout=2) as answer:  # noqa: S310 - http://127.0.0.1 only
                return bool(answer.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def assert_alive(self) -> None:
        """Fail with the server's own words if it died under a test."""
        if self._process is None or self._process.poll() is not None:
            raise AssertionError(f"consentry serve is not running:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARACTERS:]
        except OSError:
            return "(no server log)"

    # --- operator actions ------------------------------------------------------------------

    def cli(self, *args: str) -> str:
        """Run ``consentry ARGS`` against this server's database; returns its output."""
        done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
            [*consentry_command(), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"consentry {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
            )
        return done.stdout

    def create_staff(self, role: str, team: str = "north") -> StaffLogin:
        """A new staff account with a generated password (a fresh one per test, so that
        one test's failed sign-ins never lock another test's user)."""
        email = f"{role}.{uuid.uuid4().hex[:8]}@staff.example.com"
        output = self.cli("users", "create", email, "--role", role, "--team", team)
        created = CREATED.search(output)
        password = GENERATED_PASSWORD.search(output)
        assert created, output
        assert password, output
        return StaffLogin(email, password.group(1), int(created.group(1)), role, team)

    # --- looking behind the UI -------------------------------------------------------------

    def audit_events(self, actor_id: str, action: str) -> list[AuditRow]:
        """The audit log rows of one actor and action, oldest first (raw SQL: what the
        database holds, not what the application says it holds)."""
        sql = (
            "SELECT action, outcome, reason, detail FROM audit "
            "WHERE actor_id = {0} AND action = {1} ORDER BY seq"
        )
        if self.database_url.startswith("sqlite:///"):
            path = self.database_url.removeprefix("sqlite:///")
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                rows = connection.execute(sql.format("?", "?"), (actor_id, action)).fetchall()
            finally:
                connection.close()
        else:

            async def fetch() -> list[Any]:
                connection = await asyncpg.connect(self.database_url)
                try:
                    return list(await connection.fetch(sql.format("$1", "$2"), actor_id, action))
                finally:
                    await connection.close()

            rows = [tuple(r) for r in run_async(fetch)]
        return [AuditRow(a, o, r, json.loads(d or "{}")) for a, o, r, d in rows]
