"""``consentry consent ...``: consent evidence imported for existing contacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from server.cli.runtime import fail, load_services, run_with_database
from server.settings import get_settings


@click.group()
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
        fail(f"{file}: cannot read the file ({exc.strerror or type(exc).__name__})")
    try:
        rows = read_csv(content)
    except ImportRefused as exc:
        fail(f"{file}: {exc}")
    services = load_services(get_settings())
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
        report = run_with_database(go)
    except ImportRefused as exc:
        fail(str(exc))
    prefix = "dry run, nothing recorded: " if dry_run else ""
    click.echo(f"{prefix}{report.summary()} (batch {report.batch})")
    for rejected in report.rejected:
        click.echo(f"  line {rejected.line}: {rejected.reason}")
