"""Report builder (issue 20, items 4 and 5): saved report definitions (owner, sharing,
schedule) and the differential-privacy budget spent per role and month."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, BigInt, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T16:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "saved reports and privacy budget"


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
    "SavedReport": (
        "saved_report",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "name": (Varchar, _params(default="", length=120)),
            "owner_id": (Integer, _params(default=0, index=True)),
            "team": (Varchar, _params(default="", length=64)),
            "shared_with": (Varchar, _params(default="none", length=8)),
            "definition": (Text, _params(default="{}")),
            "schedule": (Varchar, _params(default="none", length=8)),
            "last_sent_at": (Timestamptz, _params(default=None, null=True)),
            "created_at": (Timestamptz, _params(default=TimestamptzNow())),
            "updated_at": (Timestamptz, _params(default=TimestamptzNow())),
        },
    ),
    "PrivacyBudget": (
        "privacy_budget",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "role": (Varchar, _params(default="", length=32)),
            "period": (Varchar, _params(default="", length=7)),
            "spent_micro": (BigInt, _params(default=0)),
            "releases": (Integer, _params(default=0)),
            "updated_at": (Timestamptz, _params(default=TimestamptzNow())),
        },
    ),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="reporting", description=DESCRIPTION)
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
