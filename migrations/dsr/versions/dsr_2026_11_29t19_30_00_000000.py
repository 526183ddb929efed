"""Erasure, restriction, legal holds and retention: four tables, none append-only.

``erasure_job`` and ``retention_run`` are progress records the application updates;
``legal_hold`` and ``processing_restriction`` end by setting ``released_at`` /
``lifted_at``, so they need UPDATE too (the application role's default grants).
"""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Date, Text, Timestamptz, Varchar
from piccolo.columns.defaults.date import DateNow
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T19:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "legal holds, processing restrictions, erasure jobs, retention runs"


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


def _moment(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Timestamptz, _params(**{"default": TimestamptzNow(), **kw})


TABLES: dict[tuple[str, str], dict[str, tuple[type, dict[str, Any]]]] = {
    ("LegalHold", "legal_hold"): {
        "id": _uuid(primary_key=True),
        "subject_id": _uuid(index=True),
        "scope": _varchar(32),
        "reason": _varchar(32),
        "held_until": (Date, _params(default=DateNow())),
        "created_by": _varchar(64),
        "created_at": _moment(),
        "released_at": _moment(default=None, null=True),
        "released_by": _varchar(64),
    },
    ("ProcessingRestriction", "processing_restriction"): {
        "id": _uuid(primary_key=True),
        "subject_id": _uuid(index=True),
        "reason": _varchar(32),
        "request_id": _varchar(64, default=None, null=True),
        "since": _moment(),
        "created_by": _varchar(64),
        "lifted_at": _moment(default=None, null=True, index=True),
        "lifted_by": _varchar(64),
    },
    ("ErasureJob", "erasure_job"): {
        "id": _uuid(primary_key=True),
        "subject_id": _uuid(unique=True),
        "request_id": _varchar(64, default=None, null=True, index=True),
        "state": _varchar(16),
        "steps": _varchar(64),
        "counts": (Text, _params(default="{}")),
        "started_by": _varchar(64),
        "started_at": _moment(),
        "updated_at": _moment(),
        "finished_at": _moment(default=None, null=True),
    },
    ("RetentionRun", "retention_run"): {
        "id": _uuid(primary_key=True),
        "day": _varchar(10, unique=True),
        "started_at": _moment(),
        "finished_at": _moment(default=None, null=True),
    },
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="dsr", description=DESCRIPTION)
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
