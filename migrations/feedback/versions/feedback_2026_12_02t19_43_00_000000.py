"""One count per survey and score (Piccolo runs raw SQL before it creates tables, so the
unique index comes in its own migration after the table's), and the CSAT survey every
closed case is asked, under a fixed id (``server.feedback.service.CSAT_SURVEY_ID``)."""

import datetime as dt
import uuid

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns import UUID, Boolean, Timestamptz, Varchar
from piccolo.table import Table

ID = "2026-12-02T19:43:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "feedback tally unique per survey and score; the CSAT survey"
CSAT_SURVEY_ID = "c5a70000-0000-4000-8000-000000000001"


class Survey(Table, tablename="survey"):  # as it stands in this migration
    id = UUID(primary_key=True)
    name = Varchar(length=100)
    question = Varchar(length=300)
    kind = Varchar(length=8)
    anonymous = Boolean(default=False)
    campaign_id = UUID(null=True, default=None)
    created_at = Timestamptz()
    created_by = Varchar(length=64, default="")


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="feedback", description=DESCRIPTION)

    async def unique_tally_and_csat() -> None:
        await Survey.raw(
            "CREATE UNIQUE INDEX feedback_tally_survey_score ON feedback_tally (survey_id, score)"
        )
        await Survey.insert(
            Survey(
                id=uuid.UUID(CSAT_SURVEY_ID),
                name="Customer satisfaction after a case",
                question="How satisfied are you with how we handled your request?",
                kind="csat",
                anonymous=False,
                campaign_id=None,
                created_at=dt.datetime.now(dt.UTC),
                created_by="system:migration",
            )
        ).run()

    manager.add_raw(unique_tally_and_csat)
    return manager
