"""Fill ``contact.merged_into`` (added by the crm app's migration of 2026-12-03, which
runs first: the crm app precedes this one in ``server.piccolo_conf``) from the merges made
before it existed: every contact merged into another by a merge that was not undone.
The same statement on SQLite and PostgreSQL; a contact already marked is left alone."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T06:46:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "contact.merged_into for existing merges"

BACKFILL = """
UPDATE contact SET merged_into = (
    SELECT m.survivor_id FROM contact_merge AS m
    WHERE m.merged_id = contact.id AND m.state <> 'undone'
    ORDER BY m.created_at DESC LIMIT 1
)
WHERE merged_into IS NULL AND EXISTS (
    SELECT 1 FROM contact_merge AS m WHERE m.merged_id = contact.id AND m.state <> 'undone'
)
"""


async def backfill() -> None:
    engine = engine_finder()
    assert engine is not None
    await engine.run_ddl(BACKFILL)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="duplicates", description=DESCRIPTION)
    manager.add_raw(backfill)
    return manager
