"""Webhooks (endpoints, the durable delivery queue, the delivery log) and the register of
recipients with the notices they were sent (issue 19). Configuration and delivery
metadata: no personal values (payloads carry ids and field names only)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T15:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhooks, their delivery queue and log; recipients and their notices"


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
    return UUID, _params(**{"default": UUID4(), **kw})


def _varchar(length: int, **kw: Any) -> tuple[type, dict[str, Any]]:
    return Varchar, _params(length=length, **{"default": "", **kw})


def _text(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Text, _params(**{"default": "", **kw})


def _integer(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Integer, _params(**{"default": 0, **kw})


def _boolean(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Boolean, _params(**{"default": True, **kw})


def _moment(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Timestamptz, _params(**{"default": TimestamptzNow(), **kw})


TABLES: dict[tuple[str, str], dict[str, tuple[type, dict[str, Any]]]] = {
    ("WebhookEndpoint", "webhook_endpoint"): {
        "id": _uuid(primary_key=True),
        "name": _varchar(100),
        "url": _varchar(500),
        "secret": _text(),
        "event_types": _varchar(500),
        "active": _boolean(),
        "disabled_reason": _varchar(32),
        "failures": _integer(),
        "created_at": _moment(),
        "updated_at": _moment(),
    },
    ("WebhookDelivery", "webhook_delivery"): {
        "id": _uuid(primary_key=True),
        "endpoint_id": _uuid(index=True),
        "message_id": _varchar(40),
        "event_type": _varchar(40),
        "payload": _text(),
        "state": _varchar(12, default="pending", index=True),
        "attempts": _integer(),
        "next_attempt_at": _moment(index=True),
        "lease_until": _moment(default=None, null=True),
        "last_status": _integer(),
        "last_error": _varchar(40),
        "created_at": _moment(),
        "delivered_at": _moment(default=None, null=True),
    },
    ("WebhookAttempt", "webhook_attempt"): {
        "id": _uuid(primary_key=True),
        "delivery_id": _uuid(index=True),
        "endpoint_id": _uuid(index=True),
        "at": _moment(),
        "status": _integer(),
        "error": _varchar(40),
        "duration_ms": _integer(),
    },
    ("Recipient", "recipient"): {
        "id": _uuid(primary_key=True),
        "name": _varchar(100),
        "kind": _varchar(12, default="processor"),
        "purposes": _varchar(500),
        "fields": _varchar(1000),
        "channel": _varchar(8, default="email"),
        "email": _varchar(254),
        "endpoint_id": _uuid(default=None, null=True),
        "active": _boolean(),
        "created_at": _moment(),
        "updated_at": _moment(),
    },
    ("RecipientNotice", "recipient_notice"): {
        "id": _uuid(primary_key=True),
        "recipient_id": _uuid(index=True),
        "subject_id": _uuid(index=True),
        "request_id": _uuid(default=None, null=True, index=True),
        "reason": _varchar(16),
        "state": _varchar(12, default="pending"),
        "attempts": _integer(),
        "next_attempt_at": _moment(),
        "lease_until": _moment(default=None, null=True),
        "last_error": _varchar(40),
        "reminders": _integer(),
        "delivery_id": _uuid(default=None, null=True),
        "created_at": _moment(),
        "sent_at": _moment(default=None, null=True),
        "acknowledged_at": _moment(default=None, null=True),
    },
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="integrations", description=DESCRIPTION)
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
