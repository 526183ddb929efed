"""``consentry keys ...``: the master key (key-encryption key), its rotation and pruning,
the audit signing key and the session secret.
"""

from __future__ import annotations

from typing import Any

import click

from server.cli.runtime import fail, load_services, run_with_database
from server.settings import get_settings


@click.group()
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
        fail(
            f"{path} already exists (and {signing}); refusing to overwrite keys that data "
            "and signed heads depend on"
        )
    click.echo("created " + ", ".join(created) + " (mode 600)")


def _key_rotation(services: Any) -> Any:
    rotation = services.key_rotation
    if rotation is None:
        fail(
            "the master key comes from CONSENTRY_MASTER_KEY, which holds one version: "
            "move to a key file (CONSENTRY_MASTER_KEY_FILE) to rotate or prune"
        )
    return rotation


@keys.command("status")
def keys_status() -> None:
    """List the KEK versions in the key file: active or retired, when, and how many data
    keys each still wraps. Prints no key material."""
    from server.vault import MasterKeyMissing

    services = load_services(get_settings())
    rotation = _key_rotation(services)
    try:
        versions = run_with_database(rotation.versions)
    except MasterKeyMissing as exc:
        fail(str(exc))
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

    services = load_services(get_settings())
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
        report = run_with_database(go)
    except (RotationError, MasterKeyMissing, OSError) as exc:
        fail(f"rotation stopped: {exc}; run `consentry keys rotate` again to finish it")
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

    services = load_services(get_settings())
    rotation = _key_rotation(services)
    retention = dt.timedelta(days=services.settings.backup_retention_days)

    async def go() -> Any:
        report = await rotation.prune(retention, dry_run=dry_run)
        await services.audit_trail.seal_all()
        return report

    try:
        report = run_with_database(go)
    except (RotationError, MasterKeyMissing, OSError) as exc:
        fail(f"prune stopped: {exc}")
    verb = "would destroy" if dry_run else "destroyed"
    click.echo(f"{verb} KEK version(s): {', '.join(report.destroyed) or 'none'}")
    for kek_id, until in report.kept:
        click.echo(f"kept {kek_id} until {until} (backup retention)")
