"""The ``consentry`` command line: serve, migrate, keys, users, tokens, check, consent, audit.

Every command exits 0 on success and non-zero with a one-line reason on failure.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from policy.enforcer import ROLES
from server.servicedesk.cli import desk_group
from server.settings import (
    MISSING_CONTROLLER,
    ConfigurationError,
    Settings,
    get_settings,
    set_settings,
)

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
        # Links in the demo's e-mails (the outbox) point at this very server.
        os.environ.setdefault("CONSENTRY_PUBLIC_URL", f"http://{host}:{port}")
        settings = set_settings(Settings.from_env())
        settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not settings.controller_name:
        _fail(MISSING_CONTROLLER)
    services = _services(settings)
    from server.migrate import MigrationFailed

    try:
        _run(_migrate_quietly)
    except MigrationFailed as exc:
        _fail(
            f"pending migrations could not be applied ({exc}); if the server connects as an "
            "application role, run `consentry migrate` as the database owner first"
        )
    if _run(services.gateway.name_index_missing):
        _reindex_names(services)  # a database from before name search: fill its index once
    if not _mention_index_complete(services):
        _reindex_mentions(services)  # records from before the mention index: index them once
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
        role = get_settings().app_role
        if role:  # tables added by these migrations must be granted too
            from server import db
            from server.dbroles import grant_app_role

            await grant_app_role(db.get_engine(), role)
        return len(before)

    from server.dbroles import RoleSetupError

    try:
        applied = _run(go)
    except MigrationFailed as exc:
        _fail(f"migration failed: {exc}")
    except RoleSetupError as exc:
        _fail(f"migrated, but could not grant CONSENTRY_APP_ROLE: {exc}")
    click.echo(f"applied {applied} migration(s); database is current")
    from server.services import build_services
    from server.vault import MasterKeyMissing

    try:
        services = build_services(get_settings())
    except (ConfigurationError, MasterKeyMissing):
        return  # no keys yet, so no encrypted record either: nothing to index
    if _run(services.gateway.name_index_missing):
        _reindex_names(services)
    if not _mention_index_complete(services):
        _reindex_mentions(services)


# --- search --------------------------------------------------------------------------------


def _reindex_names(services: Any, batch_size: int = 500) -> dict[str, int]:
    """Rebuild the name-search tokens with a progress bar on stderr; audited, sealed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from server.gateway import Actor

    console = Console(stderr=True)

    async def go() -> dict[str, int]:
        total = await services.gateway.name_index_size()
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("records"),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("Indexing names", total=total)
            done = await services.gateway.reindex_names(
                Actor.system("search-reindex"),
                batch_size=batch_size,
                progress=lambda n: bar.advance(task, n),
            )
        await services.audit_trail.seal_all()
        return dict(done)

    done = _run(go)
    click.echo(
        "name search index rebuilt: "
        + ", ".join(f"{n} {resource}(s)" for resource, n in done.items())
    )
    return done


@cli.group()
def search() -> None:
    """Name search (docs/search.md)."""


@search.command("reindex")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Records re-indexed per transaction.",
)
def search_reindex(batch_size: int) -> None:
    """Recompute every name-search token from the records.

    Run it after restoring a database from parts or changing the index key, or to fill
    in the index of records written before name search existed (`consentry migrate` and
    `consentry serve` do that by themselves when the index is empty). Online and
    resumable: each batch replaces its records' tokens in one transaction. Reads and
    decrypts every indexed name; audited per record type with the count, never a name.
    """
    from server.vault import MasterKeyMissing

    services = _services(get_settings())
    try:
        _reindex_names(services, batch_size)
    except (MasterKeyMissing, OSError) as exc:
        _fail(f"reindex stopped: {exc}; run `consentry search reindex` again to finish it")


@cli.group("db")
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
        _run(lambda: grant_app_role(db.get_engine(), role, create=create))
    except RoleSetupError as exc:
        _fail(str(exc))
    click.echo(f"granted {role}: read/write on CRM tables, SELECT/INSERT only on audit tables")


# --- keys ----------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Manage the master key (key-encryption key) and the session secret."""


@keys.command("init")
def keys_init() -> None:
    """Create the master key, the audit signing key (both mode 0600) and the session secret,
    whichever are absent.

    Keys never leave these files: back them up somewhere safe. Losing the master key makes
    every encrypted field unreadable; losing the signing key means new heads are signed by
    a new key (give auditors the new public key: `consentry audit public-key`).
    """
    from audit.signing import write_signing_key
    from server.services import ensure_session_secret
    from server.vault import write_key_file

    settings = get_settings()
    path = settings.resolved_master_key_file
    signing = settings.resolved_audit_signing_key_file
    created = []
    if not path.exists():
        write_key_file(path)
        created.append(f"master key {path}")
    if not settings.audit_signing_key_env and not signing.exists():
        write_signing_key(signing)
        created.append(f"audit signing key {signing}")
    if not settings.session_secret and not settings.session_secret_file.exists():
        ensure_session_secret(settings.session_secret_file)
        created.append(f"session secret {settings.session_secret_file}")
    if not created:
        _fail(
            f"{path} already exists (and {signing}); refusing to overwrite keys that data "
            "and signed heads depend on"
        )
    click.echo("created " + ", ".join(created) + " (mode 600)")


def _key_rotation(services: Any) -> Any:
    rotation = services.key_rotation
    if rotation is None:
        _fail(
            "the master key comes from CONSENTRY_MASTER_KEY, which holds one version: "
            "move to a key file (CONSENTRY_MASTER_KEY_FILE) to rotate or prune"
        )
    return rotation


@keys.command("status")
def keys_status() -> None:
    """List the KEK versions in the key file: active or retired, when, and how many data
    keys each still wraps. Prints no key material."""
    from server.vault import MasterKeyMissing

    services = _services(get_settings())
    rotation = _key_rotation(services)
    try:
        versions = _run(rotation.versions)
    except MasterKeyMissing as exc:
        _fail(str(exc))
    days = services.settings.backup_retention_days
    for version in versions:
        if version.active:
            state = "active"
        elif version.retired_at:
            state = f"retired {version.retired_at[:10]}"
        else:
            state = "rotation unfinished: run `consentry keys rotate`"
        click.echo(
            f"{version.kek_id:<6} created {version.created_at[:10]}  {state:<20}  "
            f"{version.data_keys} data key(s)"
        )
    for kek_id, when in sorted(rotation.destroyed().items()):
        click.echo(f"{kek_id:<6} destroyed {when[:10]}")
    click.echo(f"retired versions are destroyed {days} day(s) after retirement (`keys prune`)")


