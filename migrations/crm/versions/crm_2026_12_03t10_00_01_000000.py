"""Mark the tombstones erasure made before ``erased`` existed (the previous migration): a
contact or lead whose name is gone (what ``erasure.clear_rows`` leaves: NULL or '') is
one, as ``lifecycle.living`` told them apart until then. Then the indexes lists need:
(merged_into, erased, subject_id) on contacts and (erased, subject_id) on leads, so a
list's total is counted from an index; and (created_at DESC, id) on this app's record
tables (the mail, feedback and service-desk apps add theirs), the order of every list page, so a page is read in order instead of sorting every row
(an import writes a thousand rows with one created_at, and with planner statistics the
single-column index no longer looked worth it). The same statements on both engines."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-03T10:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "mark existing tombstones; indexes for list totals and pages"

RECORD_TABLES = (
    "contact",
    "organization",
    "deal",
    "interaction",
    "support_case",
    "lead",
    "task",
    "note",
)
STATEMENTS = [
    *(
        f'UPDATE "{table}" SET erased = TRUE WHERE erased = FALSE'
        " AND COALESCE(first_name, '') = '' AND COALESCE(last_name, '') = ''"
        for table in ("contact", "lead")
    ),
    'CREATE INDEX IF NOT EXISTS contact_living ON "contact" (merged_into, erased, subject_id)',
    'CREATE INDEX IF NOT EXISTS lead_living ON "lead" (erased, subject_id)',
    *(
        f'CREATE INDEX IF NOT EXISTS {table}_newest ON "{table}" (created_at DESC, id)'
        for table in RECORD_TABLES
    ),
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
