"""Mention tokens (``server.gateway.mention_index``): record type, record id, free-text
field and a truncated keyed token, never a value; and the one-row state that says whether
every record's free text is indexed. Full DML for the application role (erasure deletes
rows). The lookup index and the first state come in the next migration (raw SQL runs
before a table's columns exist)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Boolean, Integer, Serial, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T19:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "mention index"


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


TABLES: dict[tuple[str, str], dict[str, tuple[type, dict[str, Any]]]] = {
    ("MentionToken", "mention_token"): {
        "id": (Serial, _params(primary_key=True)),
        "record_type": (Varchar, _params(default="", length=16)),
        "record_id": (UUID, _params(default=UUID4(), index=True)),
        "field": (Varchar, _params(default="", length=32)),
        "token": (Integer, _params(default=0)),
    },
    ("MentionIndexState", "mention_index_state"): {
        "id": (Integer, _params(default=0, primary_key=True)),
        "complete": (Boolean, _params(default=False)),
        "probe": (Integer, _params(default=None, null=True)),
        "updated_at": (Timestamptz, _params(default=TimestamptzNow())),
    },
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="search", description=DESCRIPTION)
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
