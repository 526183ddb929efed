"""Feedback (issue 21, item 6): survey answers (a record type), surveys, invitations,
counts and the cases sent their CSAT question."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Boolean, Date, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.date import DateNow
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T19:42:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "survey answers, surveys, invitations and counts"


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


TABLES: dict[str, tuple[str, dict[str, tuple[type, dict[str, Any]]]]] = {
    "FeedbackAnswer": (
        "feedback_answer",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "subject_id": (UUID, _params(default=UUID4(), index=True)),
            "owner_id": (Integer, _params(default=0, index=True)),
            "team": (Varchar, _params(default="", length=64, index=True)),
            "created_at": (Timestamptz, _params(default=TimestamptzNow(), index=True)),
            "updated_at": (Timestamptz, _params(default=TimestamptzNow())),
            "survey_id": (UUID, _params(default=UUID4(), index=True)),
            "kind": (Varchar, _params(default="", length=8, index=True)),
            "score": (Text, _params(default="")),
            "comment": (Text, _params(default=None, null=True)),
            "case_id": (UUID, _params(default=None, null=True, index=True)),
            "contact_id": (UUID, _params(default=UUID4(), index=True)),
        },
    ),
    "Survey": (
        "survey",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "name": (Varchar, _params(default="", length=100)),
            "question": (Varchar, _params(default="", length=300)),
            "kind": (Varchar, _params(default="", length=8)),
            "anonymous": (Boolean, _params(default=False)),
            "campaign_id": (UUID, _params(default=None, null=True, index=True)),
            "created_at": (Timestamptz, _params(default=TimestamptzNow())),
            "created_by": (Varchar, _params(default="", length=64)),
        },
    ),
    "SurveyInvitation": (
        "survey_invitation",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "token_hash": (Varchar, _params(default="", length=64, unique=True)),
            "survey_id": (UUID, _params(default=UUID4(), index=True)),
            "subject_id": (UUID, _params(default=UUID4(), index=True)),
            "case_id": (UUID, _params(default=None, null=True)),
            "expires_at": (Timestamptz, _params(default=TimestamptzNow(), index=True)),
        },
    ),
    "FeedbackTally": (
        "feedback_tally",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "survey_id": (UUID, _params(default=UUID4(), index=True)),
            "score": (Integer, _params(default=0)),
            "answers": (Integer, _params(default=0)),
        },
    ),
    "CaseSurvey": (
        "case_survey",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "case_id": (UUID, _params(default=UUID4(), unique=True)),
            "sent_on": (Date, _params(default=DateNow())),
        },
    ),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="feedback", description=DESCRIPTION)
    for class_name, (tablename, columns) in TABLES.items():
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
