"""``contact.erased`` and ``lead.erased``: erasure marks a tombstone in the statement that
clears it, so lists and counts leave erased people out by a column an index answers,
instead of reading every row's ciphertext (issue 15). The next migration marks the
tombstones made before this column existed (Piccolo runs a migration's raw steps before
its column changes) and adds the indexes."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Boolean
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-03T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "contact.erased, lead.erased"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)
    for class_name, table in (("Contact", "contact"), ("Lead", "lead")):
        manager.add_column(
            table_class_name=class_name,
            tablename=table,
            column_name="erased",
            db_column_name="erased",
            column_class_name="Boolean",
            column_class=Boolean,
            params={
                "default": False,
                "null": False,
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
