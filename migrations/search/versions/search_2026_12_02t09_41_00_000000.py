"""The name-search lookup index: ``(token, record_type, record_id)``, so a search finds
the records of its tokens from the index alone, without reading the table (a migration of
its own: raw SQL runs before a table's columns exist)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T09:41:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "name-search token lookup index"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="search", description=DESCRIPTION)

    async def lookup_index() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(
            "CREATE INDEX search_token_lookup ON search_token (token, record_type, record_id)"
        )

    manager.add_raw(lookup_index)
    return manager
