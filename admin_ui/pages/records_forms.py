"""A record type's new and edit forms: inputs from the data map, reference options as far
as the user can see, the owner select where the policy lets the role hand records on.

Mounted once per record type by ``admin_ui.pages.records_routes``; ``pages`` (the type's
:class:`RecordTypePages`) is injected. The gateway decides again on every save.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_403_FORBIDDEN

from admin_ui.forms import (
    FieldChoices,
    FormField,
    field_problems,
    form_field,
    input_text,
    read_form,
)
from admin_ui.pages.erased import erased_refusal
from admin_ui.pages.records import (
    MAX_SEARCH,
    PICKABLE,
    RECENT_OPTIONS,
    REFERENCE_OPTIONS,
    RecordTypePages,
    about_a_person,
    gateway_of,
    heading_of,
    picker_options,
    reference_options,
)
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from policy.enforcer import Assign
from server.auth.directory import ActiveStaff
from server.datamap import RECORD_TYPES
from server.gateway import Conflict, Forbidden, GatewayError, InvalidInput, NotFound
from server.gateway import Record as GatewayRecord


async def options_for(
    pages: RecordTypePages,
    request: Request[Any, Any, Any],
    visit: Visit,
    names: set[str] | frozenset[str],
    chosen: Mapping[str, str] | None = None,
    person: str = "",
    picks: Mapping[str, str] | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """Drop-down options per reference field. A field already chosen (a deal created
    from a contact's page) offers just that record: one read, not a hundred. Once the
    record's person is known (``person``, a contact id), a reference to records about
    one person (an interaction's deal) offers only that person's."""
    rt = pages.rt
    gateway = gateway_of(request)
    options: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        target = rt.by_name[name].references if name in rt.by_name else None
        if target is None:
            continue
        picked = (chosen or {}).get(name)
        if picked:
            try:
                other = await gateway.read(visit.actor, target, picked)
            except GatewayError:
                options[name] = []
            else:
                options[name] = [(other.id, heading_of(RECORD_TYPES[target], other))]
            continue
        about = RECORD_TYPES[target].subject_from == "contact_id"
        mine = {"contact_id": person} if person and about else None
        term = (picks or {}).get(name, "")
        if term.strip() and target in PICKABLE:
            options[name] = await picker_options(gateway, visit, target, term)
            continue
        limit = RECENT_OPTIONS if target in PICKABLE and not mine else REFERENCE_OPTIONS
        options[name] = await reference_options(gateway, visit, target, mine, limit=limit)
    return options


def fields_for(
    pages: RecordTypePages,
    names: list[str] | set[str],
    options: Mapping[str, list[tuple[str, str]]],
    choices: Mapping[str, FieldChoices],
    values: Mapping[str, str],
    picks: Mapping[str, str] | None = None,
) -> list[FormField]:
    """The inputs for ``names``, in the data map's order (a form's, or a list's filters)."""
    fields = []
    for f in pages.rt.fields:
        if f.name not in names:
            continue
        given = choices.get(f.name)
        field = form_field(f, options.get(f.name, ()), resource=pages.resource, provided=given)
        if picks is not None and f.references in PICKABLE:
            field = replace(field, picker=f.references or "", pick_term=picks.get(f.name, ""))
        if given is not None and given.groups:
            parent = values.get(given.depends_on) or given.default_group
            picked = _selected_group(given, values.get(f.name, ""), parent)
            field = replace(field, selected_group=picked)
        fields.append(field)
    # A field whose options depend on another comes right after it (a deal's stage
    # after its pipeline), whatever the data map's order.
    for dependent in [f for f in fields if f.depends_on]:
        leader = next((f for f in fields if f.name == dependent.depends_on), None)
        if leader is not None:
            fields.remove(leader)
            fields.insert(fields.index(dependent), leader)
    return fields


def _selected_group(choices: FieldChoices, value: str, parent: str) -> str:
    """Which group's option to mark selected: the parent field's group if it holds the
    value (stage keys repeat across pipelines), else the first group that does."""
    holding = [g.key for g in choices.groups if any(v == value for v, _ in g.options)]
    return parent if parent in holding else (holding[0] if holding else "")


async def form_page(
    pages: RecordTypePages,
    request: Request[Any, Any, Any],
    visit: Visit,
    *,
    names: list[str],
    values: Mapping[str, str],
    problems: Mapping[str, str] | None = None,
    record: GatewayRecord | None = None,
    not_editable: list[str] | None = None,
    status: int = 200,
    owner: str = "",
    picks: Mapping[str, str] | None = None,
) -> Template:
    """The new form (``record`` None) or the edit form, with ``problems`` at their inputs."""
    rt, noun, base_path = pages.rt, pages.noun, pages.base_path
    by_field, summary_errors = field_problems(rt, problems or {})
    owners = await owner_choices(pages, request, visit, record)
    current_owner = str(record.owner_id if record else visit.actor.user_id or "")
    options = await form_options(pages, request, visit, names, values, record, picks)
    provided = await pages.choices_for(request, record.values if record else {})
    fields = fields_for(pages, names, options, provided, values, picks or {})
    return await render(
        request,
        "records/form.html",
        visit=visit,
        status=status,
        section=pages.resource,
        title=f"Edit {noun}" if record else f"New {noun}",
        heading=f"Edit {heading_of(rt, record)}" if record else f"New {noun}",
        noun=noun,
        action=f"{base_path}/{record.id}/edit" if record else f"{base_path}/new",
        cancel=f"{base_path}/{record.id}" if record else base_path,
        fields=fields,
        values=values,
        errors=by_field,
        problem_list=summary_errors,
        not_editable=not_editable or [],
        owners=owners,
        owner=owner or current_owner,
        owner_error=(problems or {}).get("owner_id", ""),
    )


async def form_options(
    pages: RecordTypePages,
    request: Request[Any, Any, Any],
    visit: Visit,
    names: list[str],
    values: Mapping[str, str],
    record: GatewayRecord | None,
    picks: Mapping[str, str] | None,
) -> dict[str, list[tuple[str, str]]]:
    """The reference options of a form. A new record for a person picked on their page
    offers only that person; an edit offers the usual choices (the person of a record is
    not editable anyway), and keeps the current value even where it is not offered."""
    rt = pages.rt
    chosen = {
        n: values[n]
        for n in names
        if record is None
        and values.get(n)
        and rt.by_name[n].references
        and about_a_person(rt.by_name[n].references or "")
    }
    person = str(values.get("contact_id") or (record.values.get("contact_id") if record else ""))
    chosen = {n: v for n, v in chosen.items() if not (picks or {}).get(n)}
    options = await options_for(
        pages,
        request,
        visit,
        set(names),
        chosen,
        person if "contact_id" in rt.by_name else "",
        picks,
    )
    if record is not None:
        for name, choices in options.items():
            current = record.values.get(name)
            if current and all(value != current for value, _ in choices):
                choices.append((str(current), f"{str(current)[:8]}…"))
    return options


async def owner_choices(
    pages: RecordTypePages,
    request: Request[Any, Any, Any],
    visit: Visit,
    record: GatewayRecord | None,
) -> list[tuple[str, str]]:
    """The owner select: offered only where the role may hand the record to someone
    but itself (the gateway decides again on save)."""
    action = "create" if record is None else "update"
    if not offers_owner(pages, request, visit, action):
        return []
    level = gateway_of(request).assignment(visit.actor, pages.resource, action)
    team = visit.actor.team if level is Assign.TEAM else None
    choices = [(str(i), label) for i, label in await ActiveStaff().choices(team)]
    if record is not None and all(v != str(record.owner_id) for v, _ in choices):
        choices.append((str(record.owner_id), f"Staff {record.owner_id} (not active)"))
    return choices


def offers_owner(
    pages: RecordTypePages, request: Request[Any, Any, Any], visit: Visit, action: str
) -> bool:
    """Whether the form has an owner select (a policy question; no query)."""
    level = gateway_of(request).assignment(visit.actor, pages.resource, action)
    return level in {Assign.TEAM, Assign.ANY}


def owner_from_form(form: Mapping[str, Any], current: int | None) -> int | None:
    """The owner picked in the form, if one was picked and it differs from ``current``
    (an unreadable value is passed on as 0, which the gateway refuses with 400)."""
    raw = form.get("owner_id")
    if not isinstance(raw, str) or not raw.strip():
        return None
    picked = int(raw) if raw.strip().isdigit() and len(raw) < 12 else 0
    return None if picked == current else picked


def picks_of(form: Mapping[str, Any], names: list[str]) -> dict[str, str]:
    """What was typed into each picker's search box (``pick_<field>``)."""
    picks: dict[str, str] = {}
    for name in names:
        raw = form.get(f"pick_{name}")
        if isinstance(raw, str) and raw.strip():
            picks[name] = raw[:MAX_SEARCH]
    return picks


def creatable(pages: RecordTypePages, writable: frozenset[str]) -> list[str]:
    """Inputs a new form has: writable, and not filled in by the record type's rule."""
    return [f.name for f in pages.rt.fields if f.name in writable and not f.set_by_rule]


def editable(
    pages: RecordTypePages, writable: frozenset[str], record: GatewayRecord
) -> tuple[list[str], list[str]]:
    """Inputs an edit form may have: writable and readable (a field the user cannot
    see is never offered, so an empty box cannot silently clear it)."""
    rt = pages.rt
    source = rt.by_name.get(rt.subject_from or "")
    fixed = {rt.subject_from, source.references_from if source else None}
    names = [
        f.name
        for f in rt.fields
        if f.name in writable
        and f.name not in record.restricted
        and f.name not in fixed
        and not f.set_by_rule
    ]
    locked = [
        f.label
        for f in rt.fields
        if f.name not in names and f.name not in record.restricted and not f.set_by_rule
    ]
    return names, locked


class RecordFormPages(Controller):
    """``<page_path>/new`` and ``<page_path>/<id>/edit`` of one record type."""

    path = "/"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/new")
    async def new_form(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
    ) -> Template:
        writable = gateway_of(request).permitted_fields(visit.actor, pages.resource, "create")
        if writable is None:
            raise Forbidden(f"your role may not create {pages.noun} records")
        names = creatable(pages, writable)
        # "New deal" on a contact's page arrives with ?contact_id=...: preselect it.
        given = {
            n: str(request.query_params.get(n, "")).strip()
            for n in names
            if pages.rt.by_name[n].references and request.query_params.get(n)
        }
        return await form_page(pages, request, visit, names=names, values=given, picks={})

    @post("/new")
    async def create(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
    ) -> Template | Redirect:
        return await create_record(pages, request, visit)

    @get("/{record_id:str}/edit")
    async def edit_form(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
        record_id: FromPath[str],
    ) -> Template | Response[Any]:
        gateway = gateway_of(request)
        record = await gateway.read(visit.actor, pages.resource, record_id)
        writable = gateway.permitted_fields(visit.actor, pages.resource, "update")
        if writable is None:  # as the gateway answers such updates
            raise NotFound(f"{pages.resource} not found")
        if record.erased:
            return await erased_refusal(request, pages.rt, record)
        names, locked = editable(pages, writable, record)
        values = {n: input_text(pages.rt, n, record.values, visit.zone) for n in names}
        return await form_page(
            pages,
            request,
            visit,
            names=names,
            values=values,
            record=record,
            not_editable=locked,
            picks={},
        )

    @post("/{record_id:str}/edit")
    async def update(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
        record_id: FromPath[str],
    ) -> Template | Redirect | Response[Any]:
        return await update_record(pages, request, visit, record_id)


async def create_record(
    pages: RecordTypePages, request: Request[Any, Any, Any], visit: Visit
) -> Template | Redirect:
    """A new form submitted: the record created (and its page shown), the form again
    with the matches of a picker's "Find", or with the gateway's problems."""
    rt, resource = pages.rt, pages.resource
    gateway = gateway_of(request)
    writable = gateway.permitted_fields(visit.actor, resource, "create")
    if writable is None:  # the gateway refuses (and audits) before reading any value
        await gateway.create(visit.actor, resource, {})
        raise Forbidden(f"your role may not create {pages.noun} records")
    names = creatable(pages, writable)
    form = await request.form()
    read = read_form(rt, form, names, zone=visit.zone)
    values, submitted = read.values, read.submitted
    owner = str(form.get("owner_id") or "")
    if form.get("_pick"):  # a picker's "Find" (no JavaScript): show the matches
        return await form_page(
            pages,
            request,
            visit,
            names=names,
            values=submitted,
            owner=owner,
            picks=picks_of(form, names),
        )
    owner_id = None
    if offers_owner(pages, request, visit, "create"):
        owner_id = owner_from_form(form, visit.actor.user_id)
    try:
        if read.problems:  # an amount that is no amount: the gateway is not asked
            raise InvalidInput("invalid amount", problems=read.problems)
        record = await gateway.create(visit.actor, resource, values, owner_id=owner_id)
    except (InvalidInput, Forbidden) as exc:
        return await form_page(
            pages,
            request,
            visit,
            names=names,
            values=submitted,
            problems=exc.problems or {"": exc.message},
            status=HTTP_400_BAD_REQUEST,
            owner=owner,
            picks={},
        )
    await flash(request, visit, f"{rt.label} created.")
    return see_other(f"{pages.base_path}/{record.id}")


async def update_record(
    pages: RecordTypePages, request: Request[Any, Any, Any], visit: Visit, record_id: str
) -> Template | Redirect | Response[Any]:
    """An edit form submitted: the changes saved (and the record's page shown), the form
    again with a picker's matches or the gateway's problems, or "Nothing was changed"."""
    rt, resource = pages.rt, pages.resource
    gateway = gateway_of(request)
    writable = gateway.permitted_fields(visit.actor, resource, "update")
    if writable is None:  # the gateway refuses (and audits) before reading any value
        await gateway.update(visit.actor, resource, record_id, {})
        raise NotFound(f"{resource} not found")
    record = await gateway.read(visit.actor, resource, record_id)
    if record.erased:
        return await erased_refusal(request, rt, record)
    names, locked = editable(pages, writable, record)
    form = await request.form()
    read = read_form(rt, form, names, current=record.values, zone=visit.zone)
    changes, submitted = read.values, read.submitted
    shown = {n: input_text(rt, n, record.values, visit.zone) for n in names}
    owner = str(form.get("owner_id") or "")
    if form.get("_pick"):  # a picker's "Find" (no JavaScript): show the matches
        return await form_page(
            pages,
            request,
            visit,
            names=names,
            values=shown | submitted,
            record=record,
            not_editable=locked,
            owner=owner,
            picks=picks_of(form, names),
        )
    owner_id = None
    if offers_owner(pages, request, visit, "update"):
        owner_id = owner_from_form(form, record.owner_id)
    if not changes and owner_id is None and not read.problems:
        await flash(request, visit, "Nothing was changed.", "info")
        return see_other(f"{pages.base_path}/{record.id}")
    try:
        if read.problems:
            raise InvalidInput("invalid amount", problems=read.problems)
        await gateway.update(visit.actor, resource, record.id, changes, owner_id=owner_id)
    except (InvalidInput, Forbidden, Conflict) as exc:
        return await form_page(
            pages,
            request,
            visit,
            names=names,
            values=shown | submitted,
            problems=exc.problems or {"": exc.message},
            record=record,
            not_editable=locked,
            status=HTTP_403_FORBIDDEN if isinstance(exc, Forbidden) else HTTP_400_BAD_REQUEST,
            owner=owner,
            picks={},
        )
    await flash(request, visit, f"{rt.label} updated.")
    return see_other(f"{pages.base_path}/{record.id}")
