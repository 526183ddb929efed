"""``consentry dsr ...`` and ``consentry retention ...``: data-subject requests (exports,
erasure, restriction, legal holds) and the retention rules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from server.cli.audit_log import PUBLIC_KEY_OPTION, load_trail
from server.cli.runtime import (
    fail,
    fail_unless_verified,
    load_services,
    output_option,
    run_or_fail,
    run_with_database,
)
from server.settings import get_settings


@click.group()
def dsr() -> None:
    """Data-subject requests: the request queue and signed export bundles (access and
    portability)."""


@dsr.command("export")
@click.argument("subject")
@output_option("The ZIP file to write (an existing file is never overwritten).")
def dsr_export(subject: str, output: Path) -> None:
    """Write everything held about data subject SUBJECT (a UUID) to a signed ZIP: data.json,
    one CSV per record type, index.html and a signed manifest. Audited as dsr.export."""
    from server.dsr.export import InvalidSubject, NoRecords, build_export

    if output.exists():
        fail(f"{output} already exists; refusing to overwrite it")
    services = load_services(get_settings())

    async def go() -> Any:
        bundle = await build_export(services, subject, requested_by="system:cli")
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return bundle

    try:
        bundle = run_with_database(go)
    except (InvalidSubject, NoRecords) as exc:
        fail(str(exc))
    try:
        with output.open("xb") as handle:
            handle.write(bundle.zip_bytes)
    except OSError as exc:
        fail(f"{output}: cannot write the file ({exc.strerror or type(exc).__name__})")
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
    services = load_services(get_settings())

    async def go() -> Any:
        return await services.requests.queue(overdue_only=overdue)

    requests = run_with_database(go)
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
    from server.dsr.export_format import verify_export

    trail = load_trail(public_keys)
    try:
        content = file.read_bytes()
    except OSError as exc:
        fail(f"{file}: cannot read the file ({exc.strerror or type(exc).__name__})")
    report = verify_export(content, trail.verifier)
    fail_unless_verified("export", report)
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

    services = load_services(get_settings())
    if not yes and not click.confirm(
        f"Erase data subject {subject}? This cannot be undone", default=False
    ):
        fail("erasure cancelled; nothing was changed")

    async def go() -> Any:
        if request_id is not None:
            await services.requests.get(request_id)
        result = await services.erasure.erase(subject, by="system:cli", request_id=request_id)
        await services.audit_trail.seal_all()
        return result

    from server.dsr.requests import RequestError
    from server.vault.register import RegisterError

    try:
        result = run_with_database(go)
    except (ErasureError, RequestError) as exc:
        fail(exc.message)
    except GatewayError as exc:
        fail(exc.message)
    except RegisterError as exc:
        fail(f"{exc}; nothing was shredded, run the erasure again once it can be written")
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

    services = load_services(get_settings())

    async def go() -> Any:
        return await services.erasure.holds.add(
            subject, scope, reason, until.date(), by="system:cli"
        )

    hold = run_or_fail(go, HoldError)
    click.echo(f"hold {hold.id} on {hold.scope} records until {hold.held_until:%Y-%m-%d}")


@dsr_holds.command("list")
@click.option("--all", "everything", is_flag=True, help="Include released and ended holds.")
def dsr_holds_list(everything: bool) -> None:
    """List legal holds: id, subject, scope, reason, last day, and whether released."""
    services = load_services(get_settings())

    async def go() -> Any:
        return await services.erasure.holds.all(include_ended=everything)

    holds = run_with_database(go)
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

    services = load_services(get_settings())

    async def go() -> Any:
        return await services.erasure.holds.release(hold_id, by="system:cli")

    hold = run_or_fail(go, HoldError)
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

    services = load_services(get_settings())

    async def go() -> Any:
        return await services.erasure.restrictions.restrict(
            subject, reason, by="system:cli", request_id=request_id
        )

    restriction = run_or_fail(go, RestrictionError)
    click.echo(f"{restriction.subject_id} restricted since {restriction.since:%Y-%m-%d %H:%M}")


@dsr.command("unrestrict")
@click.argument("subject")
def dsr_unrestrict(subject: str) -> None:
    """Lift every restriction of SUBJECT: their records are processed normally again."""
    from server.dsr.restriction import RestrictionError

    services = load_services(get_settings())

    async def go() -> Any:
        return await services.erasure.restrictions.lift(subject, by="system:cli")

    lifted = run_or_fail(go, RestrictionError)
    if not lifted:
        fail("this subject is not restricted")
    click.echo(f"{subject}: {lifted} restriction(s) lifted")


@click.group()
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

    services = load_services(get_settings())
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

    report = run_with_database(go)
    verb = "would erase" if dry_run else "erased"
    click.echo(("dry run: nothing was changed\n" if dry_run else "") + "rule: matched / "
               f"{verb} / anonymised / held")  # fmt: skip
    for line in report.rules:
        click.echo(
            f"{line.rule} ({line.action} {line.resource}): {line.matched} matched, "
            f"{line.erased} {verb}, {line.anonymised} anonymised, {line.held} held"
        )
