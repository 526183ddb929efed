"""Contact merges (``server.gateway.duplicates``): ids, state, field names and the
survivor's overwritten columns as stored (ciphertext), so a merge can be undone until it
is confirmed. Full DML for the application role (a merge changes state)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T22:31:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "contact merges"


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
    "survivor_id": (UUID, _params(default=UUID4(), index=True)),
    "merged_id": (UUID, _params(default=UUID4(), index=True)),
    "survivor_subject_id": (UUID, _params(default=UUID4(), index=True)),
    "merged_subject_id": (UUID, _params(default=UUID4(), index=True)),
    "state": (Varchar, _params(default="", length=16, index=True)),
    "merged_by": (Varchar, _params(default="", length=64)),
    "created_at": (Timestamptz, _params(default=TimestamptzNow(), index=True)),
    "decided_at": (Timestamptz, _params(default=None, null=True)),
    "decided_by": (Varchar, _params(default="", length=64)),
    "fields": (Text, _params(default="[]")),
    "moved": (Text, _params(default="[]")),
    "previous": (Text, _params(default="{}")),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="duplicates", description=DESCRIPTION)
    manager.add_table(
        class_name="ContactMerge", tablename="contact_merge", schema=None, columns=None
    )
    for name, (column_class, params) in COLUMNS.items():
        manager.add_column(
            table_class_name="ContactMerge",
            tablename="contact_merge",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    return manager
