"""Customer scores (issue 20, part C): one sealed row per person with a profiling basis."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T16:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "customer scores, sealed per person"


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
    "subject_id": (UUID, _params(default=UUID4(), primary_key=True)),
    "computed_at": (Timestamptz, _params(default=TimestamptzNow(), index=True)),
    "model": (Varchar, _params(length=40, default="")),
    "sealed": (Text, _params(default="")),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="analytics", description=DESCRIPTION)
    manager.add_table(
        class_name="CustomerScore", tablename="customer_score", schema=None, columns=None
    )
    for name, (column_class, params) in COLUMNS.items():
        manager.add_column(
            table_class_name="CustomerScore",
            tablename="customer_score",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    return manager
