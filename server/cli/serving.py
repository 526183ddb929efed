"""``consentry serve``, ``migrate``, ``check`` and ``db grant-app-role``: running the
server and keeping its database current.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from server.cli.mentions import mention_index_complete, reindex_mentions
from server.cli.runtime import describe_url, fail, load_services, run_with_database
from server.cli.search import reindex_names
from server.settings import (
    MISSING_CONTROLLER,
    ConfigurationError,
    Settings,
    get_settings,
    set_settings,
)


@click.command()
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
        # Links in the demo's e-mails (the outbox) point at this very server.
        os.environ.setdefault("CONSENTRY_PUBLIC_URL", f"http://{host}:{port}")
        settings = set_settings(Settings.from_env())
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not settings.controller_name:
        fail(MISSING_CONTROLLER)
    services = load_services(settings)
    from server.migrate import MigrationFailed

    try:
        run_with_database(_migrate_quietly)
    except MigrationFailed as exc:
        fail(
            f"pending migrations could not be applied ({exc}); if the server connects as an "
            "application role, run `consentry migrate` as the database owner first"
        )
    if run_with_database(services.gateway.name_index_missing):
        reindex_names(services)  # a database from before name search: fill its index once
    if not mention_index_complete(services):
        reindex_mentions(services)  # records from before the mention index: index them once
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
    """Apply pending migrations; with none pending, touch nothing (the server may run as an
    application role that is not allowed to change the schema)."""
    from server.migrate import apply_migrations, pending_migrations

    if await pending_migrations():
        await apply_migrations(quiet=True)


def _prepare_demo(services: Any) -> None:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from server.demo import DEMO_ADMIN, DEMO_RECORD_OWNERS, ensure_demo_staff, seed_demo_data

    console = Console()

    async def prepare() -> list[Any]:
        logins = await ensure_demo_staff(services.accounts)
        already = await services.gateway.list(_system_actor(), "contact", page=1, page_size=1)
        if already.total == 0:
            owners = [
                await services.accounts.find_by_email(login.email)
                for login in logins
                if login.role in DEMO_RECORD_OWNERS
            ]
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("Seeding demo customers", total=340)
                await seed_demo_data(
                    services.gateway,
                    owners,
                    progress=lambda n: bar.advance(task, n),
                    consent=services.consent,
                )
        await services.audit_trail.seal_all()
        return logins

    logins = run_with_database(prepare)
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


@click.command()
def migrate() -> None:
    """Apply pending database migrations (safe to run repeatedly)."""
    from server.migrate import MigrationFailed, apply_migrations, pending_migrations

    async def go() -> int:
        before = await pending_migrations()
        await apply_migrations(quiet=True)
        role = get_settings().app_role
        if role:  # tables added by these migrations must be granted too
            from server import db
            from server.dbroles import grant_app_role

            await grant_app_role(db.get_engine(), role)
        return len(before)

    from server.dbroles import RoleSetupError

    try:
        applied = run_with_database(go)
    except MigrationFailed as exc:
        fail(f"migration failed: {exc}")
    except RoleSetupError as exc:
        fail(f"migrated, but could not grant CONSENTRY_APP_ROLE: {exc}")
    click.echo(f"applied {applied} migration(s); database is current")
    from server.services import build_services
    from server.vault import MasterKeyMissing

    try:
        services = build_services(get_settings())
    except (ConfigurationError, MasterKeyMissing):
        return  # no keys yet, so no encrypted record either: nothing to index
    if run_with_database(services.gateway.name_index_missing):
        reindex_names(services)
    if not mention_index_complete(services):
        reindex_mentions(services)


@click.group("db")
def db_group() -> None:
    """Database administration (PostgreSQL roles)."""


@db_group.command("grant-app-role")
@click.argument("role")
@click.option("--create", is_flag=True, help="Create the role (LOGIN, no password) if missing.")
def db_grant_app_role(role: str, create: bool) -> None:
    """Let ROLE run the server: full access to customer and staff tables, but only SELECT
    and INSERT on the audit tables. Run as the tables' owner, after `consentry migrate`.

    Then start the server with CONSENTRY_DATABASE_URL naming ROLE, and set
    CONSENTRY_APP_ROLE=ROLE where migrations run so later tables are granted too.
    """
    from server import db
    from server.dbroles import RoleSetupError, grant_app_role

    try:
        run_with_database(lambda: grant_app_role(db.get_engine(), role, create=create))
    except RoleSetupError as exc:
        fail(str(exc))
    click.echo(f"granted {role}: read/write on CRM tables, SELECT/INSERT only on audit tables")


@click.command()
def check() -> None:
    """Check configuration: keys present, database reachable, migrations current."""
    settings = get_settings()
    problems: list[str] = []
    click.echo(f"database: {describe_url(settings.resolved_database_url)}")
    if not settings.controller_name:
        problems.append(MISSING_CONTROLLER)
    from server.services import load_audit_signer, load_key_provider, load_session_secret

    for label, load in (
        ("master key", load_key_provider),
        ("audit signing key", load_audit_signer),
        ("session secret", load_session_secret),
    ):
        try:
            load(settings)
            click.echo(f"{label}: ok")
        except ConfigurationError as exc:
            problems.append(str(exc))
    try:
        from server.migrate import pending_migrations

        pending = run_with_database(pending_migrations)
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