@keys.command("rotate")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Data keys re-wrapped per transaction.",
)
def keys_rotate(batch_size: int) -> None:
    """Make a new KEK version active and re-wrap every data key under it.

    Online: running servers pick the new version up from the key file by themselves.
    Resumable: if it stops half-way, every key still opens under the old or the new
    version, and running it again finishes the same rotation. The old version is kept
    until `consentry keys prune` destroys it after CONSENTRY_BACKUP_RETENTION_DAYS.
    Back up the key file afterwards (it now holds the new version).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from server.vault import MasterKeyMissing
    from server.vault.rotation import RotationError

    services = _services(get_settings())
    rotation = _key_rotation(services)
    rotation.batch_size = batch_size
    console = Console(stderr=True)

    async def go() -> Any:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("data keys"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("Re-wrapping", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = await rotation.rotate(progress=advance)
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return report

    try:
        report = _run(go)
    except (RotationError, MasterKeyMissing, OSError) as exc:
        _fail(f"rotation stopped: {exc}; run `consentry keys rotate` again to finish it")
    verb = "resumed rotation to" if report.resumed else "rotated to"
    retired = ", ".join(report.retired) or "none"
    click.echo(
        f"{verb} KEK {report.kek_id}: {report.rewrapped} data key(s) re-wrapped; retired: {retired}"
    )


@keys.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be destroyed; destroy nothing.")
def keys_prune(dry_run: bool) -> None:
    """Destroy KEK versions retired more than CONSENTRY_BACKUP_RETENTION_DAYS ago.

    Every backup still holding data keys wrapped under them becomes unreadable, for
    erased and living people alike: that is how an erasure reaches backups. The daily
    housekeeping of a running server does the same. Copies of the key file made before
    the prune still hold the versions: replace them.
    """
    import datetime as dt

    from server.vault import MasterKeyMissing
    from server.vault.rotation import RotationError

    services = _services(get_settings())
    rotation = _key_rotation(services)
    retention = dt.timedelta(days=services.settings.backup_retention_days)

    async def go() -> Any:
        report = await rotation.prune(retention, dry_run=dry_run)
        await services.audit_trail.seal_all()
        return report

    try:
        report = _run(go)
    except (RotationError, MasterKeyMissing, OSError) as exc:
        _fail(f"prune stopped: {exc}")
    verb = "would destroy" if dry_run else "destroyed"
    click.echo(f"{verb} KEK version(s): {', '.join(report.destroyed) or 'none'}")
    for kek_id, until in report.kept:
        click.echo(f"kept {kek_id} until {until} (backup retention)")


# --- backup and restore ----------------------------------------------------------------------


@cli.command("backup")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The backup file to write (mode 600; an existing file is never overwritten).",
)
def backup_command(output: Path) -> None:
    """Back up the database with the engine's own tool: SQLite's online backup API, or
    pg_dump (custom format) on PostgreSQL. Safe while the server runs.

    The file holds the database only - never the master key or the erasure register,
    which are backed up with the keys. See docs/backups.md.
    """
    from server.backup import BackupError, backup_database

    settings = get_settings()
    try:
        result = backup_database(settings.resolved_database_url, output)
    except BackupError as exc:
        _fail(str(exc))
    click.echo(f"backed up the {result.engine} database to {output} ({result.size} bytes)")


@cli.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def restore_command(file: Path, yes: bool) -> None:
    """Replace the database with the backup FILE, then erase again everyone erased since.

    Stop the server first. After restoring, pending migrations are applied and every
    person in the erasure register (kept beside the master key, not in the backup) is
    erased again, so a restore never brings an erased person back. Exit code 1 if the
    backup cannot be restored or an erasure cannot be re-applied.
    """
    from rich.console import Console
    from rich.progress import Progress

    from server.backup import BackupError, restore_database
    from server.migrate import MigrationFailed
    from server.vault.register import RegisterError

    settings = get_settings()
    services = _services(settings)
    register = services.gateway.vault.register
    try:
        entries = register.entries()
    except RegisterError as exc:
        _fail(str(exc))
    if not yes and not click.confirm(
        f"Replace the database {_describe_url(settings.resolved_database_url)} with {file}?",
        default=False,
    ):
        _fail("restore cancelled; nothing was changed")
    try:
        restore_database(settings.resolved_database_url, file)
    except BackupError as exc:
        _fail(f"restore failed: {exc}")
    console = Console(stderr=True)

    async def go() -> Any:
        from server.migrate import apply_migrations

        await apply_migrations(quiet=True)
        if settings.app_role:
            from server import db
            from server.dbroles import grant_app_role

            await grant_app_role(db.get_engine(), settings.app_role)
        elif settings.is_postgres:
            click.echo(
                "note: CONSENTRY_APP_ROLE is not set, so no application role was granted: "
                "run `consentry db grant-app-role ROLE` before starting the server",
                err=True,
            )
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("Re-applying erasures", total=len(entries))
            report = await services.erasure.reapply(
                [entry.subject_id for entry in entries], progress=lambda n: bar.advance(task, n)
            )
        try:
            await services.audit_trail.seal_all()
        except Exception as exc:  # the restored log is older than the witnesses' heads
            click.echo(f"note: audit log not sealed ({type(exc).__name__}): {exc}", err=True)
        return report

    try:
        report = _run(go)
    except MigrationFailed as exc:
        _fail(f"restored, but migrations failed: {exc}")
    click.echo(
        f"restored {file}; erasure register: {report.erased} erased again, "
        f"{report.shredded} key(s) shredded, {report.held} held, {report.already} already erased"
    )
    if report.failed:
        _fail(
            f"{len(report.failed)} erasure(s) could not be re-applied (first: "
            f"{report.failed[0]}); do not start the server until `consentry dsr erase` "
            "succeeds for each"
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
    type=click.Choice(ROLES),
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
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return result

    try:
        identity, secret = _run(go)
    except (AccountError, WeakPassword) as exc:
        _fail(str(exc))
    click.echo(f"created {role} user {identity.email} (id {identity.user_id}, team {team})")
    if password is None:
        click.echo(f"password: {secret}")


# --- API tokens ----------------------------------------------------------------------------


@cli.group()
def tokens() -> None:
    """API tokens: personal tokens and service accounts (Authorization: Bearer ...).

    Each is made for a staff account (--as), bound to a role no wider than theirs, the
    purposes it may act for, optionally a field allow-list, and an expiry. The secret is
    printed once; only a keyed hash of it is stored. Revocation is effective at once.
    """


def _token_owner(services: Any, email: str) -> Any:
    identity = _run(lambda: services.accounts.find_by_email(email))
    if identity is None:
        _fail(f"no staff account with the e-mail {email}")
    return identity


@tokens.command("create")
@click.option("--as", "owner", required=True, help="E-mail of the staff account making it.")
@click.option("--name", required=True, help="What it is for, e.g. 'Website sign-up form'.")
@click.option(
    "--kind",
    type=click.Choice(["personal", "service"]),
    default="personal",
    show_default=True,
    help="A personal token of --as, or a service account (admins).",
)
@click.option("--role", required=True, help="Role it acts with: no wider than --as's own.")
@click.option(
    "--purpose", "purposes", multiple=True, required=True, help="A purpose it may act for (repeat)."
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    help="Only these fields (repeat; 'email' or 'contact.email'). Default: the role's fields.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=90,
    show_default=True,
    help="Days until it expires.",
)
def tokens_create(
    owner: str,
    name: str,
    kind: str,
    role: str,
    purposes: tuple[str, ...],
    fields: tuple[str, ...],
    days: int,
) -> None:
    """Make a token; prints its secret once."""
    from server.auth.tokens import TokenError, TokenKind

    services = _services(get_settings())
    identity = _token_owner(services, owner)

    async def go() -> Any:
        made = await services.tokens.create(
            identity,
            TokenKind(kind),
            name=name,
            role=role,
            purposes=purposes,
            fields=fields or None,
            days=days,
        )
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return made

    try:
        made = _run(go)
    except TokenError as exc:
        _fail(str(exc))
    click.echo(
        f"created {kind} token {made.info.id} ({role}; expires {made.info.expires_at:%Y-%m-%d})"
    )
    click.echo(f"secret (shown once): {made.secret}")


@tokens.command("list")
@click.option("--as", "owner", required=True, help="E-mail of the staff account.")
@click.option(
    "--kind",
    type=click.Choice(["personal", "service"]),
    default="personal",
    show_default=True,
    help="Personal tokens of --as, or every service account.",
)
def tokens_list(owner: str, kind: str) -> None:
    """List tokens: --as's personal tokens, or every service account."""
    from server.auth.tokens import TokenKind

    services = _services(get_settings())
    identity = _token_owner(services, owner)
    found = _run(lambda: services.tokens.list(identity, TokenKind(kind)))
    if not found:
        click.echo("no tokens")
    for info in found:
        state = "active" if info.active else ("revoked" if info.revoked_at else "expired")
        used = f"{info.last_used_at:%Y-%m-%d %H:%M}" if info.last_used_at else "never"
        click.echo(
            f"{info.id}  {info.hint}...  {state:<7}  {info.role:<10}  "
            f"{','.join(info.purposes)}  last used {used}  {info.name}"
        )


