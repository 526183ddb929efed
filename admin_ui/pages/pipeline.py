"""The deal board (``/pipeline``) and the pipeline settings for admins (``/admin/pipelines``).

The board is one column per stage with the deals this user may list (the gateway applies
the record scope), a compact card per deal, per-stage counts and totals, and at most
``CARDS_PER_COLUMN`` cards per column (a link leads to the filtered deal list for the
rest). A deal moves three ways, all through the same form post: dragging the card to
another column (``static/board.js`` submits the card's form), or the card's "Move"
disclosure (a stage select and a button), which works by keyboard and without
JavaScript. Moving to a lost stage without a reason answers with a short form asking for
it. Roles that may not change a deal's stage get no move controls, and a forced move is
answered with a clear 403 page.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_403_FORBIDDEN

from admin_ui.forms import ChoiceGroup, FieldChoices, choice_label
from admin_ui.rendering import error_page, flash, render, see_other
from admin_ui.rights import PIPELINE_RIGHT
from admin_ui.session import Visit, page_access, provide_visit
from server.campaigns.service import campaign_choices
from server.datamap import LOST_REASONS
from server.gateway import Conflict, Forbidden, Gateway, InvalidInput, NotFound
from server.pipelines.service import KINDS, Board, Pipelines
from server.reports.service import money
from server.web import services_of


def _pipelines(request: Request[Any, Any, Any]) -> Pipelines:
    return services_of(request).pipelines


def _text(form: Any, name: str, limit: int = 200) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


async def deal_choices(
    request: Request[Any, Any, Any], current: Mapping[str, Any]
) -> dict[str, FieldChoices]:
    """The deal form's choices provider (``admin_ui.pages.records``): a select of the
    pipelines, and of the stages grouped by pipeline (one ``<optgroup>`` each, so the form
    works without JavaScript; ``record-form.js`` then shows only the chosen pipeline's).

    Archived stages take no deals and are left out, except the one a deal is still in,
    so its edit form shows where it is. The gateway's deal rule checks what comes back.
    """
    pipelines = _pipelines(request)
    every = await pipelines.all()
    default = (await pipelines.default()).id if every else ""
    pipeline_id = str(current.get("pipeline_id") or "")
    stage = str(current.get("stage") or "")
    groups = tuple(
        ChoiceGroup(
            key=p.id,
            label=p.name,
            options=tuple(
                (s.key, f"{s.name} (archived)" if s.archived else s.name)
                for s in p.stages
                if not s.archived or (p.id == pipeline_id and s.key == stage)
            ),
        )
        for p in every
    )
    return {
        "campaign_id": FieldChoices(options=tuple(await campaign_choices())),
        "pipeline_id": FieldChoices(options=tuple((p.id, p.name) for p in every)),
        "stage": FieldChoices(groups=groups, depends_on="pipeline_id", default_group=default),
    }


class BoardPages(Controller):
    path = "/pipeline"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    async def _board(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        pipeline_id: str,
        *,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Template:
        pipelines = _pipelines(request)
        board: Board = await pipelines.board(visit.actor, pipeline_id)
        owners = await _owner_names(request, board)
        today = dt.datetime.now(dt.UTC).date()
        return await render(
            request,
            "pipeline/board.html",
            visit=visit,
            status=status,
            section="pipeline",
            title=board.pipeline.name,
            board=board,
            pipelines=await pipelines.all(),
            errors=errors or {},
            money=money,
            owners=owners,
            today=today,
            close_date=_close_date,
            days_in_stage=lambda deal: _days_in_stage(deal, today),
            more_link=lambda stage: (
                "/deals?" + urlencode({"pipeline_id": board.pipeline.id, "stage": stage})
            ),
            may_manage=pipelines.may_manage(visit.identity.role),
            may_move=may_move(request, visit),
        )

    @get("/")
    async def default_board(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> Template:
        pipeline = await pipelines.default()
        return await self._board(request, visit, pipeline.id)

    @get("/{pipeline_id:str}")
    async def board(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pipeline_id: FromPath[str],
    ) -> Template:
        return await self._board(request, visit, pipeline_id)

    @post("/{pipeline_id:str}/deals/{deal_id:str}/move")
    async def move(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pipeline_id: FromPath[str],
        deal_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
        pipelines: NamedDependency[Pipelines],
    ) -> Template | Redirect | Response[Any]:
        pipeline = await pipelines.get(pipeline_id)
        form = await request.form()
        key = _text(form, "stage", 32)
        reason = _text(form, "lost_reason", 32)
        if not may_move(request, visit):
            # The gateway refuses and audits the attempt; the answer says why, and reveals
            # nothing about the deal (the same whether it exists or not).
            with contextlib.suppress(NotFound, Forbidden):
                await pipelines.move_deal(visit.actor, deal_id, key, reason or None)
            return error_page(
                request,
                HTTP_403_FORBIDDEN,
                "Not allowed",
                "Your role may look at the board but not move deals. "
                "Ask the deal's owner or an admin to move it.",
            )
        stage = pipeline.stage(key)
        if stage is not None and stage.kind == "lost" and not reason:
            deal = await gateway.read(visit.actor, "deal", deal_id)
            return await render(
                request,
                "pipeline/lost.html",
                visit=visit,
                section="pipeline",
                title="Why was the deal lost?",
                pipeline=pipeline,
                stage=stage,
                deal=deal,
                reasons=[(r, choice_label(r)) for r in LOST_REASONS],
                error="",
            )
        try:
            deal = await pipelines.move_deal(visit.actor, deal_id, key, reason or None)
        except InvalidInput as exc:
            if stage is not None and "lost_reason" in exc.problems:
                deal = await gateway.read(visit.actor, "deal", deal_id)
                return await render(
                    request,
                    "pipeline/lost.html",
                    visit=visit,
                    status=HTTP_400_BAD_REQUEST,
                    section="pipeline",
                    title="Why was the deal lost?",
                    pipeline=pipeline,
                    stage=stage,
                    deal=deal,
                    reasons=[(r, choice_label(r)) for r in LOST_REASONS],
                    error="Choose one of the reasons.",
                )
            problems = {deal_id: "; ".join(exc.problems.values()) or exc.message}
            return await self._board(
                request, visit, pipeline.id, errors=problems, status=HTTP_400_BAD_REQUEST
            )
        # Not the deal's title: it is encrypted free text ("Renewal for Jane Doe"), and a
        # flash message waits in the session table in plaintext until the next page.
        name = stage.name if stage else key
        await flash(request, visit, f"Deal moved to {name}.")
        return see_other(f"/pipeline/{pipeline.id}#deal-{deal.id}")


def may_move(request: Request[Any, Any, Any], visit: Visit) -> bool:
    """Whether the role may change a deal's stage (a policy question; no record read)."""
    writable = services_of(request).gateway.permitted_fields(visit.actor, "deal", "update")
    return writable is not None and "stage" in writable


async def _owner_names(request: Request[Any, Any, Any], board: Board) -> dict[int, str]:
    """Staff names for the cards' owners (staff data, not customer data)."""
    accounts = services_of(request).accounts
    names: dict[int, str] = {}
    for owner_id in sorted({card.owner_id for c in board.columns for card in c.cards}):
        found = await accounts.get_user(owner_id)
        if found is not None:
            names[owner_id] = found[0].display_name or found[0].email
    return names


def _days_in_stage(deal: Any, today: dt.date) -> int:
    """Whole days since the deal entered its stage (since it was created, if the stage
    entry time is hidden from the role or unknown)."""
    entered = deal.values.get("stage_entered_at")
    if isinstance(entered, str):
        try:
            entered = dt.datetime.fromisoformat(entered)
        except ValueError:
            entered = None
    moment = entered if isinstance(entered, dt.datetime) else deal.created_at
    return max(0, (today - moment.astimezone(dt.UTC).date()).days)


def _close_date(value: object) -> dt.date | None:
    """A deal's expected close date, as a date (the gateway hands back ISO text)."""
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


class PipelineSettingsPages(Controller):
    """Admins only (404 for anyone else); the service checks the policy again."""

    path = "/admin/pipelines"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=PIPELINE_RIGHT)

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        error: str = "",
        status: int = 200,
    ) -> Template:
        return await render(
            request,
            "pipeline/settings.html",
            visit=visit,
            status=status,
            section="pipeline",
            title="Pipelines",
            pipelines=await _pipelines(request).all(),
            kinds=KINDS,
            error=error,
        )

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await self._page(request, visit)

    async def _change(
        self, request: Request[Any, Any, Any], visit: Visit, done: str, change: Any
    ) -> Template | Redirect:
        try:
            await change
        except (InvalidInput, Conflict) as exc:
            return await self._page(request, visit, error=exc.message, status=exc.status_code)
        await flash(request, visit, done)
        return see_other("/admin/pipelines")

    @post("/new")
    async def create(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> Template | Redirect:
        form = await request.form()
        change = pipelines.create_pipeline(visit.actor, _text(form, "name"))
        return await self._change(request, visit, "Pipeline created.", change)

    @post("/{pipeline_id:str}/rename")
    async def rename(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pipeline_id: FromPath[str],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> Template | Redirect:
        form = await request.form()
        change = pipelines.rename_pipeline(visit.actor, pipeline_id, _text(form, "name"))
        return await self._change(request, visit, "Pipeline renamed.", change)

    @post("/{pipeline_id:str}/stages")
    async def add_stage(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pipeline_id: FromPath[str],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> Template | Redirect:
        form = await request.form()
        probability = _text(form, "probability", 3)
        if probability and not probability.isdigit():
            return await self._page(
                request, visit, error="Probability: a whole number from 0 to 100.", status=400
            )
        change = pipelines.add_stage(
            visit.actor,
            pipeline_id,
            _text(form, "name"),
            _text(form, "kind", 8),
            int(probability) if probability else None,
        )
        return await self._change(request, visit, "Stage added.", change)

    @post("/stages/{stage_id:str}")
    async def update_stage(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        stage_id: FromPath[str],
        *,
        pipelines: NamedDependency[Pipelines],
    ) -> Template | Redirect:
        form = await request.form()
        action = _text(form, "action", 16)
        if action in ("up", "down"):
            change: Any = pipelines.move_stage(visit.actor, stage_id, -1 if action == "up" else 1)
            return await self._change(request, visit, "Stage moved.", change)
        if action == "archive":
            change = pipelines.archive_stage(visit.actor, stage_id)
            return await self._change(request, visit, "Stage archived.", change)
        if action != "save":
            raise NotFound("no such change")
        probability = _text(form, "probability", 3)
        if probability and not probability.isdigit():
            return await self._page(
                request, visit, error="Probability: a whole number from 0 to 100.", status=400
            )
        change = pipelines.update_stage(
            visit.actor,
            stage_id,
            name=_text(form, "name") if "name" in form else None,
            probability=int(probability) if probability else None,
        )
        return await self._change(request, visit, "Stage saved.", change)
