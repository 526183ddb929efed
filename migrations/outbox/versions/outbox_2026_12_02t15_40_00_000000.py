"""The mail outbox: e-mails retried with backoff until delivered (server/outbox)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T15:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "mail_outbox"


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


def _moment(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Timestamptz, _params(**{"default": TimestamptzNow(), **kw})


COLUMNS: dict[str, tuple[type, dict[str, Any]]] = {
    "id": (UUID, _params(default=UUID4(), primary_key=True)),
    "purpose": (Varchar, _params(length=32, default="")),
    "reference": (Text, _params(default="")),
    "subject_id": (UUID, _params(default=None, null=True)),
    "envelope": (Text, _params(default="")),
    "state": (Varchar, _params(length=16, default="", index=True)),
    "attempts": (Integer, _params(default=0)),
    "next_attempt_at": _moment(index=True),
    "last_error": (Varchar, _params(length=32, default="")),
    "created_at": _moment(),
    "updated_at": _moment(),
    "sent_at": _moment(default=None, null=True),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="outbox", description=DESCRIPTION)
    manager.add_table(class_name="QueuedMail", tablename="mail_outbox", schema=None, columns=None)
    for name, (column_class, params) in COLUMNS.items():
        manager.add_column(
            table_class_name="QueuedMail",
            tablename="mail_outbox",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    return manager
