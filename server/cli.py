"""The ``consentry`` command line: serve, migrate, keys, users, check, audit.

Every command exits 0 on success and non-zero with a one-line reason on failure.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from server.settings import ConfigurationError, Settings, get_settings, set_settings

T = TypeVar("T")


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine with the database started and stopped around it."""
    from server import db

    async def main() -> T:
        await db.start()
        try:
            return await factory()
        finally:
            await db.stop()

    return asyncio.run(main())


def _fail(message: str) -> None:
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Consentry: a privacy-first CRM.

    Configuration comes from CONSENTRY_* environment variables (see README.md):
    CONSENTRY_HOME (data directory, default ./consentry-data), CONSENTRY_DATABASE_URL
    (default: SQLite in the data directory), CONSENTRY_MASTER_KEY_FILE or
    CONSENTRY_MASTER_KEY, CONSENTRY_SESSION_SECRET.
    """


def _services(settings: Settings) -> Any:
    from server.services import build_services

    try:
        return build_services(settings)
    except ConfigurationError as exc:
        _fail(str(exc))


# --- serve ---------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (sessions and audit are in the database, so they share).",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Create the data directory and keys if needed, seed fictional customers, "
    "and print one-time passwords for the demo staff.",
)
def serve(host: str, port: int, workers: int, demo: bool) -> None:
    """Run the web server (migrates the database first)."""
    import uvicorn

    settings = get_settings()
    if demo:
        os.environ["CONSENTRY_DEMO"] = "1"  # worker processes read settings from the env
        if "CONSENTRY_COOKIE_SECURE" not in os.environ:
            os.environ["CONSENTRY_COOKIE_SECURE"] = "0"  # the demo runs on plain http
        settings = set_settings(Settings.from_env())
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    services = _services(settings)
    _run(_migrate_quietly)
    if demo:
        _prepare_demo(services)
    click.echo(f"Consentry listening on http://{host}:{port}  (API docs: /schema)")
    uvicorn.run(
        "server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=False,
    )


async def _migrate_quietly() -> None:
    from server.migrate import apply_migrations

    await apply_migrations(quiet=True)


def _prepare_demo(services: Any) -> None:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from server.demo import DEMO_ADMIN, ensure_demo_staff, seed_demo_data

    console = Console()

    async def prepare() -> list[Any]:
        logins = await ensure_demo_staff(services.accounts)
        already = await services.gateway.list(_system_actor(), "contact", page=1, page_size=1)
        if already.total == 0:
            owners = [
                await services.accounts.find_by_email(login.email)
                for login in logins
                if login.role in {"sales", "support"}
            ]
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("Seeding demo customers", total=340)
                await seed_demo_data(
                    services.gateway, owners, progress=lambda n: bar.advance(task, n)
                )
        return logins

    logins = _run(prepare)
    table = Table(title="Demo staff logins (passwords change at every demo start)")
    for column in ("e-mail", "role", "password"):
        table.add_column(column)
    for login in logins:
        table.add_row(login.email, login.role, login.password)
    console.print(table)
    console.print(
        f"Sign in as [bold]{DEMO_ADMIN}[/bold] in the browser: admin and compliance accounts "
        "enrol an authenticator app (TOTP) at their first sign-in. For the API, try a sales "
        "or support account."
    )


def _system_actor() -> Any:
    from server.gateway import Actor

    return Actor.system("demo-seed")


# --- migrate -------------------------------------------------------------------------------


@cli.command()
def migrate() -> None:
    """Apply pending database migrations (safe to run repeatedly)."""
    from server.migrate import MigrationFailed, apply_migrations, pending_migrations

    async def go() -> int:
        before = await pending_migrations()
        await apply_migrations(quiet=True)
        return len(before)

    try:
        applied = _run(go)
    except MigrationFailed as exc:
        _fail(f"migration failed: {exc}")
    click.echo(f"applied {applied} migration(s); database is current")


# --- keys ----------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Manage the master key (key-encryption key) and the session secret."""


