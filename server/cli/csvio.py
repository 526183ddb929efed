"""``consentry import ...`` and ``consentry export``: records in and out as CSV
(server/csvio, docs/import-export.md).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from server.cli.runtime import (
    UnusableInput,
    cli_actor,
    fail,
    load_services,
    output_option,
    run_with_database,
)
from server.settings import get_settings

if TYPE_CHECKING:
    from server.datamap import RecordType


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
        from server.csvio.importer import ImportRefused, parse_mapping, record_type

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
        services = load_services(get_settings())
        target = _ImportTarget(resource, plural, rt, file, content, mapping)
        report = run_with_database(
            lambda: _import_file(services, target, dry_run, as_email, owner, team)
        )
        _print_import_report(report, dry_run, report_file)

    command.help = (
        f"Import {plural} from a CSV file (UTF-8, header on line 1).\n\n"
        "Columns are matched to fields by name or label (case and spaces ignored); unknown "
        "columns are reported and ignored. Bad rows are reported by line and reason and "
        "not imported; rows already on file (same natural key) are skipped, so importing "
        "a file twice creates nothing new. Exit code 0: every row good; 1: some rows bad; "
        "2: the file or options cannot be used."
    )
    return command


@dataclass(frozen=True)
class _ImportTarget:
    """One ``consentry import PLURAL FILE``: the record type, the file and its mapping."""

    resource: str
    plural: str
    record_type: RecordType
    file: Path
    content: bytes
    mapping: dict[str, str]


async def _import_owner(services: Any, owner: str | None, team: str | None) -> tuple[Any, Any]:
    """The ``--owner`` account's id and the team of the new records (``--team``, else the
    owner's); without ``--owner``, nobody and ``--team``."""
    if not owner:
        return None, team
    identity = await services.accounts.find_by_email(owner)
    if identity is None:
        raise UnusableInput(f"--owner: no staff account {owner}")
    return identity.user_id, team if team is not None else identity.team


async def _import_file(
    services: Any,
    target: _ImportTarget,
    dry_run: bool,
    as_email: str | None,
    owner: str | None,
    team: str | None,
) -> Any:
    """Read the rows the actor may set and import them with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from server.csvio.importer import PURPOSE, ImportRefused, import_rows, read_rows
    from server.gateway import GatewayError

    resource, plural = target.resource, target.plural
    console = Console(stderr=True)
    actor = await cli_actor(services, as_email, "import")
    owner_id, owner_team = await _import_owner(services, owner, team)
    settable = services.gateway.permitted_fields(actor, resource, "create", purpose=PURPOSE)
    if settable is None:
        raise UnusableInput(f"{actor.role} may not create {plural}")
    try:
        plan, rows = read_rows(target.content, target.record_type, target.mapping, settable)
    except ImportRefused as exc:
        raise UnusableInput(f"{target.file}: {exc} {exc.hint}".rstrip()) from None
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


def _print_import_report(report: Any, dry_run: bool, report_file: Path | None) -> None:
    """The ignored columns, every bad row, the summary; exit 1 if some rows were bad."""
    from server.csvio.importer import write_report

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


@click.group("import")
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


@click.command("export")
@click.argument("kind", type=click.Choice(sorted(EXPORTABLE)))
@output_option("The CSV file to write (replaced only once the export is complete).")
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
    services = load_services(get_settings())
    try:
        fd, temporary = tempfile.mkstemp(
            prefix=".export-", suffix=".csv", dir=output.resolve().parent
        )  # mode 0600: customer data, readable by the operator only
        os.close(fd)
    except OSError as exc:
        fail(f"{output}: cannot write the file ({exc.strerror or type(exc).__name__})")

    async def go() -> int:
        actor = await cli_actor(services, as_email, "export")
        export = await services.gateway.start_export(
            actor, EXPORTABLE[kind], reason=reason, filters=wanted
        )
        async with await anyio.open_file(temporary, "w", newline="", encoding="utf-8") as handle:
            async for chunk in csv_chunks(export):
                await handle.write(chunk)
        await services.audit_trail.seal_all()
        return int(export.rows)

    try:
        rows = run_with_database(go)
        os.replace(temporary, output)  # the file appears only once it is complete
    except GatewayError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"{output}: cannot write the file ({exc.strerror or type(exc).__name__})")
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    click.echo(f"exported {rows} {kind} to {output}")
