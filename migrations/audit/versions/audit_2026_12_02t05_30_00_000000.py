"""Entry MACs: a ``mac`` column on the audit log (issue 22).

Adding a column with a default rewrites no row, so the append-only triggers are not
involved; existing entries get "" (no MAC). The migration cannot compute MACs - the key
lives outside the database - so ``consentry audit mac-existing`` vouches for the entries
written before it, once, with one MAC'd baseline entry (see docs/audit.md).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T05:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit entry MACs"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="audit", description=DESCRIPTION)
    manager.add_column(
        table_class_name="AuditRecord",
        tablename="audit",
        column_name="mac",
        db_column_name="mac",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 64,
            "default": "",
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
