"""Each staff user's time zone: pages show times in it, the database keeps UTC.

An IANA zone name ("Europe/Berlin"), checked against the zoneinfo database when it is
set: in My account, or from the browser at sign-in while it is still empty. Empty means
"never chosen" and is shown as UTC, which is what every page showed before.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T09:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "staff_user.time_zone"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="staff", description=DESCRIPTION)
    manager.add_column(
        table_class_name="StaffUser",
        tablename="staff_user",
        column_name="time_zone",
        db_column_name="time_zone",
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
