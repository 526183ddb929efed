"""Sales quotas per staff member or team and month (issue 20): configuration, no personal
data. Its unique index is the next migration."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, BigInt, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T16:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "sales quotas"


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
    "id": (UUID, _params(default=UUID4(), primary_key=True)),
    "owner_id": (Integer, _params(default=0, index=True)),
    "team": (Varchar, _params(length=64, default="")),
    "month": (Varchar, _params(length=7, default="")),
    "currency": (Varchar, _params(length=3, default="")),
    "amount": (BigInt, _params(default=0)),
    "set_by": (Integer, _params(default=0)),
    "updated_at": (Timestamptz, _params(default=TimestamptzNow())),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pipelines", description=DESCRIPTION)
    manager.add_table(class_name="SalesQuota", tablename="sales_quota", schema=None, columns=None)
    for name, (column_class, params) in COLUMNS.items():
        manager.add_column(
            table_class_name="SalesQuota",
            tablename="sales_quota",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )

    return manager
