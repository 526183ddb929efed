"""The default "Sales" pipeline with the five stages deals had before pipelines existed.

Its id is fixed (``server.pipelines.tables.DEFAULT_PIPELINE_ID``): the crm migration that
adds ``deal.pipeline_id`` points every existing deal at it. A stage key is unique within
its pipeline (a deal's stage is found by pipeline and key).
"""

import datetime as dt
import uuid

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns import UUID, Integer, Timestamptz, Varchar
from piccolo.engine import engine_finder
from piccolo.table import Table

ID = "2026-11-29T19:51:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "the default Sales pipeline"

DEFAULT_PIPELINE_ID = "5a1e5000-0000-4000-8000-000000000001"
STAGES = (  # key, name, probability, kind
    ("qualification", "Qualification", 10, "open"),
    ("proposal", "Proposal", 30, "open"),
    ("negotiation", "Negotiation", 60, "open"),
    ("won", "Won", 100, "won"),
    ("lost", "Lost", 0, "lost"),
)


class Pipeline(Table, tablename="pipeline"):  # as of this migration
    id = UUID(primary_key=True)
    name = Varchar(length=100)
    position = Integer()
    created_at = Timestamptz()
    updated_at = Timestamptz()


class PipelineStage(Table, tablename="pipeline_stage"):  # as of this migration
    id = UUID(primary_key=True)
    pipeline_id = UUID()
    key = Varchar(length=32)
    name = Varchar(length=100)
    position = Integer()
    probability = Integer()
    kind = Varchar(length=8)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pipelines", description=DESCRIPTION)

    async def seed() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(
            "CREATE UNIQUE INDEX pipeline_stage_key_idx ON pipeline_stage (pipeline_id, key)"
        )
        now = dt.datetime.now(dt.UTC)
        pipeline = uuid.UUID(DEFAULT_PIPELINE_ID)
        await Pipeline.insert(
            Pipeline(id=pipeline, name="Sales", position=0, created_at=now, updated_at=now)
        ).run()
        await PipelineStage.insert(
            *(
                PipelineStage(
                    id=uuid.uuid4(),
                    pipeline_id=pipeline,
                    key=key,
                    name=name,
                    position=i,
                    probability=probability,
                    kind=kind,
                )
                for i, (key, name, probability, kind) in enumerate(STAGES)
            )
        ).run()

    manager.add_raw(seed)
    return manager
