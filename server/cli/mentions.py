"""``consentry mentions ...``: the index erasure and exports find a person's mentions
through (docs/dsr.md).
"""

from __future__ import annotations

from typing import Any

import click

from server.cli.runtime import fail, load_services, run_with_database
from server.settings import get_settings


def mention_index_complete(services: Any) -> bool:
    from server.gateway import mention_index

    return run_with_database(lambda: mention_index.is_complete(services.gateway))


def reindex_mentions(services: Any, batch_size: int = 500) -> dict[str, int]:
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

    done = run_with_database(go)
    click.echo(
        "mention index rebuilt: " + ", ".join(f"{n} {resource}(s)" for resource, n in done.items())
    )
    return done


@click.group()
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

    services = load_services(get_settings())
    try:
        reindex_mentions(services, batch_size)
    except (MasterKeyMissing, OSError) as exc:
        fail(f"reindex stopped: {exc}; run `consentry mentions reindex` again to finish it")


@mentions.command("status")
def mentions_status() -> None:
    """Say whether the mention index is complete (erasure and exports use it) or not yet
    (they read every free text until `consentry mentions reindex` has run)."""
    from server.gateway import mention_index

    services = load_services(get_settings())
    tokens, records = run_with_database(mention_index.size)
    if mention_index_complete(services):
        click.echo(
            "mention index: complete (erasure and exports look mentions up in it); "
            f"{tokens} token(s) for {records} record(s)"
        )
    else:
        click.echo(
            "mention index: incomplete (erasure and exports read every free text); "
            "run `consentry mentions reindex`"
        )
