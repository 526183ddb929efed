"""``contact.merged_into``: the contact a merged contact was merged into, while the merge
is not undone (issue 15). Reads leave merged contacts out by this column instead of a
``NOT IN`` over every merge; the duplicates app's next migration fills it for merges made
before it existed (Piccolo runs a migration's raw steps before its column changes)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-03T06:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "contact.merged_into"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)
    manager.add_column(
        table_class_name="Contact",
        tablename="contact",
        column_name="merged_into",
        db_column_name="merged_into",
        column_class_name="UUID",
        column_class=UUID,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )
    return manager
