"""``consentry search ...``: the name-search index (docs/search.md)."""

from __future__ import annotations

from typing import Any

import click

from server.cli.runtime import fail, load_services, run_with_database
from server.settings import get_settings


def reindex_names(services: Any, batch_size: int = 500) -> dict[str, int]:
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

    done = run_with_database(go)
    click.echo(
        "name search index rebuilt: "
        + ", ".join(f"{n} {resource}(s)" for resource, n in done.items())
    )
    return done


@click.group()
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

    services = load_services(get_settings())
    try:
        reindex_names(services, batch_size)
    except (MasterKeyMissing, OSError) as exc:
        fail(f"reindex stopped: {exc}; run `consentry search reindex` again to finish it")
