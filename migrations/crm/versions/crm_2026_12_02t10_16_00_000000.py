"""Existing deals get a stage-entry time: their last change, the best that is known.

(Piccolo runs a migration's raw steps before its column changes, so this is a migration
of its own, after the one that adds the column.)
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T10:16:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "deal.stage_entered_at for existing deals"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)

    async def backfill() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(
            "UPDATE deal SET stage_entered_at = updated_at WHERE stage_entered_at IS NULL"
        )

    manager.add_raw(backfill)
    return manager