@tokens.command("revoke")
@click.argument("token_id")
@click.option("--as", "owner", required=True, help="E-mail of the staff account.")
def tokens_revoke(token_id: str, owner: str) -> None:
    """Revoke a token: its next call fails, in every worker."""
    from server.auth.tokens import TokenError

    services = _services(get_settings())
    identity = _token_owner(services, owner)

    async def go() -> Any:
        info = await services.tokens.revoke(identity, token_id)
        await services.audit_trail.seal_all()
        return info

    try:
        info = _run(go)
    except TokenError as exc:
        _fail(str(exc))
    click.echo(f"revoked token {info.id}")


# --- check ---------------------------------------------------------------------------------


@cli.command()
def check() -> None:
    """Check configuration: keys present, database reachable, migrations current."""
    settings = get_settings()
    problems: list[str] = []
    click.echo(f"database: {_describe_url(settings.resolved_database_url)}")
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


# --- consent -------------------------------------------------------------------------------


@cli.group()
def consent() -> None:
    """Consent evidence: import proof of consent for existing contacts."""


@consent.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check every row and show what would be granted; record no consent.",
)
@click.option(
    "--batch",
    default=None,
    help="Batch id kept as evidence (letters, digits, _ . : -). Default: the file's sha256, "
    "so importing the same file again records nothing new.",
)
def consent_import(file: Path, dry_run: bool, batch: str | None) -> None:
    """Grant consent to existing contacts from a CSV file with its evidence.

    Columns: email (or phone) to find the contact, purpose, channel (if the purpose has
    several), consented_at (ISO date or date-time), source (import, web_form, phone,
    portal, staff), notice_version, and optionally reference (a code such as a call
    reference: letters, digits, _ . : -; kept encrypted under the person's key, so an
    erasure reaches it although the ledger is append-only). Rows without evidence get no
    consent. Rejected rows are listed by line number; the exit code is 0 once the file
    was processed, 1 if it cannot be read or lacks required columns.
    """
    from rich.console import Console
    from rich.progress import Progress

    from server.consent.importer import ImportRefused, batch_id, import_consent, read_csv

    try:
        content = file.read_bytes()
    except OSError as exc:
        _fail(f"{file}: cannot read the file ({exc.strerror or type(exc).__name__})")
    try:
        rows = read_csv(content)
    except ImportRefused as exc:
        _fail(f"{file}: {exc}")
    services = _services(get_settings())
    console = Console()

    async def go() -> Any:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("Importing consent", total=len(rows))
            report = await import_consent(
                services,
                rows,
                dry_run=dry_run,
                batch=batch or batch_id(content),
                progress=lambda n: bar.advance(task, n),
            )
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return report

    try:
        report = _run(go)
    except ImportRefused as exc:
        _fail(str(exc))
    prefix = "dry run, nothing recorded: " if dry_run else ""
    click.echo(f"{prefix}{report.summary()} (batch {report.batch})")
    for rejected in report.rejected:
        click.echo(f"  line {rejected.line}: {rejected.reason}")


# --- audit ---------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Seal, verify and prove the audit log (signed Merkle tree heads)."""


def _trail(public_keys: tuple[Path, ...] = (), *, need_signer: bool = False) -> Any:
    """The audit trail with the keys to trust: the configured signing key's public half
    and any ``--public-key`` files (an auditor's machine may have only those)."""
    from audit.signing import TreeHeadVerifier, load_public_key
    from audit.trail import AuditTrail
    from server.services import load_audit_signer

    settings = get_settings()
    signer = None
    try:
        signer = load_audit_signer(settings)
    except ConfigurationError as exc:
        if need_signer or not public_keys:
            _fail(str(exc))
    trusted = []
    for path in public_keys:
        try:
            trusted.append(load_public_key(path.read_text()))
        except (OSError, ValueError) as exc:
            _fail(f"{path}: {exc}")
    if signer is not None:
        trusted.append(signer.public_key)
    from audit.witness import WitnessFile

    witness = settings.audit_witness_file
    return AuditTrail(
        signer,
        trusted=TreeHeadVerifier(trusted),
        state_file=settings.home / "audit-verified.json",
        witness=WitnessFile(witness) if witness else None,
    )


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        _fail(f"{path}: not readable JSON ({exc.__class__.__name__})")


def _write_json(doc: Any, output: Path | None) -> None:
    import json

    text = json.dumps(doc, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)


PUBLIC_KEY_OPTION = click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trust heads signed by this public key (from `consentry audit public-key`); "
    "repeatable. Default: the configured signing key.",
)


