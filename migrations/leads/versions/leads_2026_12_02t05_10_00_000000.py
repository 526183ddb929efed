"""Spent public form tokens (``server.leads.webform``): one row per token that created a
lead, so that a token is used once across every worker. A keyed hash and an expiry only;
the daily housekeeping deletes expired rows. Full DML for the application role (rows are
deleted), which the blanket grant in ``server.dbroles`` gives every non-evidence table."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T05:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "spent public form tokens"


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
    "token_hash": (Varchar, _params(default="", length=64, unique=True)),
    "expires_at": (Timestamptz, _params(default=TimestamptzNow(), index=True)),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="leads", description=DESCRIPTION)
    manager.add_table(
        class_name="SpentFormToken", tablename="spent_form_token", schema=None, columns=None
    )
    for name, (column_class, params) in COLUMNS.items():
        manager.add_column(
            table_class_name="SpentFormToken",
            tablename="spent_form_token",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    return manager
