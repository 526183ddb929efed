"""List pages of contacts and leads read from their index alone: ``contact_newest`` and
``lead_newest`` (created_at DESC, id) also carry the columns every list tests - the owner
and team of the record scope, ``merged_into``, ``erased`` and ``subject_id`` (restriction).
A page at an OFFSET skips that many rows; with the narrow index each skipped row was
fetched from the table (its ciphertext with it) only to test those columns. The same
statements on both engines."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T12:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "contact and lead list indexes cover the list's conditions"

STATEMENTS = [
    "DROP INDEX IF EXISTS contact_newest",
    'CREATE INDEX contact_newest ON "contact"'
    " (created_at DESC, id, owner_id, team, merged_into, erased, subject_id)",
    "DROP INDEX IF EXISTS lead_newest",
    'CREATE INDEX lead_newest ON "lead" (created_at DESC, id, owner_id, team, erased, subject_id)',
]


async def widen() -> None:
    engine = engine_finder()
    assert engine is not None
    for statement in STATEMENTS:
        await engine.run_ddl(statement)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)
    manager.add_raw(widen)
    return manager
