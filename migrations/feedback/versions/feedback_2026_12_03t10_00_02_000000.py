"""An index in list order, (created_at DESC, id), on ``feedback_answer``: as the crm app's migration
of the same day gives its record tables, so a list page reads rows in order instead of
sorting every row (issue 15)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T10:00:02:000000"
VERSION = "1.38.0"
DESCRIPTION = "feedback_answer: index in list order"

STATEMENT = 'CREATE INDEX IF NOT EXISTS feedback_answer_newest ON "feedback_answer" (created_at DESC, id)'


async def create_index() -> None:
    engine = engine_finder()
    assert engine is not None
    await engine.run_ddl(STATEMENT)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="feedback", description=DESCRIPTION)
    manager.add_raw(create_index)
    return manager
