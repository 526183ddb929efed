"""``consentry backup`` and ``consentry restore`` (docs/backups.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from server.cli.runtime import describe_url, fail, load_services, output_option, run_with_database
from server.settings import get_settings


@click.command("backup")
@output_option("The backup file to write (mode 600; an existing file is never overwritten).")
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
        fail(str(exc))
    click.echo(f"backed up the {result.engine} database to {output} ({result.size} bytes)")


@click.command("restore")
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
    services = load_services(settings)
    register = services.gateway.vault.register
    try:
        entries = register.entries()
    except RegisterError as exc:
        fail(str(exc))
    if not yes and not click.confirm(
        f"Replace the database {describe_url(settings.resolved_database_url)} with {file}?",
        default=False,
    ):
        fail("restore cancelled; nothing was changed")
    try:
        restore_database(settings.resolved_database_url, file)
    except BackupError as exc:
        fail(f"restore failed: {exc}")
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
        report = run_with_database(go)
    except MigrationFailed as exc:
        fail(f"restored, but migrations failed: {exc}")
    click.echo(
        f"restored {file}; erasure register: {report.erased} erased again, "
        f"{report.shredded} key(s) shredded, {report.held} held, {report.already} already erased"
    )
    if report.failed:
        fail(
            f"{len(report.failed)} erasure(s) could not be re-applied (first: "
            f"{report.failed[0]}); do not start the server until `consentry dsr erase` "
            "succeeds for each"
        )