@audit.command("verify")
@click.option(
    "--incremental",
    is_flag=True,
    help="Start from the head this machine verified last (kept in the data directory); "
    "a full pass if there is none.",
)
@click.option(
    "--against",
    "against",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file from `consentry audit checkpoints export`: the log must still match every "
    "head in it (detects a rewritten or truncated history). Repeatable.",
)
@click.option(
    "--witness",
    "witness_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A witness file (JSON lines of signed heads): the log must still match its newest "
    "genuinely signed head. Default: CONSENTRY_AUDIT_WITNESS_FILE, if set.",
)
@click.option("--no-witness", is_flag=True, help="Do not read the configured witness file.")
@PUBLIC_KEY_OPTION
def audit_verify(
    incremental: bool,
    against: tuple[Path, ...],
    witness_path: Path | None,
    no_witness: bool,
    public_keys: tuple[Path, ...],
) -> None:
    """Recompute every entry, its MAC and the Merkle tree; check every signed head.

    Exits 1 and names the first bad sequence number if an entry was modified, deleted,
    inserted, reordered or forged, or the newest entries were truncated.
    """
    from audit.trail import read_checkpoints
    from audit.witness import read_witness

    exported = []
    for path in against:
        try:
            exported += read_checkpoints(_read_json(path))
        except ValueError as exc:
            _fail(f"{path}: {exc}")
    trail = _trail(public_keys)
    witnessed = []
    configured = get_settings().audit_witness_file
    witness = witness_path or (None if no_witness else configured)
    if witness is not None:
        if not witness.exists():
            if witness_path is not None:
                _fail(f"{witness}: no such witness file")
            click.echo(f"note: the witness file {witness} does not exist yet", err=True)
        else:
            seen = read_witness(witness, trail.verifier)
            for problem in seen.rejected[:5]:
                click.echo(f"warning: witness {witness}: {problem}", err=True)
            if seen.newest is not None:
                witnessed.append(seen.newest)
    report = _run(
        lambda: trail.verify(incremental=incremental, against=exported, witnessed=witnessed)
    )
    if not report.ok:
        where = f"first bad entry: {report.first_bad_seq}: " if report.first_bad_seq else ""
        _fail(
            f"audit log is NOT intact ({report.mode} check): {where}{report.problem} "
            f"({report.checked} entries verified before it)"
        )
    head = report.head
    click.echo(
        f"audit log intact ({report.mode} check): {report.checked} entries recomputed, "
        f"{report.heads_checked} signed heads checked"
        + (
            f", {report.external_heads_checked} heads kept outside the database matched"
            if exported or witnessed
            else ""
        )
        + ("" if report.macs_checked else " (entry MACs not checked: no MAC key here)")
    )
    if head is not None:
        click.echo(
            f"latest signed head: {head.tree_size} entries, root {head.root_hash}, "
            f"signed {head.signed_at:%Y-%m-%d %H:%M:%S} UTC by key {head.key_id}"
        )
    if report.unsealed:
        click.echo(
            f"note: {report.unsealed} newest entries are not under a signed head yet "
            "(a running server seals them within a second; or run `consentry audit seal`)"
        )


@audit.command("seal")
def audit_seal() -> None:
    """Sign a tree head over every event so far (a running server does this by itself)."""
    from audit.trail import SealRefused

    trail = _trail(need_signer=True)
    try:
        head = _run(trail.seal_all)
    except SealRefused as exc:
        _fail(f"refusing to seal: {exc}; run `consentry audit verify`")
    if head is None:
        click.echo("the audit log is empty: nothing to seal")
    else:
        click.echo(f"signed head over {head.tree_size} entries, root {head.root_hash}")


@audit.command("prove")
@click.argument("seq", type=click.IntRange(min=1))
@click.option("--size", type=click.IntRange(min=1), help="Prove under the head of this size.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON proof to this file instead of standard output.",
)
@PUBLIC_KEY_OPTION
def audit_prove(
    seq: int, size: int | None, output: Path | None, public_keys: tuple[Path, ...]
) -> None:
    """Print an inclusion proof (RFC 6962) that entry SEQ is in the signed log."""
    trail = _trail(public_keys)
    try:
        proof = _run(lambda: trail.inclusion(seq, size))
    except LookupError as exc:
        _fail(str(exc))
    if not proof["verified"]:
        _write_json(proof, output)
        _fail(f"the proof for entry {seq} does NOT verify: run `consentry audit verify`")
    _write_json(proof, output)


@audit.command("consistency")
@click.argument("old_size", type=click.IntRange(min=1))
@click.argument("new_size", type=click.IntRange(min=1), required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON proof to this file instead of standard output.",
)
@PUBLIC_KEY_OPTION
def audit_consistency(
    old_size: int, new_size: int | None, output: Path | None, public_keys: tuple[Path, ...]
) -> None:
    """Print a consistency proof that the head over NEW_SIZE (default: the latest) extends
    the head over OLD_SIZE: nothing before OLD_SIZE was changed in between."""
    trail = _trail(public_keys)
    try:
        proof = _run(lambda: trail.consistency(old_size, new_size))
    except LookupError as exc:
        _fail(str(exc))
    _write_json(proof, output)
    if not proof["verified"]:
        _fail("the consistency proof does NOT verify: run `consentry audit verify`")


@audit.group("checkpoints")
def audit_checkpoints() -> None:
    """Signed tree heads, for an external witness."""


@audit_checkpoints.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The JSON file to write.",
)
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    help="Only heads over more than this many entries.",
)
def audit_checkpoints_export(output: Path, after: int) -> None:
    """Write the signed heads (and the public key) to a JSON file to keep elsewhere.

    Later, `consentry audit verify --against FILE` proves the log still contains exactly
    what these heads covered, even if someone also deleted heads from the database.
    """
    trail = _trail()
    doc = _run(lambda: trail.export_checkpoints(after))
    _write_json(doc, output)
    click.echo(f"exported {len(doc['heads'])} signed heads")


@audit_checkpoints.command("list")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=10_000),
    default=20,
    show_default=True,
    help="How many heads to show, newest first.",
)
def audit_checkpoints_list(limit: int) -> None:
    """Show the newest signed heads."""
    trail = _trail()
    doc = _run(lambda: trail.export_checkpoints(0))
    heads = doc["heads"][-limit:]
    if not heads:
        click.echo("no signed heads yet")
    for head in reversed(heads):
        click.echo(
            f"{head['tree_size']:>10}  {head['signed_at']}  {head['root_hash']}  "
            f"key {head['key_id']}"
        )


@audit.command("verify-slice")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@PUBLIC_KEY_OPTION
def audit_verify_slice(file: Path, public_keys: tuple[Path, ...]) -> None:
    """Check an exported audit slice offline: the head's signature and every event's
    inclusion proof. Needs no database."""
    from audit.trail import verify_slice

    trail = _trail(public_keys)
    report = verify_slice(_read_json(file), trail.verifier)
    if not report.ok:
        more = len(report.problems) - 1
        _fail(
            f"slice does NOT verify: {report.problems[0]}"
            + (f" (and {more} more problem(s))" if more else "")
        )
    size = report.head.tree_size if report.head else 0
    click.echo(f"slice verifies: {report.events} events proven under the head over {size} entries")


@audit.group("alerts")
def audit_alerts() -> None:
    """Alert rules over the audit log (bulk reads, off hours, denials, large exports)."""


@audit_alerts.command("run")
def audit_alerts_run() -> None:
    """Evaluate the alert rules over new audit events now (servers do this every 30 s)
    and e-mail any new alerts to CONSENTRY_ALERT_RECIPIENTS."""
    services = _services(get_settings())
    raised = _run(services.alerts.evaluate)
    click.echo(f"{len(raised)} new alert(s)")
    for alert in raised:
        click.echo(
            f"  #{alert.id} {alert.rule_name}: {alert.actor_id} ({alert.actor_role}), "
            f"{alert.matched} {alert.unit}; e-mail: {alert.email_status}"
        )


@audit_alerts.command("list")
@click.option(
    "--state",
    type=click.Choice(["open", "acknowledged", "all"]),
    default="open",
    show_default=True,
    help="Which alerts to show.",
)
def audit_alerts_list(state: str) -> None:
    """Show alerts, newest first (acknowledge them in the compliance console)."""
    services = _services(get_settings())
    page = _run(lambda: services.alerts.list_alerts(state=state))
    click.echo(f"{page.total} {state} alert(s); {page.open_total} open in all")
    for alert in page.items:
        status = "open" if alert.is_open else f"acknowledged: {alert.acknowledgement_label}"
        click.echo(
            f"  #{alert.id} {alert.created_at:%Y-%m-%d %H:%M} {alert.rule_name}: "
            f"{alert.actor_id} ({alert.actor_role}), {alert.matched} {alert.unit} [{status}]"
        )


