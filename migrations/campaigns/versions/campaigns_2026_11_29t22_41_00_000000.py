"""One delivery per person per campaign: the unique index that makes sending idempotent
(a second claim for the same campaign and subject inserts nothing)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-29T22:41:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique campaign delivery per subject"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="campaigns", description=DESCRIPTION)

    async def unique_delivery() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(
            "CREATE UNIQUE INDEX campaign_delivery_once ON campaign_delivery "
            "(campaign_id, subject_id)"
        )

    manager.add_raw(unique_delivery)
    return manager
