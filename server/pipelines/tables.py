"""Pipeline configuration tables. Configuration, not customer data: no person appears here.

A deal names its pipeline (``deal.pipeline_id``) and its stage by the stage's ``key``: a
short code fixed when the stage is added, so renaming a stage touches no deal and reports
keep grouping by the same value. Only :class:`server.pipelines.service.Pipelines` writes
to these tables.
"""

from __future__ import annotations

from piccolo.columns import UUID, Integer, Timestamptz, Varchar
from piccolo.table import Table

# Created by the migration with today's five stages; deals without a pipeline belong here.
DEFAULT_PIPELINE_ID = "5a1e5000-0000-4000-8000-000000000001"


class Pipeline(Table, tablename="pipeline"):
    id = UUID(primary_key=True)
    name = Varchar(length=100)
    position = Integer(default=0)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class PipelineStage(Table, tablename="pipeline_stage"):
    id = UUID(primary_key=True)
    pipeline_id = UUID(index=True)
    key = Varchar(length=32)  # what deal.stage holds; never changes
    name = Varchar(length=100)
    position = Integer(default=0)
    probability = Integer(default=0)  # a deal entering the stage gets this probability
    kind = Varchar(length=8, default="open")  # open | won | lost
    archived_at = Timestamptz(null=True, default=None)
