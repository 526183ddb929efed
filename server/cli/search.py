"""``consentry search ...``: the name-search index (docs/search.md)."""

from __future__ import annotations

from typing import Any

import click

from server.cli.indexing import BATCH_SIZE_OPTION, rebuild_index, reindex_or_fail
from server.cli.runtime import load_services
from server.settings import get_settings


def reindex_names(services: Any, batch_size: int = 500) -> dict[str, int]:
    """Rebuild the name-search tokens with a progress bar on stderr; audited, sealed."""
    from server.gateway import Actor

    return rebuild_index(
        services,
        "name search index",
        "names",
        services.gateway.name_index_size,
        lambda size, progress: services.gateway.reindex_names(
            Actor.system("search-reindex"), batch_size=size, progress=progress
        ),
        batch_size,
    )


@click.group()
def search() -> None:
    """Name search (docs/search.md)."""


@search.command("reindex")
@BATCH_SIZE_OPTION
def search_reindex(batch_size: int) -> None:
    """Recompute every name-search token from the records.

    Run it after restoring a database from parts or changing the index key, or to fill
    in the index of records written before name search existed (`consentry migrate` and
    `consentry serve` do that by themselves when the index is empty). Online and
    resumable: each batch replaces its records' tokens in one transaction. Reads and
    decrypts every indexed name; audited per record type with the count, never a name.
    """
    services = load_services(get_settings())
    reindex_or_fail(lambda: reindex_names(services, batch_size), "search reindex")
