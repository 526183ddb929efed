"""Calendar import (issue 21, item 2): keyed hashes of imported event UIDs."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T19:41:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "calendar meeting map"


def _params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
    }
    params.update(overrides)
    return params


TABLES: dict[str, tuple[str, dict[str, tuple[type, dict[str, Any]]]]] = {
    "CalendarMeeting": (
        "calendar_meeting",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "uid_hash": (Varchar, _params(default="", length=64, unique=True)),
            "record_type": (Varchar, _params(default="", length=16)),
            "record_id": (UUID, _params(default=UUID4(), index=True)),
            "imported_at": (Timestamptz, _params(default=TimestamptzNow())),
        },
    ),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="calendar", description=DESCRIPTION)
    for class_name, (tablename, columns) in TABLES.items():
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
        for name, (column_class, params) in columns.items():
            manager.add_column(
                table_class_name=class_name,
                tablename=tablename,
                column_name=name,
                db_column_name=name,
                column_class_name=column_class.__name__,
                column_class=column_class,
                params=params,
                schema=None,
            )
    return manager