@audit.command("export-log")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the JSON lines (entries and checkpoint rows, nothing personal).",
)
def audit_export_log(output: Path) -> None:
    """Export the whole trail for the standalone verifier (docs/audit-format.md)."""
    import json

    trail = _trail()

    async def write() -> int:
        lines = 0
        with output.open("w", encoding="ascii") as handle:
            async for doc in trail.export_log():
                handle.write(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
                lines += 1
        return lines

    lines = _run(write)
    click.echo(f"wrote {output} ({lines} lines)", err=True)


@audit.command("mac-existing")
def audit_mac_existing() -> None:
    """Once, after upgrading: vouch for the entries written before entry MACs existed.

    Verifies the whole log first; then appends one MAC'd entry recording how many entries
    carry no MAC and their Merkle root. Run it after every server runs the new version."""
    from server import db

    trail = _trail(need_signer=True)
    services = _services(get_settings())

    async def vouch() -> tuple[int, int]:
        event = await trail.legacy_baseline()
        async with db.write_transaction():
            seq = await services.audit.append(event)
        return seq, int(event.detail["legacy_upto"])

    try:
        seq, upto = _run(vouch)
    except ValueError as exc:
        _fail(f"not vouching: {exc}")
    click.echo(f"entries 1-{upto} (written before MACs) vouched for by entry {seq}")


@audit.command("mac-key")
def audit_mac_key() -> None:
    """Print the entry-MAC key (base64) for an auditor's `audit/standalone_verify.py --mac-key`.

    Whoever holds it can make entries that pass the MAC check (not signed heads): give it
    only to someone you would let check the log with the server's own keys."""
    import base64

    trail = _trail(need_signer=True)
    click.echo("warning: this is a secret key; see `consentry audit mac-key --help`", err=True)
    click.echo(base64.b64encode(trail.mac.key).decode())


@audit.command("public-key")
def audit_public_key() -> None:
    """Print the public key that verifies signed heads (give it to auditors and witnesses)."""
    trail = _trail(need_signer=True)
    click.echo(trail.public_key_b64)


# --- data-subject requests -----------------------------------------------------------------


@cli.group()
def dsr() -> None:
    """Data-subject requests: the request queue and signed export bundles (access and
    portability)."""


@dsr.command("export")
@click.argument("subject")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The ZIP file to write (an existing file is never overwritten).",
)
def dsr_export(subject: str, output: Path) -> None:
    """Write everything held about data subject SUBJECT (a UUID) to a signed ZIP: data.json,
    one CSV per record type, index.html and a signed manifest. Audited as dsr.export."""
    from server.dsr.export import InvalidSubject, NoRecords, build_export

    if output.exists():
        _fail(f"{output} already exists; refusing to overwrite it")
    services = _services(get_settings())

    async def go() -> Any:
        bundle = await build_export(services, subject, requested_by="system:cli")
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return bundle

    try:
        bundle = _run(go)
    except (InvalidSubject, NoRecords) as exc:
        _fail(str(exc))
    try:
        with output.open("xb") as handle:
            handle.write(bundle.zip_bytes)
    except OSError as exc:
        _fail(f"{output}: cannot write the file ({exc.strerror or type(exc).__name__})")
    records = ", ".join(f"{n} {t}" for t, n in sorted(bundle.records.items()))
    click.echo(
        f"wrote {output}: {records}, {bundle.consent_events} consent event(s), "
        f"{bundle.accesses} logged access(es); signed by key {bundle.key_id}"
    )
    withheld = ", ".join(f"{n} {t}" for t, n in sorted(bundle.withheld.items()))
    click.echo(
        f"other people withheld from: {withheld or 'no record'}; "
        f"{bundle.mentions} mention(s) of the person in other people's records included"
    )


@dsr.command("list")
@click.option(
    "--overdue",
    is_flag=True,
    help="Only open requests whose deadline (extended or not) has passed.",
)
def dsr_list(overdue: bool) -> None:
    """List data-subject requests, soonest deadline first: id, kind, state, received and
    due dates (UTC), and OVERDUE for open requests past their deadline."""
    services = _services(get_settings())

    async def go() -> Any:
        return await services.requests.queue(overdue_only=overdue)

    requests = _run(go)
    if not requests:
        click.echo("no overdue requests" if overdue else "no requests")
        return
    for r in requests:
        flag = "  OVERDUE" if r.overdue else ""
        click.echo(
            f"{r.id}  {r.kind:<13}  {r.state:<9}  received {r.received_at:%Y-%m-%d}  "
            f"due {r.deadline:%Y-%m-%d}{flag}"
        )


