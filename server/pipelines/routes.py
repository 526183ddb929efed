"""``/api/v1/pipelines``: pipelines and their stages over REST, thin routes over
:class:`server.pipelines.service.Pipelines` (which asks the policy, ``pipeline manage``,
and audits every change). Staff session as for every API route; roles without it get 403,
unknown ids 404, bad input 400 naming the field."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from server.auth.service import StaffIdentity
from server.gateway import Actor
from server.pipelines.service import KINDS, PipelineConfig, Pipelines, Stage
from server.web import policy_guard, provide_actor, provide_identity

NO_ACCESS = "your role may not manage pipelines"


class StageOut(msgspec.Struct):
    id: str
    pipeline_id: str
    key: str
    name: str
    position: int
    probability: int
    kind: str
    archived: bool


class PipelineOut(msgspec.Struct):
    id: str
    name: str
    position: int
    stages: list[StageOut]


class PipelineList(msgspec.Struct):
    items: list[PipelineOut]


class PipelineIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class StageIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    kind: Literal["open", "won", "lost"] = "open"
    probability: int | None = None


class StageChange(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    probability: int | None = None
    move: Literal["up", "down"] | None = None
    archive: bool = False


def _stage(stage: Stage) -> StageOut:
    return StageOut(
        stage.id,
        stage.pipeline_id,
        stage.key,
        stage.name,
        stage.position,
        stage.probability,
        stage.kind,
        stage.archived,
    )


def _pipeline(pipeline: PipelineConfig) -> PipelineOut:
    return PipelineOut(
        pipeline.id, pipeline.name, pipeline.position, [_stage(s) for s in pipeline.stages]
    )


class PipelineRoutes(Controller):
    path = "/api/v1/pipelines"
    tags = ["pipelines"]
    guards = [policy_guard("pipeline", "manage", NO_ACCESS)]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get("/", description="Every pipeline with its stages in board order (archived included).")
    async def list_pipelines(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> PipelineList:
        return PipelineList([_pipeline(p) for p in await pipelines.all()])

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        description="A new pipeline: it starts with one open stage and the won and lost stages.",
    )
    async def create_pipeline(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        data: JSONBody[PipelineIn],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> PipelineOut:
        created = await pipelines.create_pipeline(actor, data.name)
        return _pipeline(created)

    @get("/{pipeline_id:uuid}", description="One pipeline and its stages.")
    async def get_pipeline(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        pipeline_id: FromPath[UUID],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> PipelineOut:
        return _pipeline(await pipelines.get(str(pipeline_id)))

    @patch("/{pipeline_id:uuid}", description="Rename a pipeline.")
    async def rename_pipeline(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        pipeline_id: FromPath[UUID],
        data: JSONBody[PipelineIn],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> PipelineOut:
        return _pipeline(await pipelines.rename_pipeline(actor, str(pipeline_id), data.name))

    @post(
        "/{pipeline_id:uuid}/stages",
        status_code=HTTP_201_CREATED,
        description=(
            "Add a stage: `name`, `kind` (" + ", ".join(KINDS) + "), `probability` (0-100, "
            "open stages). Its `key` (what deals store) is derived from the name and never "
            "changes."
        ),
    )
    async def add_stage(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        pipeline_id: FromPath[UUID],
        data: JSONBody[StageIn],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> StageOut:
        stage = await pipelines.add_stage(
            actor, str(pipeline_id), data.name, data.kind, data.probability
        )
        return _stage(stage)

    @patch(
        "/stages/{stage_id:uuid}",
        description=(
            "Change a stage: rename it, set its probability, move it `up` or `down`, or "
            "`archive` it (only once no deal is in it). Returns the stage's pipeline."
        ),
    )
    async def change_stage(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        stage_id: FromPath[UUID],
        data: JSONBody[StageChange],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> PipelineOut:
        key = str(stage_id)
        stage = await pipelines.update_stage(
            actor, key, name=data.name, probability=data.probability
        )  # no change asked: answers the stage as it is (and 404 for an unknown one)
        result = await pipelines.get(stage.pipeline_id)
        if data.move is not None:
            result = await pipelines.move_stage(actor, key, -1 if data.move == "up" else 1)
        if data.archive:
            result = await pipelines.archive_stage(actor, key)
        return _pipeline(result)
