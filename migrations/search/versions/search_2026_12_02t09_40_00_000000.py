"""Name-search tokens (``server.gateway.name_index``): record type, record id, field and
a truncated keyed token, never a value. Looked up by ``(token, record_type, record_id)`` (the
next migration's index); removed by record id. Full DML for the application role (erasure
deletes rows). Records written before this migration get their tokens from
``consentry search reindex``."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Integer, Serial, Varchar
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T09:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "name-search tokens"


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


COLUMNS: dict[str, tuple[type, dict[str, Any]]] = {
    "id": (Serial, _params(primary_key=True)),
    "record_type": (Varchar, _params(default="", length=16)),
    "record_id": (UUID, _params(default=UUID4(), index=True)),
    "field": (Varchar, _params(default="", length=32)),
    "token": (Integer, _params(default=0)),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="search", description=DESCRIPTION)
    manager.add_table(class_name="SearchToken", tablename="search_token", schema=None, columns=None)
    for name, (column_class, params) in COLUMNS.items():
        manager.add_column(
            table_class_name="SearchToken",
            tablename="search_token",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )

    return manager
