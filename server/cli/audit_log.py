"""``consentry audit ...``: seal, verify and prove the audit log (signed Merkle tree
heads), its alerts, and the keys an auditor needs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from server.cli.runtime import (
    fail,
    fail_unless_verified,
    load_services,
    output_option,
    run_with_database,
)
from server.settings import ConfigurationError, get_settings


@click.group()
def audit() -> None:
    """Seal, verify and prove the audit log (signed Merkle tree heads)."""


def load_trail(public_keys: tuple[Path, ...] = (), *, need_signer: bool = False) -> Any:
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
            fail(str(exc))
    trusted = []
    for path in public_keys:
        try:
            trusted.append(load_public_key(path.read_text()))
        except (OSError, ValueError) as exc:
            fail(f"{path}: {exc}")
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


def read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        fail(f"{path}: not readable JSON ({exc.__class__.__name__})")


def write_json(doc: Any, output: Path | None) -> None:
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

    exported = []
    for path in against:
        try:
            exported += read_checkpoints(read_json(path))
        except ValueError as exc:
            fail(f"{path}: {exc}")
    trail = load_trail(public_keys)
    witnessed = _witnessed_heads(trail, witness_path, no_witness)
    report = run_with_database(
        lambda: trail.verify(incremental=incremental, against=exported, witnessed=witnessed)
    )
    if not report.ok:
        where = f"first bad entry: {report.first_bad_seq}: " if report.first_bad_seq else ""
        fail(
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


def _witnessed_heads(trail: Any, witness_path: Path | None, no_witness: bool) -> list[Any]:
    """The newest genuinely signed head in the witness file (``--witness``, else the
    configured one unless ``--no-witness``), if there is one; rejected lines are warned of."""
    from audit.witness import read_witness

    witnessed = []
    configured = get_settings().audit_witness_file
    witness = witness_path or (None if no_witness else configured)
    if witness is not None:
        if not witness.exists():
            if witness_path is not None:
                fail(f"{witness}: no such witness file")
            click.echo(f"note: the witness file {witness} does not exist yet", err=True)
        else:
            seen = read_witness(witness, trail.verifier)
            for problem in seen.rejected[:5]:
                click.echo(f"warning: witness {witness}: {problem}", err=True)
            if seen.newest is not None:
                witnessed.append(seen.newest)
    return witnessed


@audit.command("seal")
def audit_seal() -> None:
    """Sign a tree head over every event so far (a running server does this by itself)."""
    from audit.trail import SealRefused

    trail = load_trail(need_signer=True)
    try:
        head = run_with_database(trail.seal_all)
    except SealRefused as exc:
        fail(f"refusing to seal: {exc}; run `consentry audit verify`")
    if head is None:
        click.echo("the audit log is empty: nothing to seal")
    else:
        click.echo(f"signed head over {head.tree_size} entries, root {head.root_hash}")


PROOF_OUTPUT_OPTION = output_option(
    "Write the JSON proof to this file instead of standard output.", required=False
)


def print_proof(
    trail: Any, make: Callable[[], Awaitable[dict[str, Any]]], output: Path | None, refusal: str
) -> None:
    """Write a proof (inclusion or consistency) as JSON, then fail with ``refusal`` if it
    does not verify: the JSON is kept either way, for whoever looks into it."""
    try:
        proof = run_with_database(make)
    except LookupError as exc:
        fail(str(exc))
    write_json(proof, output)
    if not proof["verified"]:
        fail(f"{refusal} does NOT verify: run `consentry audit verify`")


@audit.command("prove")
@click.argument("seq", type=click.IntRange(min=1))
@click.option("--size", type=click.IntRange(min=1), help="Prove under the head of this size.")
@PROOF_OUTPUT_OPTION
@PUBLIC_KEY_OPTION
def audit_prove(
    seq: int, size: int | None, output: Path | None, public_keys: tuple[Path, ...]
) -> None:
    """Print an inclusion proof (RFC 6962) that entry SEQ is in the signed log."""
    trail = load_trail(public_keys)
    print_proof(trail, lambda: trail.inclusion(seq, size), output, f"the proof for entry {seq}")


@audit.command("consistency")
@click.argument("old_size", type=click.IntRange(min=1))
@click.argument("new_size", type=click.IntRange(min=1), required=False)
@PROOF_OUTPUT_OPTION
@PUBLIC_KEY_OPTION
def audit_consistency(
    old_size: int, new_size: int | None, output: Path | None, public_keys: tuple[Path, ...]
) -> None:
    """Print a consistency proof that the head over NEW_SIZE (default: the latest) extends
    the head over OLD_SIZE: nothing before OLD_SIZE was changed in between."""
    trail = load_trail(public_keys)
    print_proof(
        trail, lambda: trail.consistency(old_size, new_size), output, "the consistency proof"
    )


@audit.group("checkpoints")
def audit_checkpoints() -> None:
    """Signed tree heads, for an external witness."""


@audit_checkpoints.command("export")
@output_option("The JSON file to write.")
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
    trail = load_trail()
    doc = run_with_database(lambda: trail.export_checkpoints(after))
    write_json(doc, output)
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
    trail = load_trail()
    doc = run_with_database(lambda: trail.export_checkpoints(0))
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

    trail = load_trail(public_keys)
    report = verify_slice(read_json(file), trail.verifier)
    fail_unless_verified("slice", report)
    size = report.head.tree_size if report.head else 0
    click.echo(f"slice verifies: {report.events} events proven under the head over {size} entries")


@audit.group("alerts")
def audit_alerts() -> None:
    """Alert rules over the audit log (bulk reads, off hours, denials, large exports)."""


@audit_alerts.command("run")
def audit_alerts_run() -> None:
    """Evaluate the alert rules over new audit events now (servers do this every 30 s)
    and e-mail any new alerts to CONSENTRY_ALERT_RECIPIENTS."""
    services = load_services(get_settings())
    raised = run_with_database(services.alerts.evaluate)
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
    services = load_services(get_settings())
    page = run_with_database(lambda: services.alerts.list_alerts(state=state))
    click.echo(f"{page.total} {state} alert(s); {page.open_total} open in all")
    for alert in page.items:
        status = "open" if alert.is_open else f"acknowledged: {alert.acknowledgement_label}"
        click.echo(
            f"  #{alert.id} {alert.created_at:%Y-%m-%d %H:%M} {alert.rule_name}: "
            f"{alert.actor_id} ({alert.actor_role}), {alert.matched} {alert.unit} [{status}]"
        )


@audit.command("export-log")
@output_option("Where to write the JSON lines (entries and checkpoint rows, nothing personal).")
def audit_export_log(output: Path) -> None:
    """Export the whole trail for the standalone verifier (docs/audit-format.md)."""
    import json

    trail = load_trail()

    async def write() -> int:
        lines = 0
        with output.open("w", encoding="ascii") as handle:
            async for doc in trail.export_log():
                handle.write(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")
                lines += 1
        return lines

    lines = run_with_database(write)
    click.echo(f"wrote {output} ({lines} lines)", err=True)


@audit.command("mac-existing")
def audit_mac_existing() -> None:
    """Once, after upgrading: vouch for the entries written before entry MACs existed.

    Verifies the whole log first; then appends one MAC'd entry recording how many entries
    carry no MAC and their Merkle root. Run it after every server runs the new version."""
    from server import db

    trail = load_trail(need_signer=True)
    services = load_services(get_settings())

    async def vouch() -> tuple[int, int]:
        event = await trail.legacy_baseline()
        async with db.write_transaction():
            seq = await services.audit.append(event)
        return seq, int(event.detail["legacy_upto"])

    try:
        seq, upto = run_with_database(vouch)
    except ValueError as exc:
        fail(f"not vouching: {exc}")
    click.echo(f"entries 1-{upto} (written before MACs) vouched for by entry {seq}")


@audit.command("mac-key")
def audit_mac_key() -> None:
    """Print the entry-MAC key (base64) for an auditor's `audit/standalone_verify.py --mac-key`.

    Whoever holds it can make entries that pass the MAC check (not signed heads): give it
    only to someone you would let check the log with the server's own keys."""
    import base64

    trail = load_trail(need_signer=True)
    click.echo("warning: this is a secret key; see `consentry audit mac-key --help`", err=True)
    click.echo(base64.b64encode(trail.mac.key).decode())


@audit.command("public-key")
def audit_public_key() -> None:
    """Print the public key that verifies signed heads (give it to auditors and witnesses)."""
    trail = load_trail(need_signer=True)
    click.echo(trail.public_key_b64)
