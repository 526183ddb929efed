"""Tasks and notes: staff work about a record, sealed under that record's person's key.

Neither is append-only (a task is marked done, a note corrected), so both get the
application role's default grants.
"""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T19:53:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "tasks and notes"


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


def _uuid(**kw: Any) -> tuple[type, dict[str, Any]]:
    return UUID, _params(**{"default": UUID4(), **kw})


def _optional_uuid() -> tuple[type, dict[str, Any]]:
    return UUID, _params(default=None, null=True, index=True)


def _varchar(length: int, **kw: Any) -> tuple[type, dict[str, Any]]:
    return Varchar, _params(length=length, **{"default": "", **kw})


def _moment(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Timestamptz, _params(**{"default": TimestamptzNow(), **kw})


def _system_columns() -> dict[str, tuple[type, dict[str, Any]]]:
    return {
        "id": _uuid(primary_key=True),
        "subject_id": _uuid(index=True),
        "owner_id": (Integer, _params(default=0, index=True)),
        "team": _varchar(64, index=True),
        "created_at": _moment(index=True),
        "updated_at": _moment(),
    }


TABLES: dict[tuple[str, str], dict[str, tuple[type, dict[str, Any]]]] = {
    ("Task", "task"): {
        **_system_columns(),
        "title": (Text, _params(default="")),
        "due_at": _moment(index=True),
        "status": _varchar(16, default=None, null=True, index=True),
        "priority": _varchar(16, default=None, null=True),
        "remind_at": _moment(default=None, null=True, index=True),
        "contact_id": _optional_uuid(),
        "deal_id": _optional_uuid(),
        "case_id": _optional_uuid(),
    },
    ("Note", "note"): {
        **_system_columns(),
        "body": (Text, _params(default="")),
        "record_type": _varchar(32),
        "record_id": _uuid(index=True),
    },
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)
    for (class_name, tablename), columns in TABLES.items():
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
