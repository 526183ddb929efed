"""Mark the tombstones erasure made before ``erased`` existed (the previous migration): a
contact or lead whose name is gone (what ``erasure.clear_rows`` leaves: NULL or '') is
one, as ``lifecycle.living`` told them apart until then. Then the indexes that let a list
count the living without reading the rows: (merged_into, erased, subject_id) on contacts,
(erased, subject_id) on leads. The same statements on SQLite and PostgreSQL."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T10:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "mark existing tombstones; indexes for counting the living"

STATEMENTS = [
    f"UPDATE \"{table}\" SET erased = TRUE WHERE erased = FALSE"
    " AND COALESCE(first_name, '') = '' AND COALESCE(last_name, '') = ''"
    for table in ("contact", "lead")
] + [
    "CREATE INDEX IF NOT EXISTS contact_living ON \"contact\" (merged_into, erased, subject_id)",
    "CREATE INDEX IF NOT EXISTS lead_living ON \"lead\" (erased, subject_id)",
]


async def mark_and_index() -> None:
    engine = engine_finder()
    assert engine is not None
    for statement in STATEMENTS:
        await engine.run_ddl(statement)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)
    manager.add_raw(mark_and_index)
    return manager
