"""The service desk (issue 21, items 3 and 5; docs/service-desk.md): the ``case_message``
customer table (a case's conversation, sealed under the person's key) and the desk's own
tables (queues, SLA policies, case state, mail threading, canned responses, the portal's
rate-limit counter). None of the desk tables holds personal data."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T19:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "case_message and the service desk tables"


def _p(**overrides: Any) -> dict[str, Any]:
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


def _serial() -> tuple[type, dict[str, Any]]:
    return Serial, _p(primary_key=True)


def _text(default: str = "") -> tuple[type, dict[str, Any]]:
    return Text, _p(default=default)


def _varchar(length: int, default: str = "", **kw: Any) -> tuple[type, dict[str, Any]]:
    return Varchar, _p(length=length, default=default, **kw)


def _int(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Integer, _p(**{"default": 0, **kw})


def _maybe_int(**kw: Any) -> tuple[type, dict[str, Any]]:
    return Integer, _p(default=None, null=True, **kw)


def _moment(**kw: Any) -> tuple[type, dict[str, Any]]:
    params = {"default": None, "null": True, **kw}
    if not params["null"]:
        params["default"] = TimestamptzNow()
    return Timestamptz, _p(**params)


def _uuid(**kw: Any) -> tuple[type, dict[str, Any]]:
    return UUID, _p(**{"default": None if kw.get("null") else UUID4(), **kw})


TABLES: dict[tuple[str, str], dict[str, tuple[type, dict[str, Any]]]] = {
    ("CaseMessage", "case_message"): {
        "id": _uuid(primary_key=True),
        "subject_id": _uuid(index=True),
        "owner_id": _int(index=True),
        "team": _varchar(64, index=True),
        "created_at": _moment(null=False, index=True),
        "updated_at": _moment(null=False),
        "body": _text(),
        "kind": _varchar(16),
        "case_id": _uuid(index=True),
    },
    ("SlaPolicy", "desk_sla_policy"): {
        "id": _serial(),
        "name": _varchar(80),
        "time_zone": _varchar(64, "UTC"),
        "hours": _text("{}"),
        "holidays": _text("[]"),
        "targets": _text("{}"),
        "warn_percent": _int(default=80),
        "updated_at": _moment(null=False),
    },
    ("DeskQueue", "desk_queue"): {
        "id": _serial(),
        "name": _varchar(80),
        "team": _varchar(64, unique=True),
        "routing": _varchar(16, "round_robin"),
        "sla_policy_id": _maybe_int(),
        "lead_id": _maybe_int(),
        "last_assigned_id": _maybe_int(),
        "updated_at": _moment(null=False),
    },
    ("DeskCase", "desk_case"): {
        "case_id": _uuid(primary_key=True),
        "case_ref": _varchar(16, unique=True),
        "subject_id": _uuid(index=True),
        "contact_id": _uuid(index=True),
        "queue_id": _maybe_int(index=True),
        "team": _varchar(64, index=True),
        "assignee_id": _maybe_int(index=True),
        "channel": _varchar(16),
        "priority": _varchar(16, "normal"),
        "state": _varchar(16, "open", index=True),
        "opened_at": _moment(null=False),
        "first_response_due": _moment(index=True),
        "resolution_due": _moment(index=True),
        "next_due": _moment(null=False, index=True),
        "first_response_at": _moment(),
        "resolved_at": _moment(),
        "sla": _varchar(16, "ok", index=True),
        "warned_at": _moment(),
        "breached_at": _moment(),
        "escalated_to": _maybe_int(),
        "last_customer_at": _moment(),
        "dsr_kind": _varchar(16, index=True),
        "dsr_message_id": _uuid(null=True),
        "dsr_flagged_at": _moment(),
        "dsr_request_id": _varchar(64),
        "updated_at": _moment(null=False),
    },
    ("MailThread", "desk_mail_thread"): {
        "id": _serial(),
        "digest": _varchar(64, unique=True),
        "case_id": _uuid(index=True),
        "created_at": _moment(null=False),
    },
    ("CannedResponse", "desk_canned_response"): {
        "id": _serial(),
        "team": _varchar(64, index=True),
        "title": _varchar(120),
        "body": _text(),
        "updated_by": _int(),
        "updated_at": _moment(null=False),
    },
    ("PortalPost", "desk_portal_post"): {
        "id": _serial(),
        "subject_id": _uuid(index=True),
        "at": _moment(null=False, index=True),
    },
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="servicedesk", description=DESCRIPTION)
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
