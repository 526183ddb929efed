"""Segments, campaigns and deliveries: configuration and bookkeeping tables (no personal
values; full DML for the application role like every table not listed as append-only in
``server.dbroles``). The unique delivery index follows in the next migration (Piccolo
runs a migration's raw steps before its new tables exist)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T22:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "segments, campaigns and campaign deliveries"


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


def _text(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Text, _params(**{"default": "", **kw})


def _integer(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Integer, _params(**{"default": 0, **kw})


def _moment(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Timestamptz, _params(**{"default": TimestamptzNow(), **kw})


TABLES: dict[tuple[str, str], dict[str, tuple[type, dict[str, Any]]]] = {
    ("Segment", "segment"): {
        "id": _uuid(primary_key=True),
        "name": _varchar(100),
        "description": _varchar(500),
        "filters": _text(default="{}"),
        "owner_id": _integer(),
        "created_at": _moment(),
        "updated_at": _moment(),
    },
    ("Campaign", "campaign"): {
        "id": _uuid(primary_key=True),
        "name": _varchar(100),
        "purpose": _varchar(32),
        "channel": _varchar(8),
        "segment_id": _uuid(index=True),
        "subject_line": _varchar(200),
        "body": _text(),
        "status": _varchar(12, default="draft"),
        "created_by": _integer(),
        "created_at": _moment(),
        "updated_at": _moment(),
        "sent_by": _integer(default=None, null=True),
        "sent_at": _moment(default=None, null=True),
        "sent_count": _integer(),
    },
    ("CampaignDelivery", "campaign_delivery"): {
        "id": _uuid(primary_key=True),
        "campaign_id": _uuid(index=True),
        "subject_id": _uuid(),
        "status": _varchar(12, default="sending"),
        "error": _varchar(40),
        "attempted_at": _moment(),
    },
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="campaigns", description=DESCRIPTION)
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
