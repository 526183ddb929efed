"""Bulk actions on a list page: assign an owner, move deals to a stage, delete, export.

Ticking rows and choosing an action only leads to a confirmation page that says what
will happen to how many records; the change is a second POST (CSRF-protected like every
admin form). Each record then goes through the gateway on its own, exactly as if edited
one by one: its policy decision, the ownership rules (server.gateway.ownership, via
``Gateway.update(owner_id=...)``), its re-check and one audit event per record. A record
the user may not change (out of scope, gone) is refused by the gateway, audited as a
denial, and counted as "not changed", never revealed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.forms import FieldChoices
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit
from policy.enforcer import Assign
from server.auth.directory import ActiveStaff
from server.datamap import RecordType
from server.gateway import Gateway, GatewayError
from server.web import services_of

MAX_SELECTED = 100  # the largest list page
ACTIONS = {
    "owner": "Assign an owner",
    "stage": "Move to a stage",
    "delete": "Delete",
    "export": "Export selected as CSV",
}


@dataclass(frozen=True)
class BulkMenu:
    """What the list page offers for the ticked rows (only what the policy allows)."""

    actions: tuple[tuple[str, str], ...]
    owners: tuple[tuple[str, str], ...]
    stages: FieldChoices | None


async def menu(
    request: Request[Any, Any, Any],
    visit: Visit,
    rt: RecordType,
    stage_choices: Mapping[str, FieldChoices],
) -> BulkMenu:
    gateway = services_of(request).gateway
    resource = rt.resource
    actions: list[tuple[str, str]] = []
    owners: tuple[tuple[str, str], ...] = ()
    update = gateway.permitted_fields(visit.actor, resource, "update")
    level = gateway.assignment(visit.actor, resource, "update")
    if update is not None and level in {Assign.TEAM, Assign.ANY}:
        team = visit.actor.team if level is Assign.TEAM else None
        owners = tuple((str(i), label) for i, label in await ActiveStaff().choices(team))
        actions.append(("owner", ACTIONS["owner"]))
    stages = stage_choices.get("stage") if update is not None and "stage" in update else None
    if stages is not None:
        actions.append(("stage", ACTIONS["stage"]))
    if gateway.permitted_fields(visit.actor, resource, "delete") is not None:
        actions.append(("delete", ACTIONS["delete"]))
    if gateway.permitted_fields(visit.actor, resource, "export") is not None:
        actions.append(("export", ACTIONS["export"]))
    return BulkMenu(tuple(actions), owners, stages)


@dataclass(frozen=True)
class BulkRequest:
    action: str
    ids: tuple[str, ...]
    owner_id: int | None = None
    stage: str = ""


def read_request(form: Any, allowed: Sequence[str]) -> tuple[BulkRequest | None, str]:
    """The ticked ids and the chosen action, or a reason why not (for a person)."""
    raw_ids = [v for v in form.getall("id", []) if isinstance(v, str)]
    ids: list[str] = []
    for raw in raw_ids[: MAX_SELECTED + 1]:
        try:
            ids.append(str(uuid.UUID(raw)))
        except ValueError:
            return None, "The selection is not valid: go back and tick the records again."
    ids = list(dict.fromkeys(ids))
    action = form.get("action", "")
    if not ids:
        return None, "Tick at least one record first."
    if len(ids) > MAX_SELECTED:
        return None, f"Choose at most {MAX_SELECTED} records at a time."
    if action not in allowed:
        return None, "Choose what to do with the selected records."
    if action == "owner":
        owner = str(form.get("owner_id", "")).strip()
        if not owner.isdigit() or len(owner) > 11:
            return None, "Choose the new owner."
        return BulkRequest(action, tuple(ids), owner_id=int(owner)), ""
    if action == "stage":
        stage = str(form.get("stage", "")).strip()
        if not stage or len(stage) > 32:
            return None, "Choose the stage."
        return BulkRequest(action, tuple(ids), stage=stage), ""
    return BulkRequest(action, tuple(ids)), ""


def describe(bulk: BulkRequest, noun: str, plural: str, menu: BulkMenu) -> str:
    """The confirmation's sentence: what happens to how many records."""
    count = len(bulk.ids)
    things = f"{count} {noun if count == 1 else plural.lower()}"
    if bulk.action == "owner":
        name = dict(menu.owners).get(str(bulk.owner_id), f"staff {bulk.owner_id}")
        return f"Give {things} to {name}."
    if bulk.action == "stage":
        label = bulk.stage
        if menu.stages is not None:
            for group in menu.stages.groups:
                label = dict(group.options).get(bulk.stage, label)
        return f"Move {things} to the stage {label}."
    return f"Delete {things}. This cannot be undone."


async def confirm_page(
    request: Request[Any, Any, Any],
    visit: Visit,
    *,
    bulk: BulkRequest,
    sentence: str,
    base_path: str,
    noun: str,
    plural: str,
) -> Template:
    return await render(
        request,
        "records/bulk.html",
        visit=visit,
        title=f"{ACTIONS[bulk.action]}: please confirm",
        section=base_path.strip("/"),
        sentence=sentence,
        bulk=bulk,
        base_path=base_path,
        plural=plural,
        noun_count=f"{len(bulk.ids)} {noun if len(bulk.ids) == 1 else plural.lower()}",
        error="",
    )


async def refused_page(
    request: Request[Any, Any, Any], visit: Visit, *, error: str, base_path: str, plural: str
) -> Template:
    return await render(
        request,
        "records/bulk.html",
        visit=visit,
        status=HTTP_400_BAD_REQUEST,
        title=f"Bulk action: {plural.lower()}",
        section=base_path.strip("/"),
        sentence="",
        bulk=None,
        base_path=base_path,
        plural=plural,
        noun_count="",
        error=error,
    )


async def apply(
    request: Request[Any, Any, Any],
    visit: Visit,
    gateway: Gateway,
    rt: RecordType,
    bulk: BulkRequest,
    *,
    base_path: str,
    plural: str,
) -> Redirect:
    """Each record through the gateway on its own; the flash says how many changed."""
    done = refused = 0
    for record_id in bulk.ids:
        try:
            if bulk.action == "owner":
                await gateway.update(
                    visit.actor, rt.resource, record_id, {}, owner_id=bulk.owner_id
                )
            elif bulk.action == "stage":
                await gateway.update(visit.actor, rt.resource, record_id, {"stage": bulk.stage})
            elif bulk.action == "delete":
                await gateway.delete(visit.actor, rt.resource, record_id)
        except GatewayError:
            refused += 1
        else:
            done += 1
    verb = {"owner": "given to the new owner", "stage": "moved", "delete": "deleted"}[bulk.action]
    text = f"{done} of {len(bulk.ids)} {plural.lower()} {verb}."
    if refused:
        text += f" {refused} could not be changed (gone, not yours, or not allowed there)."
    await flash(request, visit, text, "success" if not refused else "info")
    return see_other(base_path)