@keys.command("init")
def keys_init() -> None:
    """Create the master key file (mode 0600) and the session secret, if absent.

    The master key never leaves this file: back it up somewhere safe. Losing it makes
    every encrypted field unreadable.
    """
    from server.services import ensure_session_secret
    from server.vault import write_key_file

    settings = get_settings()
    path = settings.resolved_master_key_file
    if path.exists():
        _fail(
            f"{path} already exists; refusing to overwrite a key that data may be encrypted under"
        )
    write_key_file(path)
    ensure_session_secret(settings.session_secret_file)
    click.echo(
        f"created master key {path} (mode 600) and session secret {settings.session_secret_file}"
    )


# --- users ---------------------------------------------------------------------------------


@cli.group()
def users() -> None:
    """Manage staff accounts."""


@users.command("create")
@click.argument("email")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["admin", "sales", "support", "marketing", "compliance"]),
    help="What the user may see and do (policy/policy.csv).",
)
@click.option(
    "--team",
    default="default",
    show_default=True,
    help="Team name: records owned by the team are visible to team-scoped roles.",
)
@click.option("--name", "display_name", default="", help="Display name.")
@click.option(
    "--prompt-password",
    is_flag=True,
    help="Type the password instead of having a strong one generated.",
)
def users_create(
    email: str, role: str, team: str, display_name: str, prompt_password: bool
) -> None:
    """Create a staff account; prints the generated password once."""
    from server.auth.passwords import WeakPassword
    from server.auth.service import AccountError

    password: str | None = None
    if prompt_password:
        password = getpass.getpass("Password (12+ characters): ")
        if password != getpass.getpass("Repeat password: "):
            _fail("passwords do not match")
    services = _services(get_settings())

    async def go() -> tuple[Any, str]:
        result: tuple[Any, str] = await services.accounts.create_user(
            email, role, team=team, display_name=display_name, password=password
        )
        return result

    try:
        identity, secret = _run(go)
    except (AccountError, WeakPassword) as exc:
        _fail(str(exc))
    click.echo(f"created {role} user {identity.email} (id {identity.user_id}, team {team})")
    if password is None:
        click.echo(f"password: {secret}")


# --- check ---------------------------------------------------------------------------------


@cli.command()
def check() -> None:
    """Check configuration: keys present, database reachable, migrations current."""
    settings = get_settings()
    problems: list[str] = []
    click.echo(f"database: {_describe_url(settings.resolved_database_url)}")
    try:
        from server.services import load_key_provider, load_session_secret

        load_key_provider(settings)
        click.echo("master key: ok")
        load_session_secret(settings)
        click.echo("session secret: ok")
    except ConfigurationError as exc:
        problems.append(str(exc))
    try:
        from server.migrate import pending_migrations

        pending = _run(pending_migrations)
        if pending:
            problems.append(f"{len(pending)} migration(s) pending: run `consentry migrate`")
        else:
            click.echo("database reachable, migrations current: ok")
    except Exception as exc:  # the message names the failure without leaking the URL's password
        problems.append(f"database unreachable: {type(exc).__name__}: {exc}")
    from admin_ui.plugin import VENDOR

    missing = [name for name, folder in VENDOR.items() if not folder.is_dir()]
    if missing:  # a warning: the admin works unstyled and without htmx
        click.echo(
            "warning: web admin assets missing (" + ", ".join(missing) + "): run "
            "`npm ci --ignore-scripts --prefix admin_ui`",
            err=True,
        )
    else:
        click.echo("web admin assets: ok")
    if problems:
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
        sys.exit(1)
    click.echo("all checks passed")


def _describe_url(url: str) -> str:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


# --- audit ---------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Inspect and verify the audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the audit hash chain; exit 1 and name the first bad entry if it is broken."""
    from audit.log import AuditLog

    report = _run(AuditLog().verify_chain)
    if not report.ok:
        _fail(
            f"audit log is NOT intact: entry {report.first_bad_seq}: {report.problem} "
            f"({report.checked} entries verified before it)"
        )
    click.echo(f"audit log intact: {report.checked} entries verified")


def main() -> None:
    try:
        cli(prog_name="consentry")
    except ConfigurationError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
