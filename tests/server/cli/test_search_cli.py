"""``consentry search reindex``, and the back-fill ``consentry migrate`` runs for records
written before name search existed (docs/search.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from server import db, settings
from server.gateway import Actor
from server.gateway.tables import SearchToken
from server.services import build_services
from tests.server.cli.test_cli import Install, consentry, forget_process_state, install  # noqa: F401

ACTOR = Actor.system("test")


def _in_process(work: Any) -> Any:
    forget_process_state()

    async def go() -> Any:
        await db.start()
        try:
            return await work(build_services(settings.get_settings()))
        finally:
            await db.stop()

    return asyncio.run(go())


def test_reindex_rebuilds_tokens_and_migrate_backfills_an_empty_index(
    install: Install,  # noqa: F811
) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0

    async def seed(services: Any) -> int:
        for first, last in (("Sharon", "Todd"), ("Ada", "Lovelace")):
            email = f"{first.lower()}@example.org"
            await services.gateway.create(
                ACTOR, "contact", {"first_name": first, "last_name": last, "email": email}
            )
        count = int(await SearchToken.count())
        await SearchToken.delete(force=True)  # as a database from before name search
        return count

    async def found(services: Any) -> tuple[int, list[str]]:
        hits = await services.gateway.search_names(ACTOR, "contact", "tod")
        return int(await SearchToken.count()), [r.values["last_name"] for r in hits.items]

    written = _in_process(seed)
    assert written > 0
    assert _in_process(found) == (0, [])

    migrated = consentry("migrate")
    assert migrated.exit_code == 0, migrated.output
    assert "name search index rebuilt: 2 contact(s)" in migrated.stdout
    assert _in_process(found) == (written, ["Todd"])

    again = consentry("search", "reindex", "--batch-size", "1")
    assert again.exit_code == 0, again.output
    assert "2 contact(s)" in again.stdout
    assert _in_process(found) == (written, ["Todd"])
    assert consentry("search", "reindex", "--batch-size", "0").exit_code == 2
