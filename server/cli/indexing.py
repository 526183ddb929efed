"""What the two index rebuilds share (``consentry search reindex`` and ``consentry mentions
reindex``, also run by ``migrate`` and ``serve`` on an empty index): the ``--batch-size``
option, the progress bar on stderr, the seal after the audited batches, the summary line
and the one-line failure that says how to finish the job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import click

from server.cli.runtime import fail, run_with_database

BATCH_SIZE_OPTION = click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Records re-indexed per transaction.",
)

# The rebuild itself: batch size and a progress callback (records done) in, counts out.
Rebuild = Callable[[int, Callable[[int], None]], Awaitable[Mapping[str, int]]]


def rebuild_index(
    services: Any,
    index: str,
    items: str,
    total: Callable[[], Awaitable[int]],
    rebuild: Rebuild,
    batch_size: int,
) -> dict[str, int]:
    """Run ``rebuild`` with a progress bar on stderr ("Indexing ``items``"), seal the audit
    events it wrote, and say per record type how many records ``index`` now covers."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)

    async def go() -> dict[str, int]:
        records = await total()
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("records"),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"Indexing {items}", total=records)
            done = await rebuild(batch_size, lambda n: bar.advance(task, n))
        await services.audit_trail.seal_all()
        return dict(done)

    done = run_with_database(go)
    click.echo(
        f"{index} rebuilt: " + ", ".join(f"{n} {resource}(s)" for resource, n in done.items())
    )
    return done


def reindex_or_fail(reindex: Callable[[], object], command: str) -> None:
    """Run a reindex; a missing master key or an unreadable file stops it with one line
    that says how to finish (each batch is committed, so running it again resumes)."""
    from server.vault import MasterKeyMissing

    try:
        reindex()
    except (MasterKeyMissing, OSError) as exc:
        fail(f"reindex stopped: {exc}; run `consentry {command}` again to finish it")
