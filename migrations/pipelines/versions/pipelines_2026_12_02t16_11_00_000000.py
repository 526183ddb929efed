"""One sales quota per (owner, team, month, currency): setting it again replaces it."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T16:11:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique sales quota per owner, team, month and currency"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pipelines", description=DESCRIPTION)

    async def unique() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(
            "CREATE UNIQUE INDEX sales_quota_key_idx "
            "ON sales_quota (owner_id, team, month, currency)"
        )

    manager.add_raw(unique)
    return manager
