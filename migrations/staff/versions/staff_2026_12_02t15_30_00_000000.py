"""API tokens (issue 19): personal tokens and service accounts, each bound to a role, a
set of purposes, an optional field allow-list and an expiry. Only a keyed hash of the
secret is stored (HMAC under a key derived from the master key). The rate limit's window
lives in the row, so every worker counts against the same number."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T15:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "api tokens"


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
    "kind": (Varchar, _params(default="", length=16)),
    "name": (Varchar, _params(default="", length=80)),
    "role": (Varchar, _params(default="", length=32)),
    "purposes": (Text, _params(default="[]")),
    "fields": (Text, _params(default=None, null=True)),
    "created_by": (Integer, _params(default=0, index=True)),
    "team": (Varchar, _params(default="", length=64)),
    "secret_hash": (Varchar, _params(default="", length=64, unique=True)),
    "hint": (Varchar, _params(default="", length=12)),
    "created_at": (Timestamptz, _params(default=TimestamptzNow())),
    "expires_at": (Timestamptz, _params(default=TimestamptzNow())),
    "revoked_at": (Timestamptz, _params(default=None, null=True)),
    "last_used_at": (Timestamptz, _params(default=None, null=True)),
    "window_start": (Timestamptz, _params(default=None, null=True)),
    "window_calls": (Integer, _params(default=0)),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="staff", description=DESCRIPTION)
    manager.add_table(class_name="ApiToken", tablename="api_token", schema=None, columns=None)
    for name, (column_class, params) in COLUMNS.items():
        manager.add_column(
            table_class_name="ApiToken",
            tablename="api_token",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    return manager
