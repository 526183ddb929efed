"""``consentry mentions ...``: the index erasure and exports find a person's mentions
through (docs/dsr.md).
"""

from __future__ import annotations

from typing import Any

import click

from server.cli.indexing import BATCH_SIZE_OPTION, rebuild_index, reindex_or_fail
from server.cli.runtime import load_services, run_with_database
from server.settings import get_settings


def mention_index_complete(services: Any) -> bool:
    from server.gateway import mention_index

    return run_with_database(lambda: mention_index.is_complete(services.gateway))


def reindex_mentions(services: Any, batch_size: int = 500) -> dict[str, int]:
    """Index every record's free text with a progress bar on stderr; audited, sealed."""
    from server.gateway import Actor, mention_index

    return rebuild_index(
        services,
        "mention index",
        "mentions",
        mention_index.count_records,
        lambda size, progress: mention_index.rebuild_all(
            services.gateway, Actor.system("mentions-reindex"), batch_size=size, progress=progress
        ),
        batch_size,
    )


@click.group()
def mentions() -> None:
    """The mention index: how erasure and subject exports find a person named in other
    people's free text without reading the whole database (docs/dsr.md)."""


@mentions.command("reindex")
@BATCH_SIZE_OPTION
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
    services = load_services(get_settings())
    reindex_or_fail(lambda: reindex_mentions(services, batch_size), "mentions reindex")


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