@dsr.command("verify-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@PUBLIC_KEY_OPTION
def dsr_verify_export(file: Path, public_keys: tuple[Path, ...]) -> None:
    """Check an export bundle offline: the manifest's signature by a trusted key and the
    SHA-256 of every file; extra or missing files fail. Needs no database."""
    from server.dsr.export import verify_export

    trail = _trail(public_keys)
    try:
        content = file.read_bytes()
    except OSError as exc:
        _fail(f"{file}: cannot read the file ({exc.strerror or type(exc).__name__})")
    report = verify_export(content, trail.verifier)
    if not report.ok:
        more = len(report.problems) - 1
        _fail(
            f"export does NOT verify: {report.problems[0]}"
            + (f" (and {more} more problem(s))" if more else "")
        )
    click.echo(f"export verifies: {report.files} files (signed by key {report.key_id})")


# --- erasure, restriction, legal holds, retention -------------------------------------------


@dsr.command("erase")
@click.argument("subject")
@click.option("--request", "request_id", default=None, help="The erasure request this carries out.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dsr_erase(subject: str, request_id: str | None, yes: bool) -> None:
    """Erase data subject SUBJECT (a UUID): scrub mentions of them from other records, turn
    their records into tombstones and shred their key. Records under a legal hold are kept
    and the person restricted. Safe to run again: it resumes, or does nothing."""
    from server.dsr.erasure import ErasureError
    from server.gateway import GatewayError

    services = _services(get_settings())
    if not yes and not click.confirm(
        f"Erase data subject {subject}? This cannot be undone", default=False
    ):
        _fail("erasure cancelled; nothing was changed")

    async def go() -> Any:
        if request_id is not None:
            await services.requests.get(request_id)
        result = await services.erasure.erase(subject, by="system:cli", request_id=request_id)
        await services.audit_trail.seal_all()
        return result

    from server.dsr.requests import RequestError
    from server.vault.register import RegisterError

    try:
        result = _run(go)
    except (ErasureError, RequestError) as exc:
        _fail(exc.message)
    except GatewayError as exc:
        _fail(exc.message)
    except RegisterError as exc:
        _fail(f"{exc}; nothing was shredded, run the erasure again once it can be written")
    if result.already_done:
        click.echo(f"{result.subject_id}: already erased; nothing to do")
        return
    for resource, count in sorted(result.erased.items()):
        click.echo(f"erased {resource}: {count}")
    click.echo(f"mentions removed from {result.mentions} other record(s)")
    for hold in result.holds:
        click.echo(
            f"held: {hold.scope} records until {hold.held_until:%Y-%m-%d} ({hold.reason}); "
            "the person is restricted"
        )
    click.echo("erasure complete" if result.complete else "erasure waits for the holds to end")


@dsr.group("holds")
def dsr_holds() -> None:
    """Legal holds: records kept despite an erasure request (tax records, contracts,
    litigation) until a date; the person is restricted meanwhile."""


@dsr_holds.command("add")
@click.argument("subject")
@click.option("--scope", default="all", show_default=True, help="A record type, or all.")
@click.option(
    "--reason", required=True, help="tax_records, contract, litigation or regulatory_inquiry."
)
@click.option(
    "--until", "until", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The last day of the hold (YYYY-MM-DD).",
)  # fmt: skip
def dsr_holds_add(subject: str, scope: str, reason: str, until: Any) -> None:
    """Keep SUBJECT's records of SCOPE until a date, for a reason code. Audited."""
    from server.dsr.holds import HoldError

    services = _services(get_settings())

    async def go() -> Any:
        return await services.erasure.holds.add(
            subject, scope, reason, until.date(), by="system:cli"
        )

    try:
        hold = _run(go)
    except HoldError as exc:
        _fail(exc.message)
    click.echo(f"hold {hold.id} on {hold.scope} records until {hold.held_until:%Y-%m-%d}")


@dsr_holds.command("list")
@click.option("--all", "everything", is_flag=True, help="Include released and ended holds.")
def dsr_holds_list(everything: bool) -> None:
    """List legal holds: id, subject, scope, reason, last day, and whether released."""
    services = _services(get_settings())

    async def go() -> Any:
        return await services.erasure.holds.all(include_ended=everything)

    holds = _run(go)
    if not holds:
        click.echo("no holds" if everything else "no active holds")
    for hold in holds:
        state = "  released" if hold.released_at else ""
        click.echo(
            f"{hold.id}  {hold.subject_id}  {hold.scope:<12}  {hold.reason:<18}  "
            f"until {hold.held_until:%Y-%m-%d}{state}"
        )


@dsr_holds.command("release")
@click.argument("hold_id")
def dsr_holds_release(hold_id: str) -> None:
    """End hold HOLD_ID now; the next retention run finishes any erasure it held back."""
    from server.dsr.holds import HoldError

    services = _services(get_settings())

    async def go() -> Any:
        return await services.erasure.holds.release(hold_id, by="system:cli")

    try:
        hold = _run(go)
    except HoldError as exc:
        _fail(exc.message)
    click.echo(f"hold {hold.id} released")


@dsr.command("restrict")
@click.argument("subject")
@click.option(
    "--reason", default="data_subject_request", show_default=True,
    help="accuracy_contested, unlawful_processing, legal_claims, objection_pending, ...",
)  # fmt: skip
@click.option("--request", "request_id", default=None, help="The request this carries out.")
def dsr_restrict(subject: str, reason: str, request_id: str | None) -> None:
    """Restrict processing of SUBJECT (Art. 18): their records are kept but left out of
    every list and refused to every purpose but compliance, until lifted."""
    from server.dsr.restriction import RestrictionError

    services = _services(get_settings())

    async def go() -> Any:
        return await services.erasure.restrictions.restrict(
            subject, reason, by="system:cli", request_id=request_id
        )

    try:
        restriction = _run(go)
    except RestrictionError as exc:
        _fail(exc.message)
    click.echo(f"{restriction.subject_id} restricted since {restriction.since:%Y-%m-%d %H:%M}")


@dsr.command("unrestrict")
@click.argument("subject")
def dsr_unrestrict(subject: str) -> None:
    """Lift every restriction of SUBJECT: their records are processed normally again."""
    from server.dsr.restriction import RestrictionError

    services = _services(get_settings())

    async def go() -> Any:
        return await services.erasure.restrictions.lift(subject, by="system:cli")

    try:
        lifted = _run(go)
    except RestrictionError as exc:
        _fail(exc.message)
    if not lifted:
        _fail("this subject is not restricted")
    click.echo(f"{subject}: {lifted} restriction(s) lifted")


@cli.group()
def retention() -> None:
    """Retention rules (server/dsr/retention.py): erase or anonymise what is past its
    period, and finish erasures whose legal holds have ended."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Report what would happen; change nothing.")
def retention_run(dry_run: bool) -> None:
    """Apply every retention rule now and print, per rule, how many records matched, were
    erased or anonymised, or are held. Audited as system:retention."""
    from rich.console import Console
    from rich.progress import Progress

    services = _services(get_settings())
    console = Console(stderr=True)

    async def go() -> Any:
        with Progress(console=console, transient=True) as bar:
            tasks: dict[str, Any] = {}

            def advance(rule: str, done: int, total: int) -> None:
                if rule not in tasks:
                    tasks[rule] = bar.add_task(rule, total=total)
                bar.update(tasks[rule], completed=done, total=total)

            report = await services.retention.run(dry_run=dry_run, progress=advance)
        await services.audit_trail.seal_all()
        return report

    report = _run(go)
    verb = "would erase" if dry_run else "erased"
    click.echo(("dry run: nothing was changed\n" if dry_run else "") + "rule: matched / "
               f"{verb} / anonymised / held")  # fmt: skip
    for line in report.rules:
        click.echo(
            f"{line.rule} ({line.action} {line.resource}): {line.matched} matched, "
            f"{line.erased} {verb}, {line.anonymised} anonymised, {line.held} held"
        )


# --- import and export (server/csvio) --------------------------------------------------------


class UnusableInput(click.ClickException):
    """The file or the options cannot be used at all: exit code 2, one line."""

    exit_code = 2


async def _cli_actor(services: Any, email: str | None, job: str, team: str = "") -> Any:
    """The staff account named by ``--as`` (active), or the system actor for ``job``."""
    from server.gateway import Actor

    if not email:
        return Actor.system(job, team)
    identity = await services.accounts.find_by_email(email)
    found = identity and await services.accounts.get_user(identity.user_id)
    if not found or not found[1]:
        raise UnusableInput(f"--as: no active staff account {email}")
    return Actor.staff(identity.user_id, identity.role, identity.team, f"cli-{job}")


def _import_command(resource: str, plural: str) -> click.Command:
    @click.command(plural)
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
    @click.option(
        "--map",
        "mappings",
        multiple=True,
        metavar="COLUMN=FIELD",
        help="Map a column to a field (repeatable), e.g. --map 'E-mail=email'; FIELD '-' "
        "skips the column.",
    )
    @click.option("--as", "as_email", metavar="EMAIL", help="Import as this staff account.")
    @click.option(
        "--owner",
        metavar="EMAIL",
        help="Staff account that owns the new records (default: the --as account; without "
        "--as, nobody until assigned).",
    )
    @click.option("--team", default=None, help="Team of the new records (default: the owner's).")
    @click.option(
        "--report",
        "report_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write every bad or skipped row to this CSV file (line, field, reason).",
    )
    def command(
        file: Path,
        dry_run: bool,
        mappings: tuple[str, ...],
        as_email: str | None,
        owner: str | None,
        team: str | None,
        report_file: Path | None,
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        from server.csvio.importer import (
            PURPOSE,
            ImportRefused,
            import_rows,
            parse_mapping,
            read_rows,
            record_type,
            write_report,
        )
        from server.gateway import GatewayError

        try:
            content = file.read_bytes()
        except OSError as exc:
            raise UnusableInput(
                f"{file}: cannot read the file ({exc.strerror or type(exc).__name__})"
            ) from None
        rt = record_type(resource)
        try:
            mapping = parse_mapping(mappings, rt)
        except ImportRefused as exc:
            raise UnusableInput(str(exc)) from None
        services = _services(get_settings())
        console = Console(stderr=True)

        async def go() -> Any:
            actor = await _cli_actor(services, as_email, "import")
            owner_id = None
            owner_team = team
            if owner:
                identity = await services.accounts.find_by_email(owner)
                if identity is None:
                    raise UnusableInput(f"--owner: no staff account {owner}")
                owner_id = identity.user_id
                owner_team = team if team is not None else identity.team
            settable = services.gateway.permitted_fields(actor, resource, "create", purpose=PURPOSE)
            if settable is None:
                raise UnusableInput(f"{actor.role} may not create {plural}")
            try:
                plan, rows = read_rows(content, rt, mapping, settable)
            except ImportRefused as exc:
                raise UnusableInput(f"{file}: {exc} {exc.hint}".rstrip()) from None
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.completed}/{task.total} rows"),
            )
            with Progress(*columns, console=console) as bar:
                task = bar.add_task(f"Importing {plural}", total=len(rows))
                try:
                    report = await import_rows(
                        services.gateway,
                        actor,
                        resource,
                        plan,
                        rows,
                        dry_run=dry_run,
                        owner_id=owner_id,
                        team=owner_team,
                        progress=lambda n: bar.advance(task, n),
                    )
                except GatewayError as exc:
                    raise UnusableInput(exc.message) from None
            await services.audit_trail.seal_all()  # no server may be running to seal it
            return report

        report = _run(go)
        for column, why in report.ignored_columns.items():
            click.echo(f"column {column!r} ignored: {why}")
        for problem in report.problems:
            where = f" {problem.field}:" if problem.field else ""
            click.echo(f"  line {problem.line}:{where} {problem.reason}")
        prefix = "dry run, nothing written: " if dry_run else ""
        click.echo(f"{prefix}{report.summary()} ({report.rate()}, {report.seconds:.1f} s)")
        if report_file is not None:
            with report_file.open("w", newline="", encoding="utf-8") as handle:
                write_report(report, handle)
            click.echo(f"report written to {report_file}")
        if not report.ok:
            sys.exit(1)

    command.help = (
        f"Import {plural} from a CSV file (UTF-8, header on line 1).\n\n"
        "Columns are matched to fields by name or label (case and spaces ignored); unknown "
        "columns are reported and ignored. Bad rows are reported by line and reason and "
        "not imported; rows already on file (same natural key) are skipped, so importing "
        "a file twice creates nothing new. Exit code 0: every row good; 1: some rows bad; "
        "2: the file or options cannot be used."
    )
    return command


@cli.group("import")
def import_group() -> None:
    """Import contacts, organizations or leads from CSV files.

    See docs/import-export.md for column mapping, the report and idempotency.
    """


for _resource, _plural in (
    ("contact", "contacts"),
    ("organization", "organizations"),
    ("lead", "leads"),
):
    import_group.add_command(_import_command(_resource, _plural))

EXPORTABLE = {
    "contacts": "contact",
    "organizations": "organization",
    "leads": "lead",
    "deals": "deal",
    "interactions": "interaction",
    "cases": "case",
}


@cli.command("export")
@click.argument("kind", type=click.Choice(sorted(EXPORTABLE)))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The CSV file to write (replaced only once the export is complete).",
)
@click.option(
    "--reason",
    default="",
    help="Why the data leaves the system, one of: reporting, campaign_planning, "
    "data_migration, backup, account_handover, audit_request.",
)
@click.option("--as", "as_email", metavar="EMAIL", help="Export as this staff account.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Only records whose filterable FIELD equals VALUE (repeatable).",
)
def export_records(
    kind: str, output: Path, reason: str, as_email: str | None, filters: tuple[str, ...]
) -> None:
    """Export records to CSV: only the records and fields the actor may read.

    Policy-gated (the role needs the export right), requires a reason, and is audited as
    an export with the row count and the field names. Cells that a spreadsheet would run
    as a formula are prefixed with a quote.
    """
    import tempfile

    import anyio

    from server.csvio.exporter import csv_chunks
    from server.gateway import GatewayError

    wanted: dict[str, str] = {}
    for item in filters:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UnusableInput(f"--filter {item!r}: expected FIELD=VALUE")
        wanted[name.strip()] = value.strip()
    services = _services(get_settings())
    try:
        fd, temporary = tempfile.mkstemp(
            prefix=".export-", suffix=".csv", dir=output.resolve().parent
        )  # mode 0600: customer data, readable by the operator only
        os.close(fd)
    except OSError as exc:
        _fail(f"{output}: cannot write the file ({exc.strerror or type(exc).__name__})")

    async def go() -> int:
        actor = await _cli_actor(services, as_email, "export")
        export = await services.gateway.start_export(
            actor, EXPORTABLE[kind], reason=reason, filters=wanted
        )
        async with await anyio.open_file(temporary, "w", newline="", encoding="utf-8") as handle:
            async for chunk in csv_chunks(export):
                await handle.write(chunk)
        await services.audit_trail.seal_all()
        return int(export.rows)

    try:
        rows = _run(go)
        os.replace(temporary, output)  # the file appears only once it is complete
    except GatewayError as exc:
        _fail(exc.message)
    except OSError as exc:
        _fail(f"{output}: cannot write the file ({exc.strerror or type(exc).__name__})")
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    click.echo(f"exported {rows} {kind} to {output}")


def main() -> None:
    try:
        cli(prog_name="consentry")
    except ConfigurationError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


# --- analytics: customer scores under profiling (docs/analytics-scores.md) -------------------


@cli.group()
def analytics() -> None:
    """Customer value and churn scores (docs/analytics-scores.md)."""


@analytics.command("score")
def analytics_score() -> None:
    """Score every customer with a basis for profiling, now.

    Reads deals, interactions and cases of the people who consented to profiling (and
    did not object) through the gateway, trains the churn model on their history, and
    stores each person's scores sealed under their key; scores of people without a basis
    are deleted. The server does the same once a day. Audited per batch of people.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    services = _services(get_settings())
    console = Console(stderr=True)

    async def go() -> Any:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("people"),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("Scoring", total=None)
            run = await services.analytics.score_all(
                progress=lambda done, total: bar.update(task, completed=done, total=total)
            )
        await services.audit_trail.seal_all()
        return run

    run = _run(go)
    auc = "n/a (too little history)" if run.validation_auc is None else f"{run.validation_auc:.3f}"
    click.echo(
        f"scored {run.scored} people, removed {run.removed} stale score(s) in "
        f"{run.seconds:.1f} s; churn model trained on {run.trained_on}, held-out ROC AUC {auc}"
    )


@analytics.command("validate")
@click.option(
    "--generate",
    "people",
    default=5000,
    show_default=True,
    type=click.IntRange(100, 1_000_000),
    help="How many customers to generate.",
)
@click.option("--seed", default=20, show_default=True, type=int, help="Random seed.")
def analytics_validate(people: int, seed: int) -> None:
    """Reproduce the churn model's held-out ROC AUC on a generated customer base.

    No database is touched: the customers are generated with a fixed seed, the model is
    trained on three quarters of them (their history as it stood 180 days ago) and the
    ROC AUC on the held-out quarter is printed - the figure in docs/analytics-scores.md.
    """
    import datetime as dt

    from server.analytics import model

    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    scoring = model.score_everyone(model.generated_people(people, now, seed), now, seed)
    if scoring.model is None or scoring.model.validation_auc is None:
        _fail("too little history to train the churn model; generate more customers")
    assert scoring.model is not None
    assert scoring.model.validation_auc is not None
    click.echo(
        f"customers: {len(scoring.scores)}; trained on: {scoring.model.trained_on}; "
        f"held-out ROC AUC: {scoring.model.validation_auc:.3f}"
    )


# --- mail: mailbox capture (docs/mail-capture.md) --------------------------------------------


@cli.group()
def mail() -> None:
    """Mailbox capture: sync connected mailboxes and run the SMTP receiver."""


@mail.command("sync")
@click.option(
    "--max-messages",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="At most this many new messages per mailbox in this run.",
)
def mail_sync(max_messages: int) -> None:
    """Sync every connected mailbox now (the server does it in the background).

    New messages are fetched by UID above each mailbox's watermark, matched to contacts
    and leads by their e-mail address, and filed under each person's key; mail nobody
    matched leaves no trace. Prints counts only.
    """
    from server.mailcapture.jobs import sync_all

    services = _services(get_settings())

    async def go() -> Any:
        totals = await sync_all(services, max_messages=max_messages)
        await services.audit_trail.seal_all()
        return totals

    totals = _run(go)
    click.echo(
        f"mailboxes: {totals.mailboxes}; messages seen: {totals.seen}; "
        f"captured: {totals.captured}; mailboxes failed: {totals.failed}"
    )
    if totals.failed:
        sys.exit(1)


@mail.command("receive")
def mail_receive() -> None:
    """Run the SMTP receiver for the logging address until interrupted.

    Needs CONSENTRY_SMTP_RECEIVER_PORT (and CONSENTRY_CAPTURE_ADDRESS for the logging
    address); every other recipient is refused with 550. `consentry serve` starts the
    same receiver in one of its workers.
    """
    import asyncio

    from server.mailcapture.jobs import start_receiver

    settings = get_settings()
    if not settings.smtp_receiver_port:
        _fail("CONSENTRY_SMTP_RECEIVER_PORT is not set: the SMTP receiver is off")
    services = _services(settings)

    async def go() -> None:
        server = await start_receiver(services)
        assert server is not None
        click.echo(
            f"receiving on {settings.smtp_receiver_host}:{settings.smtp_receiver_port} "
            "(Ctrl-C to stop)"
        )
        try:
            await asyncio.Event().wait()
        finally:
            server.close()

    try:
        _run(go)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        _fail(f"cannot listen on port {settings.smtp_receiver_port} ({exc.strerror or 'in use'})")


# --- calendar import (issue 21, item 2: server.calendar) -----------------------------------


@cli.group("calendar")
def calendar_group() -> None:
    """Meetings from iCalendar files or CalDAV calendars (docs/calendar.md)."""


@calendar_group.command("import")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--url", default=None, help="Fetch the calendar from this URL instead of a FILE.")
@click.option(
    "--as", "as_email", required=True, metavar="EMAIL", help="Import as this staff account."
)
def calendar_import_command(file: Path | None, url: str | None, as_email: str) -> None:
    """Import the meetings of an .ics FILE (or --url) as meeting interactions.

    Attendees are matched by e-mail address to the contacts (else leads) the --as account
    may search for; each matched contact gets a meeting interaction, a matched lead a note.
    Importing again updates instead of duplicating; cancelled events are removed.
    Exit code 0: imported; 2: the file, URL or options cannot be used (nothing written).
    """
    from server.calendar.ics import CalendarError
    from server.calendar.service import calendar_import
    from server.gateway import GatewayError

    if (file is None) == (url is None):
        raise UnusableInput("give either FILE or --url")
    content = b""
    if file is not None:
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise UnusableInput(
                f"{file}: cannot read the file ({exc.strerror or type(exc).__name__})"
            ) from None
    services = _services(get_settings())

    async def go() -> Any:
        actor = await _cli_actor(services, as_email, "calendar-import")
        importer = calendar_import(services)
        try:
            if url is not None:
                report = await importer.import_url(actor, url)
            else:
                report = await importer.import_ics(actor, content)
        except CalendarError as exc:
            raise UnusableInput(f"nothing imported: {exc}") from None
        except GatewayError as exc:
            raise UnusableInput(f"nothing imported: {exc.message}") from None
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return report

    click.echo(_run(go).summary())


cli.add_command(desk_group)  # consentry desk ... (server/servicedesk/cli.py)


# --- mentions: the index erasure and exports find a person's mentions through (docs/dsr.md) --


def _mention_index_complete(services: Any) -> bool:
    from server.gateway import mention_index

    return _run(lambda: mention_index.is_complete(services.gateway))


def _reindex_mentions(services: Any, batch_size: int = 500) -> dict[str, int]:
    """Index every record's free text with a progress bar on stderr; audited, sealed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from server.gateway import Actor, mention_index

    console = Console(stderr=True)

    async def go() -> dict[str, int]:
        total = await mention_index.count_records()
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("records"),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("Indexing mentions", total=total)
            done = await mention_index.rebuild_all(
                services.gateway,
                Actor.system("mentions-reindex"),
                batch_size=batch_size,
                progress=lambda n: bar.advance(task, n),
            )
        await services.audit_trail.seal_all()
        return dict(done)

    done = _run(go)
    click.echo(
        "mention index rebuilt: " + ", ".join(f"{n} {resource}(s)" for resource, n in done.items())
    )
    return done


@cli.group()
def mentions() -> None:
    """The mention index: how erasure and subject exports find a person named in other
    people's free text without reading the whole database (docs/dsr.md)."""


@mentions.command("reindex")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Records re-indexed per transaction.",
)
def mentions_reindex(batch_size: int) -> None:
    """Recompute the mention tokens of every record's free text.

    Needed once for records written before the mention index existed (`consentry
    migrate` and `consentry serve` run it by themselves then), and after restoring a
    database from parts or changing the index key. Until it has finished, erasure and
    subject exports read every free text, as they did before the index. Online and
    resumable: each batch replaces its records' tokens in one transaction; run it again
    if it stops. Reads and decrypts every free text; audited per record type with the
    count, never a value.
    """
    from server.vault import MasterKeyMissing

    services = _services(get_settings())
    try:
        _reindex_mentions(services, batch_size)
    except (MasterKeyMissing, OSError) as exc:
        _fail(f"reindex stopped: {exc}; run `consentry mentions reindex` again to finish it")


@mentions.command("status")
def mentions_status() -> None:
    """Say whether the mention index is complete (erasure and exports use it) or not yet
    (they read every free text until `consentry mentions reindex` has run)."""
    from server.gateway import mention_index

    services = _services(get_settings())
    tokens, records = _run(mention_index.size)
    if _mention_index_complete(services):
        click.echo(
            "mention index: complete (erasure and exports look mentions up in it); "
            f"{tokens} token(s) for {records} record(s)"
        )
    else:
        click.echo(
            "mention index: incomplete (erasure and exports read every free text); "
            "run `consentry mentions reindex`"
        )


if __name__ == "__main__":
    main()
