"""Pipelines: admins configure the stages, deals are checked against them, the board shows them.

A pipeline is configuration (names of stages, their order and default probability), so it
lives in ordinary tables here, outside the gateway. Deals stay customer records: the
gateway calls :meth:`Pipelines.deal_rule` on every deal write (``Gateway.record_rules``),
so a deal's stage always belongs to its pipeline, a lost deal always has a reason, and
won/lost set the probability, whichever path writes the deal (API, admin, import, lead
conversion). The board reads deals through the gateway, so the actor's scope applies.

Every configuration change is audited (ids and stage keys only, never a name typed by an
admin - names are not personal, but the audit log is kept to codes on principle).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import PolicyEngine
from server import db
from server.gateway import Actor, Conflict, Forbidden, Gateway, InvalidInput, NotFound, Record
from server.gateway.gateway import MAX_PAGE_SIZE
from server.pipelines.tables import DEFAULT_PIPELINE_ID, Pipeline, PipelineStage

RESOURCE = "pipeline"  # policy: ``p, admin, pipeline, manage, allow``
KINDS = ("open", "won", "lost")
MAX_NAME = 100
MAX_STAGES = 30
# Cards per column on the board: enough to work a stage, few enough that the board stays
# one screen high; the column links to the filtered deal list for the rest.
CARDS_PER_COLUMN = 8
_KEY_CHARS = re.compile(r"[^a-z0-9]+")
CONFIG_ACTOR = Actor.system("pipeline-config")


@dataclass(frozen=True)
class Stage:
    id: str
    pipeline_id: str
    key: str  # what deal.stage holds
    name: str
    position: int
    probability: int
    kind: str  # open | won | lost
    archived: bool


@dataclass(frozen=True)
class PipelineConfig:
    id: str
    name: str
    position: int
    stages: tuple[Stage, ...]  # in board order, archived ones included

    @property
    def active_stages(self) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if not s.archived)

    def stage(self, key: str) -> Stage | None:
        """An active stage by key (an archived stage takes no deals)."""
        return next((s for s in self.active_stages if s.key == key), None)

    @property
    def first_open(self) -> Stage | None:
        return next((s for s in self.active_stages if s.kind == "open"), None)


@dataclass(frozen=True)
class Column:
    stage: Stage
    cards: tuple[Record, ...]
    total: int  # deals in the stage the actor may see (more than the cards if capped)
    amounts: tuple[tuple[str, int], ...]  # (currency, minor units); "" for no currency

    @property
    def more(self) -> int:
        return self.total - len(self.cards)


@dataclass(frozen=True)
class Board:
    pipeline: PipelineConfig
    columns: tuple[Column, ...]
    # contact id -> the person's name, for the cards' contacts the actor may list and
    # whose name fields they may read (no entry: the card shows no name).
    people: Mapping[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(c.total for c in self.columns)


def _name(value: object, what: str = "name") -> str:
    if not isinstance(value, str) or not " ".join(value.split()):
        raise InvalidInput(f"{what}: must not be empty", problems={what: "must not be empty"})
    name = " ".join(value.split())
    if len(name) > MAX_NAME:
        raise InvalidInput(
            f"{what}: longer than {MAX_NAME} characters",
            problems={what: f"longer than {MAX_NAME} characters"},
        )
    return name


def _probability(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidInput(
            "probability: must be a whole number from 0 to 100",
            problems={"probability": "must be a whole number from 0 to 100"},
        )
    return value


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found") from None


def stage_key(name: str, taken: Sequence[str]) -> str:
    """A stable code for a new stage from its name ("Demo booked" -> "demo_booked"),
    unique within the pipeline."""
    base = _KEY_CHARS.sub("_", name.casefold()).strip("_")[:28] or "stage"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    return key


async def stage_kinds() -> dict[tuple[str, str], str]:
    """(pipeline id, stage key) -> open | won | lost, archived stages included: the
    reports count won and lost deals by kind, whatever a stage is called."""
    rows = await PipelineStage.select(
        PipelineStage.pipeline_id, PipelineStage.key, PipelineStage.kind
    )
    return {(str(r["pipeline_id"]), str(r["key"])): str(r["kind"]) for r in rows}


async def stage_probabilities() -> dict[tuple[str, str], int]:
    """(pipeline id, stage key) -> the stage's default probability: the forecast's weight
    for a deal that has no probability of its own."""
    rows = await PipelineStage.select(
        PipelineStage.pipeline_id, PipelineStage.key, PipelineStage.probability
    )
    return {(str(r["pipeline_id"]), str(r["key"])): int(r["probability"]) for r in rows}


async def pipeline_names() -> dict[str, str]:
    """Pipeline id -> its name (configuration): how a customer score names a product line."""
    rows = await Pipeline.select(Pipeline.id, Pipeline.name)
    return {str(r["id"]): str(r["name"]) for r in rows}


async def stage_order() -> dict[str, int]:
    """Stage key -> its earliest board position in any pipeline (report rows in board
    order; the default pipeline's keys come first where positions tie)."""
    rows = await PipelineStage.select(PipelineStage.key, PipelineStage.position).order_by(
        PipelineStage.position
    )
    order: dict[str, int] = {}
    for r in rows:
        order.setdefault(str(r["key"]), int(r["position"]))
    return order


class Pipelines:
    def __init__(self, audit: AuditLog, policy: PolicyEngine, gateway: Gateway) -> None:
        self._audit = audit
        self._policy = policy
        self._gateway = gateway

    # --- reading the configuration ----------------------------------------------------------

    def may_manage(self, role: str) -> bool:
        return self._policy.allows(role, RESOURCE, "manage")

    @staticmethod
    def _stage_of(row: Mapping[str, Any]) -> Stage:
        return Stage(
            id=str(row["id"]),
            pipeline_id=str(row["pipeline_id"]),
            key=str(row["key"]),
            name=str(row["name"]),
            position=int(row["position"]),
            probability=int(row["probability"]),
            kind=str(row["kind"]),
            archived=row["archived_at"] is not None,
        )

    async def all(self) -> list[PipelineConfig]:
        pipelines = await Pipeline.select().order_by(Pipeline.position).order_by(Pipeline.name)
        stages = await PipelineStage.select().order_by(PipelineStage.position)
        by_pipeline: dict[str, list[Stage]] = {}
        for row in stages:
            stage = self._stage_of(row)
            by_pipeline.setdefault(stage.pipeline_id, []).append(stage)
        return [
            PipelineConfig(
                id=str(p["id"]),
                name=str(p["name"]),
                position=int(p["position"]),
                stages=tuple(by_pipeline.get(str(p["id"]), ())),
            )
            for p in pipelines
        ]

    async def get(self, pipeline_id: str) -> PipelineConfig:
        wanted = _uuid(pipeline_id, "pipeline")
        row = await Pipeline.select().where(Pipeline.id == wanted).first()
        if row is None:
            raise NotFound("pipeline not found")
        stages = (
            await PipelineStage.select()
            .where(PipelineStage.pipeline_id == wanted)
            .order_by(PipelineStage.position)
        )
        return PipelineConfig(
            id=str(row["id"]),
            name=str(row["name"]),
            position=int(row["position"]),
            stages=tuple(self._stage_of(s) for s in stages),
        )

    async def stage_keys_of_kind(self, kind: str) -> tuple[str, ...]:
        """Every stage key, in any pipeline, of stage kind ``kind`` (for retention rules).
        A key reused by another pipeline for a different kind would match too: keys come
        from stage names, so name lost stages distinctly."""
        rows = await PipelineStage.select(PipelineStage.key).where(PipelineStage.kind == kind)
        return tuple(sorted({str(row["key"]) for row in rows}))

    async def default(self) -> PipelineConfig:
        """The default pipeline, or the first one if an installation removed it."""
        try:
            return await self.get(DEFAULT_PIPELINE_ID)
        except NotFound:
            every = await self.all()
            if not every:
                raise NotFound("no pipeline is configured") from None
            return every[0]

    # --- the gateway's rule for deals ---------------------------------------------------------

    async def deal_rule(
        self, values: dict[str, Any], current: Mapping[str, Any] | None
    ) -> dict[str, str]:
        """Check a deal's pipeline and stage; fill in what follows from them.

        On a create, a missing pipeline is the default one and a missing stage its first
        open stage. Entering a stage stamps ``stage_entered_at`` (the board's age in
        stage) and sets the stage's probability unless one is given;
        won and lost always set 100 and 0. A lost deal needs a reason; a deal that leaves
        the lost stage drops it.
        """
        creating = current is None
        touched = {"stage", "pipeline_id", "lost_reason", "probability"} & set(values)
        if not creating and not touched:
            return {}
        problems: dict[str, str] = {}
        given = values.get("pipeline_id")
        stored = None if current is None else current.get("pipeline_id")
        wanted = given or stored
        try:
            pipeline = await (self.get(str(wanted)) if wanted else self.default())
        except NotFound:
            return {"pipeline_id": "no such pipeline"}
        switched = not creating and "pipeline_id" in values and pipeline.id != str(stored)
        if creating or "pipeline_id" in values:
            values["pipeline_id"] = pipeline.id
        old_stage = None if current is None else current.get("stage")
        if "stage" in values:
            key = values["stage"]
        elif creating:
            first = pipeline.first_open
            key = first.key if first else None
        else:
            key = old_stage
        if not key:
            return {"stage": "is required"}
        stage = pipeline.stage(str(key))
        if stage is None:
            keys = ", ".join(s.key for s in pipeline.active_stages)
            return {"stage": f"must be a stage of the pipeline: {keys}"}
        values["stage"] = stage.key
        entering = creating or switched or stage.key != old_stage
        if entering:  # the board's age in stage counts from here
            values["stage_entered_at"] = dt.datetime.now(dt.UTC).isoformat()
        if stage.kind == "won":
            values["probability"] = 100
        elif stage.kind == "lost":
            values["probability"] = 0
        elif entering and values.get("probability") is None:
            values["probability"] = stage.probability
        if stage.kind == "lost":
            if "lost_reason" in values:
                reason = values["lost_reason"]
            else:
                reason = None if current is None else current.get("lost_reason")
            if not reason:
                problems["lost_reason"] = "is required when a deal is lost"
        elif entering and (values.get("lost_reason") or (current or {}).get("lost_reason")):
            values["lost_reason"] = None
        return problems

    # --- the board ----------------------------------------------------------------------------

    async def board(
        self, actor: Actor, pipeline_id: str, *, per_column: int = CARDS_PER_COLUMN
    ) -> Board:
        """Columns of deals the actor may list, per active stage, through the gateway (scope
        compiled into each query), with per-currency totals over every deal in the column."""
        pipeline = await self.get(pipeline_id)
        groups = await self._gateway.aggregate(
            actor, "deal", group_by=("pipeline_id", "stage", "currency"), sum_of="amount"
        )
        amounts: dict[str, dict[str, int]] = {}
        for g in groups:
            if str(g.key[0]) != pipeline.id:
                continue
            per_currency = amounts.setdefault(str(g.key[1]), {})
            currency = str(g.key[2] or "")
            per_currency[currency] = per_currency.get(currency, 0) + (g.total or 0)
        columns = []
        for stage in pipeline.active_stages:
            page = await self._gateway.list(
                actor,
                "deal",
                filters={"pipeline_id": pipeline.id, "stage": stage.key},
                page_size=per_column,
            )
            columns.append(
                Column(
                    stage=stage,
                    cards=tuple(page.items),
                    total=page.total,
                    amounts=tuple(sorted(amounts.get(stage.key, {}).items())),
                )
            )
        cards = [card for column in columns for card in column.cards]
        people = await self._people(actor, [str(c.values.get("contact_id") or "") for c in cards])
        return Board(pipeline=pipeline, columns=tuple(columns), people=people)

    async def _people(self, actor: Actor, contact_ids: Sequence[str]) -> dict[str, str]:
        """The names on the cards: one gateway list of those contacts (scope, field rights
        and the audit apply; a role that may not list contacts gets no names)."""
        wanted = sorted({i for i in contact_ids if i})
        names: dict[str, str] = {}
        for start in range(0, len(wanted), MAX_PAGE_SIZE):
            chunk = wanted[start : start + MAX_PAGE_SIZE]
            try:
                page = await self._gateway.list(
                    actor, "contact", filters={"id": chunk}, page_size=len(chunk)
                )
            except (Forbidden, NotFound):
                return names
            for person in page.items:
                parts = (person.values.get("first_name"), person.values.get("last_name"))
                name = " ".join(str(p) for p in parts if p)
                if name:
                    names[person.id] = name
        return names

    async def move_deal(
        self, actor: Actor, deal_id: str, stage_key: str, lost_reason: str | None = None
    ) -> Record:
        """Move a deal to another stage of its pipeline (the gateway checks and audits)."""
        values: dict[str, Any] = {"stage": stage_key}
        if lost_reason:
            values["lost_reason"] = lost_reason
        return await self._gateway.update(actor, "deal", deal_id, values)

    # --- managing the configuration (admins) -------------------------------------------------

    async def _require_manager(self, actor: Actor, action: str, resource_id: str = "") -> None:
        if self.may_manage(actor.role):
            return
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action=f"pipeline.{action}",
                resource_type=RESOURCE,
                resource_id=resource_id or None,
                outcome=Outcome.DENIED,
                reason="not_allowed",
                request_id=actor.request_id,
            )
        )
        raise Forbidden("your role may not change pipelines")

    async def _record(
        self,
        actor: Actor,
        action: str,
        resource_id: str,
        *,
        fields: tuple[str, ...] = (),
        detail: dict[str, int | str] | None = None,
    ) -> None:
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action=f"pipeline.{action}",
                resource_type=RESOURCE,
                resource_id=resource_id,
                fields=fields,
                outcome=Outcome.ALLOWED,
                request_id=actor.request_id,
                detail=detail or {},
            )
        )

    async def create_pipeline(self, actor: Actor, name: str) -> PipelineConfig:
        """A new pipeline starts with one open stage and the two closing ones, so a deal
        can be created in it and won or lost at once; admins add and rename from there."""
        await self._require_manager(actor, "create")
        clean = _name(name)
        now = dt.datetime.now(dt.UTC)
        new_id = uuid.uuid4()
        async with db.write_transaction():
            count = await Pipeline.count()
            await Pipeline.insert(
                Pipeline(id=new_id, name=clean, position=count, created_at=now, updated_at=now)
            ).run()
            await PipelineStage.insert(
                *(
                    PipelineStage(
                        id=uuid.uuid4(),
                        pipeline_id=new_id,
                        key=key,
                        name=label,
                        position=i,
                        probability=probability,
                        kind=kind,
                        archived_at=None,
                    )
                    for i, (key, label, probability, kind) in enumerate(
                        (
                            ("new", "New", 10, "open"),
                            ("won", "Won", 100, "won"),
                            ("lost", "Lost", 0, "lost"),
                        )
                    )
                )
            ).run()
            await self._record(actor, "create", str(new_id), fields=("name",))
        return await self.get(str(new_id))

    async def rename_pipeline(self, actor: Actor, pipeline_id: str, name: str) -> PipelineConfig:
        await self._require_manager(actor, "rename", pipeline_id)
        pipeline = await self.get(pipeline_id)
        clean = _name(name)
        async with db.write_transaction():
            await Pipeline.update(
                {Pipeline.name: clean, Pipeline.updated_at: dt.datetime.now(dt.UTC)}
            ).where(Pipeline.id == uuid.UUID(pipeline.id))
            await self._record(actor, "rename", pipeline.id, fields=("name",))
        return await self.get(pipeline.id)

    async def _stage(self, stage_id: str) -> tuple[PipelineConfig, Stage]:
        row = await PipelineStage.select().where(PipelineStage.id == _uuid(stage_id, "stage"))
        if not row:
            raise NotFound("stage not found")
        pipeline = await self.get(str(row[0]["pipeline_id"]))
        stage = next(s for s in pipeline.stages if s.id == str(row[0]["id"]))
        return pipeline, stage

    async def add_stage(
        self, actor: Actor, pipeline_id: str, name: str, kind: str, probability: int | None = None
    ) -> Stage:
        """A new stage goes in front of the closing (won/lost) stages if it is open, at the
        end otherwise; its key is derived from the name and never changes."""
        await self._require_manager(actor, "stage_add", pipeline_id)
        pipeline = await self.get(pipeline_id)
        clean = _name(name)
        if kind not in KINDS:
            raise InvalidInput(
                "kind: must be one of: " + ", ".join(KINDS),
                problems={"kind": "must be one of: " + ", ".join(KINDS)},
            )
        chance = {"won": 100, "lost": 0}.get(kind, _probability(probability or 0))
        if len(pipeline.stages) >= MAX_STAGES:
            raise Conflict(f"a pipeline has at most {MAX_STAGES} stages")
        key = stage_key(clean, [s.key for s in pipeline.stages])
        order = list(pipeline.stages)
        at = len(order)
        if kind == "open":
            at = next((i for i, s in enumerate(order) if s.kind != "open"), len(order))
        new_id = uuid.uuid4()
        async with db.write_transaction():
            await PipelineStage.insert(
                PipelineStage(
                    id=new_id,
                    pipeline_id=uuid.UUID(pipeline.id),
                    key=key,
                    name=clean,
                    position=at,
                    probability=chance,
                    kind=kind,
                    archived_at=None,
                )
            ).run()
            await self._renumber(
                [s.id for s in order[:at]] + [str(new_id)] + [s.id for s in order[at:]]
            )
            await self._touch(pipeline.id)
            await self._record(
                actor, "stage_add", pipeline.id, fields=("name", "kind", "probability"),
                detail={"stage": key, "kind": kind},
            )  # fmt: skip
        _, stage = await self._stage(str(new_id))
        return stage

    async def update_stage(
        self,
        actor: Actor,
        stage_id: str,
        *,
        name: str | None = None,
        probability: int | None = None,
    ) -> Stage:
        """Rename a stage or change its default probability; its key (what deals hold)
        stays, so no deal changes. Won and lost keep 100 and 0."""
        await self._require_manager(actor, "stage_update", stage_id)
        pipeline, stage = await self._stage(stage_id)
        changes: dict[Any, Any] = {}
        if name is not None:
            changes[PipelineStage.name] = _name(name)
        if probability is not None:
            if stage.kind != "open":
                raise InvalidInput(
                    "probability: fixed at 100 for won and 0 for lost stages",
                    problems={"probability": "fixed at 100 for won and 0 for lost stages"},
                )
            changes[PipelineStage.probability] = _probability(probability)
        if not changes:
            return stage
        async with db.write_transaction():
            await PipelineStage.update(changes).where(PipelineStage.id == uuid.UUID(stage.id))
            await self._touch(pipeline.id)
            await self._record(
                actor,
                "stage_update",
                pipeline.id,
                fields=tuple(sorted(c._meta.name for c in changes)),
                detail={"stage": stage.key},
            )
        return (await self._stage(stage.id))[1]

    async def move_stage(self, actor: Actor, stage_id: str, offset: int) -> PipelineConfig:
        """Move a stage one place up (-1) or down (+1) on the board."""
        await self._require_manager(actor, "stage_move", stage_id)
        if offset not in (-1, 1):
            raise InvalidInput("offset: must be -1 or 1", problems={"offset": "must be -1 or 1"})
        pipeline, stage = await self._stage(stage_id)
        order = [s.id for s in pipeline.stages]
        i = order.index(stage.id)
        j = i + offset
        if not 0 <= j < len(order):
            return pipeline
        order[i], order[j] = order[j], order[i]
        async with db.write_transaction():
            await self._renumber(order)
            await self._touch(pipeline.id)
            await self._record(
                actor, "stage_move", pipeline.id, detail={"stage": stage.key, "position": j}
            )
        return await self.get(pipeline.id)

    async def archive_stage(self, actor: Actor, stage_id: str) -> PipelineConfig:
        """Take a stage off the board. Only an empty stage (no deal of anyone's in it), and
        never the last open, won or lost stage: deals must always have somewhere to go."""
        await self._require_manager(actor, "stage_archive", stage_id)
        pipeline, stage = await self._stage(stage_id)
        if stage.archived:
            return pipeline
        if sum(1 for s in pipeline.active_stages if s.kind == stage.kind) <= 1:
            raise Conflict(
                f"this is the only {stage.kind} stage of the pipeline; add another first"
            )
        in_stage = await self._deals_in(pipeline.id, stage.key)
        if in_stage:
            raise Conflict(f"{in_stage} deal(s) are in this stage; move them first")
        async with db.write_transaction():
            await PipelineStage.update({PipelineStage.archived_at: dt.datetime.now(dt.UTC)}).where(
                PipelineStage.id == uuid.UUID(stage.id)
            )
            await self._touch(pipeline.id)
            await self._record(actor, "stage_archive", pipeline.id, detail={"stage": stage.key})
        return await self.get(pipeline.id)

    async def _deals_in(self, pipeline_id: str, key: str) -> int:
        """Every deal in the stage, whoever owns it: counted by the gateway as a system job
        (one audited aggregate, nothing decrypted)."""
        groups = await self._gateway.aggregate(
            CONFIG_ACTOR, "deal", group_by=("pipeline_id", "stage")
        )
        return sum(g.count for g in groups if (str(g.key[0]), str(g.key[1])) == (pipeline_id, key))

    @staticmethod
    async def _renumber(stage_ids: Sequence[str]) -> None:
        for position, stage_id in enumerate(stage_ids):
            await PipelineStage.update({PipelineStage.position: position}).where(
                PipelineStage.id == uuid.UUID(stage_id)
            )

    @staticmethod
    async def _touch(pipeline_id: str) -> None:
        await Pipeline.update({Pipeline.updated_at: dt.datetime.now(dt.UTC)}).where(
            Pipeline.id == uuid.UUID(pipeline_id)
        )
