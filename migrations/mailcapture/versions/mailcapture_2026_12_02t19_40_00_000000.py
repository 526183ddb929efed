"""Mailbox capture (issue 21): captured mail (a record type, sealed per person) and the
staff mailboxes it is synced from (configuration; the login sealed by the vault)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import (
    UUID,
    BigInt,
    Boolean,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T19:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "captured_mail and mailbox"


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


def _text(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Text, _params(**{"default": "", **kw})


def _varchar(length: int, **kw: Any) -> tuple[type, dict[str, Any]]:
    return Varchar, _params(**{"default": "", "length": length, **kw})


CAPTURED_MAIL: dict[str, tuple[type, dict[str, Any]]] = {
    "id": (UUID, _params(default=UUID4(), primary_key=True)),
    "subject_id": (UUID, _params(default=UUID4(), index=True)),
    "owner_id": (Integer, _params(default=0, index=True)),
    "team": _varchar(64, index=True),
    "created_at": _moment(index=True),
    "updated_at": _moment(),
    "record_type": _varchar(32),
    "record_id": (UUID, _params(default=UUID4(), index=True)),
    "direction": _varchar(16, null=True, default=None),
    "occurred_at": _moment(index=True),
    "subject": _text(null=True, default=None),
    "body": _text(null=True, default=None),
    "correspondents": _text(null=True, default=None),
    "attachments": _text(null=True, default=None),
    "visibility": _varchar(16, null=True, default=None, index=True),
    "thread_key": _varchar(64, null=True, default=None, index=True),
    "message_key": _varchar(64, null=True, default=None, index=True),
    "mailbox_id": (UUID, _params(default=None, null=True, index=True)),
}

MAILBOX: dict[str, tuple[type, dict[str, Any]]] = {
    "id": (UUID, _params(default=UUID4(), primary_key=True)),
    "owner_id": (Integer, _params(default=0, index=True)),
    "team": _varchar(64),
    "label": _varchar(100),
    "host": _varchar(253),
    "port": (Integer, _params(default=0)),
    "security": _varchar(16),
    "folder": _varchar(200, default="INBOX"),
    "address": _varchar(254),
    "purpose": _varchar(32),
    "login": _text(),
    "enabled": (Boolean, _params(default=True)),
    "uid_validity": (BigInt, _params(default=0)),
    "last_uid": (BigInt, _params(default=0)),
    "seen": (Integer, _params(default=0)),
    "captured": (Integer, _params(default=0)),
    "skipped": (Integer, _params(default=0)),
    "total_captured": (Integer, _params(default=0)),
    "state": _varchar(16, default="idle"),
    "lease_until": _moment(default=None, null=True),
    "last_run_at": _moment(default=None, null=True),
    "last_error": _varchar(200),
    "created_at": _moment(),
    "updated_at": _moment(),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="mailcapture", description=DESCRIPTION)
    for class_name, tablename, columns in (
        ("CapturedMail", "captured_mail", CAPTURED_MAIL),
        ("Mailbox", "mailbox", MAILBOX),
    ):
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
