"""``consentry backup`` and ``consentry restore``: the engines' own tools, wrapped.

SQLite is copied with its online backup API (a consistent copy while the server runs);
PostgreSQL with ``pg_dump --format=custom`` and ``pg_restore``. The connection's password
is handed to the tools through their environment (``PGPASSWORD``), never on a command
line. A backup holds the database only: never the master key, the audit signing key or
the erasure register, which live beside the keys (docs/backups.md says why).

Restoring replaces the database's content; the CLI then migrates it, re-grants the
application role and erases again everyone in the erasure register (:mod:`server.dsr.
erasure`), so a backup taken before an erasure never brings the person back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_MAGIC = b"PGDMP"
TOOL_TIMEOUT_SECONDS = 6 * 3600


class BackupError(Exception):
    """A backup or restore failed; the message is one line and holds no password."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    engine: str  # sqlite | postgres
    size: int


def _engine(url: str) -> str:
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return "sqlite"
    if scheme in {"postgresql", "postgres"}:
        return "postgres"
    raise BackupError(f"unsupported database URL scheme {scheme!r}")


def _sqlite_path(url: str) -> Path:
    path = unquote(urlparse(url).path)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = path.lstrip("/")
    return Path(path)


def _pg_env(url: str) -> tuple[dict[str, str], str]:
    """The libpq environment for ``url`` (password included) and the database name."""
    parsed = urlparse(url)
    env = dict(os.environ)
    env.update(
        PGHOST=parsed.hostname or "127.0.0.1",
        PGPORT=str(parsed.port or 5432),
        PGUSER=unquote(parsed.username) if parsed.username else "postgres",
    )
    if parsed.password:
        env["PGPASSWORD"] = unquote(parsed.password)
    return env, parsed.path.lstrip("/") or "consentry"


def _run_tool(args: list[str], env: dict[str, str]) -> None:
    tool = args[0]
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} is not installed (PostgreSQL client tools are needed)")
    try:
        done = subprocess.run(  # noqa: S603 - a fixed PostgreSQL tool, arguments we built
            args, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise BackupError(f"{tool} did not finish within {TOOL_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        first = lines[0] if lines else f"exit code {done.returncode}"
        raise BackupError(f"{tool} failed: {first}")


@contextlib.contextmanager
def _new_private_file(output: Path) -> Iterator[Path]:
    """A temporary 0600 file beside ``output``, renamed onto it once complete."""
    if output.exists():
        raise BackupError(f"{output} already exists; refusing to overwrite it")
    temporary = output.with_name(f".{output.name}.partial")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BackupError(f"{output}: cannot write ({reason})") from None
    try:
        yield temporary
        os.replace(temporary, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def backup_database(url: str, output: Path) -> BackupResult:
    """Write a consistent copy of the database to ``output`` (mode 0600, never replaced)."""
    engine = _engine(url)
    with _new_private_file(output) as temporary:
        if engine == "sqlite":
            source = _sqlite_path(url)
            if not source.exists():
                raise BackupError(f"no SQLite database at {source}")
            with (
                contextlib.closing(sqlite3.connect(source, timeout=30)) as src,
                contextlib.closing(sqlite3.connect(temporary)) as dst,
            ):
                src.backup(dst)
        else:
            env, name = _pg_env(url)
            _run_tool(
                ["pg_dump", "--format=custom", "--no-password", f"--file={temporary}", name], env
            )
    return BackupResult(output, engine, output.stat().st_size)


def restore_database(url: str, source: Path) -> None:
    """Replace the database's content with the backup in ``source`` (the server must be
    stopped), or leave it untouched when the backup cannot be read whole. PostgreSQL: the
    ``public`` schema is dropped and recreated in the restore's own transaction, so a
    database migrated further than the backup does not keep tables the backup lacks; the
    backup's grants are not restored (the application role may not exist in this cluster):
    the caller re-grants ``CONSENTRY_APP_ROLE``."""
    engine = _engine(url)
    try:
        with source.open("rb") as handle:
            magic = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise BackupError(f"{source}: cannot read ({reason})") from None
    if engine == "sqlite":
        if not magic.startswith(SQLITE_MAGIC):
            raise BackupError(f"{source} is not a SQLite backup (made by `consentry backup`)")
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with (
                contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
                contextlib.closing(sqlite3.connect(target, timeout=30)) as dst,
            ):
                # A cut-short copy is refused before a page is written; the backup API
                # itself replaces the target in one write transaction.
                (verdict,) = src.execute("PRAGMA quick_check").fetchone()
                if verdict != "ok":
                    raise BackupError(f"{source} is damaged ({verdict}); nothing was restored")
                src.backup(dst)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{source} cannot be read ({exc}); nothing was restored") from None
        return
    if not magic.startswith(PG_MAGIC):
        raise BackupError(f"{source} is not a pg_dump custom-format backup")
    env, name = _pg_env(url)
    # pg_restore turns the backup into SQL first, into a private directory, and only a
    # complete script is run: psql then resets the schema and loads it in ONE transaction,
    # so a backup that is corrupt, truncated or from a newer server leaves the database as
    # it was instead of empty.
    with tempfile.TemporaryDirectory(prefix="consentry-restore-") as scratch:
        script = Path(scratch) / "restore.sql"
        _run_tool(
            [
                "pg_restore",
                "--no-owner",
                "--no-acl",  # grants are the app role's, re-applied by `consentry restore`
                "--exit-on-error",
                f"--file={script}",
                str(source),
            ],
            env,
        )
        _run_tool(
            [
                "psql",
                "--no-password",  # never wait on a terminal prompt, like pg_dump
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "--set=ON_ERROR_STOP=1",
                f"--dbname={name}",
                "--command=DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;",
                f"--file={script}",
            ],
            env,
        )
