"""Pipelines and their stages: configuration tables (no personal data, full DML for the
application role like every table not listed as append-only in ``server.dbroles``)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T19:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "pipelines and pipeline stages"


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
    return UUID, _params(default=UUID4(), **kw)


def _varchar(length: int, **kw: Any) -> tuple[type, dict[str, Any]]:
    return Varchar, _params(length=length, **{"default": "", **kw})


def _integer(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Integer, _params(**{"default": 0, **kw})


def _moment(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Timestamptz, _params(**{"default": TimestamptzNow(), **kw})


TABLES: dict[tuple[str, str], dict[str, tuple[type, dict[str, Any]]]] = {
    ("Pipeline", "pipeline"): {
        "id": _uuid(primary_key=True),
        "name": _varchar(100),
        "position": _integer(),
        "created_at": _moment(),
        "updated_at": _moment(),
    },
    ("PipelineStage", "pipeline_stage"): {
        "id": _uuid(primary_key=True),
        "pipeline_id": _uuid(index=True),
        "key": _varchar(32),
        "name": _varchar(100),
        "position": _integer(),
        "probability": _integer(),
        "kind": _varchar(8, default="open"),
        "archived_at": _moment(default=None, null=True),
    },
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pipelines", description=DESCRIPTION)
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
