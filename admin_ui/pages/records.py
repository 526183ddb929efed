"""List, search, detail, create, edit and delete pages, generated per data-map record type.

Every page goes through the gateway, exactly like the JSON API: the policy decides what
is shown, the vault decrypts only permitted fields, and each read and write is audited.
A field the role may not read arrives as a name in ``Record.restricted`` and is shown as
"Restricted" - its value never reaches these handlers, let alone the browser.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_403_FORBIDDEN

from admin_ui import record_lists as lists
from admin_ui.display import UTC, money, shown_moment
from admin_ui.forms import (
    FieldChoices,
    FormField,
    choice_label,
    field_problems,
    form_field,
    input_text,
    read_form,
)
from admin_ui.pages import bulk_actions
from admin_ui.pages.consent import consent_panel
from admin_ui.pages.erased import erased_page, erased_refusal
from admin_ui.pages.funnel import lead_choices
from admin_ui.pages.imports import export_page
from admin_ui.pages.pipeline import deal_choices
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from policy.enforcer import Assign
from server.auth.directory import ActiveStaff
from server.datamap import NOTE, NOTE_TARGETS, RECORD_TYPES, FieldKind, RecordType
from server.gateway import Conflict, Forbidden, Gateway, GatewayError, InvalidInput, NotFound
from server.gateway import Record as GatewayRecord
from server.gateway.search import SEARCH_TYPES
from server.web import services_of

DEFAULT_PAGE_SIZE = 25
PAGE_SIZES = (10, 25, 50, 100)
REFERENCE_OPTIONS = 100  # records offered in a reference's drop-down list
# References chosen with a name-search picker (admin_ui/templates/records/_picker.html):
# its select starts with the few newest and fills with matches as a name is typed.
PICKABLE = ("contact", "organization", "deal", "case")
RECENT_OPTIONS = 10
PICKER_RESULTS = 20
RELATED_ROWS = 10  # deals, interactions and cases shown on a contact's page
MAX_SEARCH = 320
LIST_HITS = 50  # name-search matches shown on a list page
# A term that is only what a phone number is written with: an exact phone lookup.
_PHONE_LIKE = re.compile(r"^\+?[\d\s().-]{6,}$")
# Columns of the list pages, and the fields that make up a record's heading: declared with
# each record type in the data map (RecordType.summary, RecordType.heading).
SUMMARY_FIELDS = {rt.resource: rt.summary for rt in RECORD_TYPES.values() if rt.summary}
HEADING_FIELDS = {rt.resource: rt.heading for rt in RECORD_TYPES.values() if rt.heading}
# Bookkeeping fields a person gains nothing from seeing on the record's page (keyed
# hashes, the mailbox a captured mail came from); the API still returns them.
HIDDEN_ON_PAGE: dict[str, frozenset[str]] = {
    "mail": frozenset({"thread_key", "message_key", "mailbox_id"}),
}
# Where each record type's pages live: reference fields link there.
PAGE_PATHS = {
    "contact": "/contacts",
    "organization": "/organizations",
    "deal": "/deals",
    "interaction": "/interactions",
    "case": "/cases",
    "lead": "/leads",
    "task": "/tasks",
    "note": "/notes",
    "mail": "/mail",
}
PLURALS = {
    "deal": "Deals",
    "interaction": "Interactions",
    "case": "Cases",
    "task": "Tasks",
    "mail": "Captured e-mail",
}

ChoicesProvider = Callable[
    [Request[Any, Any, Any], Mapping[str, Any]], Awaitable[dict[str, FieldChoices]]
]
# Per record type: options for fields whose valid values are configuration, not in the data
# map (a deal's pipeline and its stages). Called with the record's current values (empty
# on a new one); the gateway's record rules still validate whatever is submitted.
CHOICES_PROVIDERS: dict[str, ChoicesProvider] = {"deal": deal_choices, "lead": lead_choices}


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value or default)
    except ValueError:
        return default
    return min(max(number, low), high)


def heading_of(rt: RecordType, record: GatewayRecord, zone: ZoneInfo = UTC) -> str:
    parts = [
        shown_value(rt, n, record.values[n], zone=zone)
        for n in HEADING_FIELDS.get(rt.resource, ())
        if record.values.get(n)
    ]
    if record.erased:
        return f"Erased {rt.label.lower()}"
    return " ".join(parts) or f"{rt.label} {record.id[:8]}"


def shown_value(
    rt: RecordType,
    name: str,
    value: Any,
    *,
    values: Mapping[str, Any] | None = None,
    zone: ZoneInfo = UTC,
) -> str:
    """A value as a page shows it (choices by their label; money, given the record's
    ``values``, in major units with its currency; moments in the user's ``zone``)."""
    if value is None or value == "":
        return ""
    spec = rt.by_name[name]
    kind = spec.kind
    if spec.currency_from and values is not None:
        return money(value, values.get(spec.currency_from))
    # A deal's stage is a configured code (server.pipelines), shown like a choice.
    if kind is FieldKind.CHOICE or (rt.resource == "deal" and name == "stage"):
        return choice_label(str(value))
    if kind is FieldKind.DATETIME:  # canonical UTC ISO 8601 -> "2026-12-01 15:30 CET"
        return shown_moment(str(value), zone)
    if kind is FieldKind.TEXT and len(str(value)) > 80:
        return str(value)[:79] + "…"
    return str(value)


async def picker_options(
    gateway: Gateway, visit: Visit, resource: str, term: str
) -> list[tuple[str, str]]:
    """(id, name) of the records of ``resource`` whose name matches ``term``, best first
    (the gateway's name search: scoped and audited); nothing for an empty term or a type
    the role may not search."""
    if resource not in PICKABLE or not term.strip():
        return []
    try:
        hits = await gateway.search_names(visit.actor, resource, term, page_size=PICKER_RESULTS)
    except (InvalidInput, Forbidden):
        return []
    rt = RECORD_TYPES[resource]
    return [(r.id, heading_of(rt, r)) for r in hits.items]


async def reference_options(
    gateway: Gateway,
    visit: Visit,
    resource: str,
    filters: Mapping[str, str] | None = None,
    *,
    limit: int = REFERENCE_OPTIONS,
) -> list[tuple[str, str]]:
    """(id, name) of the records an id field may point to, as far as this user can see
    (``filters``: only those, e.g. one person's deals), newest first."""
    try:
        page = await gateway.list(
            visit.actor,
            resource,
            filters=dict(filters or {}),
            page=1,
            page_size=limit,
        )
    except GatewayError:
        return []
    target = RECORD_TYPES[resource]
    return [(r.id, heading_of(target, r)) for r in page.items]


def picks_of(form: Mapping[str, Any], names: list[str]) -> dict[str, str]:
    """What was typed into each picker's search box (``pick_<field>``)."""
    picks: dict[str, str] = {}
    for name in names:
        raw = form.get(f"pick_{name}")
        if isinstance(raw, str) and raw.strip():
            picks[name] = raw[:MAX_SEARCH]
    return picks


def about_a_person(resource: str) -> bool:
    """Contacts and the records about one: offering them all in a filter would read (and
    audit as accessed) a hundred people on every list page, so they are never offered."""
    return resource == "contact" or RECORD_TYPES[resource].subject_from is not None


def _selected_group(choices: FieldChoices, value: str, parent: str) -> str:
    """Which group's option to mark selected: the parent field's group if it holds the
    value (stage keys repeat across pipelines), else the first group that does."""
    holding = [g.key for g in choices.groups if any(v == value for v, _ in g.options)]
    return parent if parent in holding else (holding[0] if holding else "")


def record_pages(rt: RecordType, base_path: str, plural: str) -> type[Controller]:
    """A controller with the web pages of one record type under ``base_path``."""
    resource = rt.resource
    provider = CHOICES_PROVIDERS.get(resource)
    noun = rt.label.lower()
    filterable = [f for f in rt.fields if f.filterable]
    searchable = [f for f in rt.fields if f.blind_index]
    by_name = resource in SEARCH_TYPES
    search_words = (["a name"] if by_name else []) + [
        f"{'an' if f.kind is FieldKind.EMAIL else 'a'} {f.label.lower()}" for f in searchable
    ]
    summary = SUMMARY_FIELDS.get(resource, tuple(f.name for f in rt.fields[1:4]))

    def gateway_of(request: Request[Any, Any, Any]) -> Gateway:
        return services_of(request).gateway

    async def options_for(
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

    async def choices_for(
        request: Request[Any, Any, Any], current: Mapping[str, Any]
    ) -> dict[str, FieldChoices]:
        return await provider(request, current) if provider is not None else {}

    def fields_for(
        names: list[str] | set[str],
        options: Mapping[str, list[tuple[str, str]]],
        choices: Mapping[str, FieldChoices],
        values: Mapping[str, str],
        picks: Mapping[str, str] | None = None,
    ) -> list[FormField]:
        fields = []
        for f in rt.fields:
            if f.name not in names:
                continue
            given = choices.get(f.name)
            field = form_field(f, options.get(f.name, ()), resource=resource, provided=given)
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

    async def list_page(
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        filters: dict[str, str],
        page: int,
        page_size: int,
        search: str | None = None,
        sort: str = "",
    ) -> Template:
        gateway = gateway_of(request)
        readable = gateway.permitted_fields(visit.actor, resource, "list")
        if readable is None:  # let the gateway refuse: its refusals are audited
            await gateway.list(visit.actor, resource, page=1, page_size=1)
            raise Forbidden(f"your role may not list {noun} records")
        sort = lists.usable_sort(rt, readable, sort)
        usable = [f for f in filterable if f.name in readable]
        # Records are filtered by person from that person's page (a link), not from a list.
        shown_filters = [f for f in usable if not (f.references and about_a_person(f.references))]
        may_search = gateway.permitted_fields(visit.actor, resource, "search")
        active = {k: v for k, v in filters.items() if v and k in {f.name for f in usable}}
        problems: dict[str, str] = {}
        items: list[GatewayRecord] = []
        total = 0
        search_error = ""
        exact_search = False
        if search is not None:
            items, search_error, exact_search = await run_search(gateway, visit, search)
            total = len(items)
        else:
            try:
                result = await gateway.list(
                    visit.actor, resource, filters=active, page=page, page_size=page_size, sort=sort
                )
                if not result.items and page > lists.clamp_page(page, result.total, page_size):
                    page = lists.clamp_page(page, result.total, page_size)  # past the end
                    result = await gateway.list(
                        visit.actor,
                        resource,
                        filters=active,
                        page=page,
                        page_size=page_size,
                        sort=sort,
                    )
                items, total = result.items, result.total
            except InvalidInput as exc:
                problems = {k: v for k, v in exc.problems.items() if k in rt.by_name}
        pages = lists.last_page(total, page_size)
        query: dict[str, str] = {
            **active,
            **({"page_size": str(page_size)} if page_size != DEFAULT_PAGE_SIZE else {}),
            **({"sort": sort} if sort else {}),
        }

        def page_link(number: int) -> str:
            return f"{base_path}?{urlencode({**query, 'page': number})}"

        options = await options_for(request, visit, {f.name for f in shown_filters})
        choices = await choices_for(request, {})
        bulk_menu = await bulk_actions.menu(request, visit, rt, choices)
        shown_columns = list(summary)
        cells = await lists.cells(
            gateway,
            visit.actor,
            rt,
            items,
            shown_columns,
            shown_value,
            heading_of,
            visit.zone,
            PAGE_PATHS,
        )
        rows = [
            {"id": r.id, "heading": heading_of(rt, r, visit.zone), "cells": row}
            for r, row in zip(items, cells, strict=True)
        ]
        unsorted = {k: v for k, v in query.items() if k != "sort"}
        return await render(
            request,
            "records/list.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if problems or search_error else 200,
            section=resource,
            title=plural,
            plural=plural,
            noun=noun,
            base_path=base_path,
            columns=lists.columns(
                rt,
                shown_columns,
                readable,
                sort,
                lambda key: lists.list_link(base_path, unsorted, sort=key),
            ),
            sort=sort,
            rows=rows,
            total=total,
            page=page,
            pages=pages,
            page_size=page_size,
            page_sizes=PAGE_SIZES,
            prev_link=page_link(page - 1) if page > 1 and search is None else "",
            next_link=page_link(page + 1) if page < pages and search is None else "",
            filters=fields_for([f.name for f in shown_filters], options, choices, active),
            filter_values=active,
            filter_errors={k: v for k, v in problems.items()},
            searchable=(["name"] if by_name and may_search is not None else [])
            + [f.label.lower() for f in searchable if f.name in (may_search or ())],
            search=search,
            search_error=search_error,
            exact_search=exact_search,
            can_create=gateway.permitted_fields(visit.actor, resource, "create") is not None,
            can_export=gateway.permitted_fields(visit.actor, resource, "export") is not None,
            bulk=bulk_menu if rows and search is None else None,
        )

    async def run_search(
        gateway: Gateway, visit: Visit, term: str
    ) -> tuple[list[GatewayRecord], str, bool]:
        """Name search; exact search when the term is an e-mail address (an @) or looks
        like a phone number (digits, spaces and + - ( ) . only)."""
        term = term.strip()
        if not term:
            return [], f"Enter {' or '.join(search_words)} to search for.", False
        kind = (
            FieldKind.EMAIL if "@" in term else FieldKind.PHONE if _PHONE_LIKE.match(term) else None
        )
        spec = next((f for f in searchable if f.kind is kind), None) if kind else None
        if spec is not None:
            try:
                return await gateway.search(visit.actor, resource, spec.name, term), "", True
            except InvalidInput:
                return (
                    [],
                    f"Enter a complete {spec.label.lower()} (searches find exact matches).",
                    True,
                )
            except Forbidden:
                refused = f"Your role may not search {plural.lower()} by {spec.label.lower()}."
                return [], refused, True
        if resource not in SEARCH_TYPES:
            return [], f"{plural} cannot be searched by name.", False
        try:
            hits = await gateway.search_names(visit.actor, resource, term, page_size=LIST_HITS)
        except InvalidInput:
            return [], "Type at least one letter or digit of a name.", False
        except Forbidden:
            return [], f"Your role may not search {plural.lower()}.", False
        return hits.items, "", False

    async def form_page(
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
        by_field, summary_errors = field_problems(rt, problems or {})
        owners = await owner_choices(request, visit, record)
        current_owner = str(record.owner_id if record else visit.actor.user_id or "")
        # A new record for a person picked on their page offers only that person; an edit
        # offers the usual choices (the person of a record is not editable anyway).
        chosen = {
            n: values[n]
            for n in names
            if record is None
            and values.get(n)
            and rt.by_name[n].references
            and about_a_person(rt.by_name[n].references or "")
        }
        person = str(
            values.get("contact_id") or (record.values.get("contact_id") if record else "")
        )
        chosen = {n: v for n, v in chosen.items() if not (picks or {}).get(n)}
        options = await options_for(
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
        provided = await choices_for(request, record.values if record else {})
        fields = fields_for(names, options, provided, values, picks or {})
        return await render(
            request,
            "records/form.html",
            visit=visit,
            status=status,
            section=resource,
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

    async def owner_choices(
        request: Request[Any, Any, Any], visit: Visit, record: GatewayRecord | None
    ) -> list[tuple[str, str]]:
        """The owner select: offered only where the role may hand the record to someone
        but itself (the gateway decides again on save)."""
        action = "create" if record is None else "update"
        if not offers_owner(request, visit, action):
            return []
        level = gateway_of(request).assignment(visit.actor, resource, action)
        team = visit.actor.team if level is Assign.TEAM else None
        choices = [(str(i), label) for i, label in await ActiveStaff().choices(team)]
        if record is not None and all(v != str(record.owner_id) for v, _ in choices):
            choices.append((str(record.owner_id), f"Staff {record.owner_id} (not active)"))
        return choices

    def offers_owner(request: Request[Any, Any, Any], visit: Visit, action: str) -> bool:
        """Whether the form has an owner select (a policy question; no query)."""
        level = gateway_of(request).assignment(visit.actor, resource, action)
        return level in {Assign.TEAM, Assign.ANY}

    def owner_from_form(form: Mapping[str, Any], current: int | None) -> int | None:
        """The owner picked in the form, if one was picked and it differs from ``current``
        (an unreadable value is passed on as 0, which the gateway refuses with 400)."""
        raw = form.get("owner_id")
        if not isinstance(raw, str) or not raw.strip():
            return None
        picked = int(raw) if raw.strip().isdigit() and len(raw) < 12 else 0
        return None if picked == current else picked

    def editable(writable: frozenset[str], record: GatewayRecord) -> tuple[list[str], list[str]]:
        """Inputs an edit form may have: writable and readable (a field the user cannot
        see is never offered, so an empty box cannot silently clear it)."""
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

    class RecordPages(Controller):
        path = base_path
        include_in_schema = False
        dependencies = {"visit": Provide(provide_visit)}
        opt = page_access()

        @get("/")
        async def index(
            self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
        ) -> Template:
            query = request.query_params
            page_size = _int(query.get("page_size"), DEFAULT_PAGE_SIZE, 1, 100)
            return await list_page(
                request,
                visit,
                filters={f.name: query.get(f.name, "").strip() for f in filterable},
                page=_int(query.get("page"), 1, 1, 1_000_000),
                page_size=page_size,
                sort=str(query.get("sort", ""))[:40],
            )

        @post("/search")
        async def search(
            self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
        ) -> Template:
            """A POST, like the API's search: the term never appears in a URL or a log."""
            form = await request.form()
            term = form.get("q", "")
            return await list_page(
                request,
                visit,
                filters={},
                page=1,
                page_size=DEFAULT_PAGE_SIZE,
                search=term[:MAX_SEARCH] if isinstance(term, str) else "",
            )

        @post("/bulk")
        async def bulk_review(
            self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
        ) -> Template:
            """Ticked rows and an action: the confirmation page (nothing changes yet)."""
            choices = await choices_for(request, {})
            menu = await bulk_actions.menu(request, visit, rt, choices)
            form = await request.form()
            bulk, error = bulk_actions.read_request(form, [a for a, _ in menu.actions])
            if bulk is None:
                return await bulk_actions.refused_page(
                    request, visit, error=error, base_path=base_path, plural=plural
                )
            if bulk.action == "export":
                return await export_page(request, visit, base_path.strip("/"), {}, picked=bulk.ids)
            return await bulk_actions.confirm_page(
                request,
                visit,
                bulk=bulk,
                sentence=bulk_actions.describe(bulk, noun, plural, menu),
                base_path=base_path,
                noun=noun,
                plural=plural,
            )

        @post("/bulk/apply")
        async def bulk_apply(
            self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
        ) -> Template | Redirect:
            choices = await choices_for(request, {})
            menu = await bulk_actions.menu(request, visit, rt, choices)
            form = await request.form()
            allowed = [a for a, _ in menu.actions if a != "export"]
            bulk, error = bulk_actions.read_request(form, allowed)
            if bulk is None:
                return await bulk_actions.refused_page(
                    request, visit, error=error, base_path=base_path, plural=plural
                )
            return await bulk_actions.apply(
                request, visit, gateway_of(request), rt, bulk, base_path=base_path, plural=plural
            )

        @get("/new")
        async def new_form(
            self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
        ) -> Template:
            writable = gateway_of(request).permitted_fields(visit.actor, resource, "create")
            if writable is None:
                raise Forbidden(f"your role may not create {noun} records")
            names = [f.name for f in rt.fields if f.name in writable and not f.set_by_rule]
            # "New deal" on a contact's page arrives with ?contact_id=...: preselect it.
            given = {
                n: str(request.query_params.get(n, "")).strip()
                for n in names
                if rt.by_name[n].references and request.query_params.get(n)
            }
            return await form_page(request, visit, names=names, values=given, picks={})

        @post("/new")
        async def create(
            self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
        ) -> Template | Redirect:
            gateway = gateway_of(request)
            writable = gateway.permitted_fields(visit.actor, resource, "create")
            if writable is None:  # the gateway refuses (and audits) before reading any value
                await gateway.create(visit.actor, resource, {})
                raise Forbidden(f"your role may not create {noun} records")
            names = [f.name for f in rt.fields if f.name in writable and not f.set_by_rule]
            form = await request.form()
            read = read_form(rt, form, names, zone=visit.zone)
            values, submitted = read.values, read.submitted
            if form.get("_pick"):  # a picker's "Find" (no JavaScript): show the matches
                return await form_page(
                    request,
                    visit,
                    names=names,
                    values=submitted,
                    owner=str(form.get("owner_id") or ""),
                    picks=picks_of(form, names),
                )
            owner_id = None
            if offers_owner(request, visit, "create"):
                owner_id = owner_from_form(form, visit.actor.user_id)
            try:
                if read.problems:  # an amount that is no amount: the gateway is not asked
                    raise InvalidInput("invalid amount", problems=read.problems)
                record = await gateway.create(visit.actor, resource, values, owner_id=owner_id)
            except (InvalidInput, Forbidden) as exc:
                problems = exc.problems or {"": exc.message}
                return await form_page(
                    request,
                    visit,
                    names=names,
                    values=submitted,
                    problems=problems,
                    status=HTTP_400_BAD_REQUEST,
                    owner=str(form.get("owner_id") or ""),
                    picks={},
                )
            await flash(request, visit, f"{rt.label} created.")
            return see_other(f"{base_path}/{record.id}")

        @get("/{record_id:str}")
        async def detail(
            self,
            request: Request[Any, Any, Any],
            visit: NamedDependency[Visit],
            record_id: FromPath[str],
        ) -> Template:
            gateway = gateway_of(request)
            record = await gateway.read(visit.actor, resource, record_id)
            if record.erased:
                return await erased_page(
                    request, visit, rt, record, base_path=base_path, plural=plural
                )
            choices = await choices_for(request, record.values)
            rows = []
            hidden = HIDDEN_ON_PAGE.get(resource, frozenset())
            for spec in rt.fields:
                if spec.name in hidden:
                    continue
                restricted = spec.name in record.restricted
                value = record.values.get(spec.name)
                link = ""
                text = (
                    ""
                    if restricted
                    else shown_value(rt, spec.name, value, values=record.values, zone=visit.zone)
                )
                target = spec.references or (
                    record.values.get(spec.references_from) if spec.references_from else None
                )
                if not restricted and value and target:
                    link = f"{PAGE_PATHS[target]}/{value}"
                    try:
                        other = await gateway.read(visit.actor, target, str(value))
                        text = heading_of(RECORD_TYPES[target], other)
                    except GatewayError:
                        text, link = "Not visible to you", ""
                elif (
                    not restricted
                    and value
                    and spec.kind is FieldKind.TEXT
                    and len(str(value)) > 80
                ):
                    text = str(value)  # the whole text on the record's own page
                if not restricted and value and spec.name in choices:
                    given = choices[spec.name]  # a pipeline by its name, not its id
                    parent = str(record.values.get(given.depends_on) or "")
                    text = given.label_of(str(value), parent) or text
                rows.append(
                    {
                        "label": spec.label,
                        "restricted": restricted,
                        "text": text,
                        "link": link,
                        "multiline": spec.kind is FieldKind.TEXT and spec.max_length > 500,
                    }
                )
            return await render(
                request,
                "records/detail.html",
                visit=visit,
                section=resource,
                title=rt.label,
                heading=heading_of(rt, record),
                noun=noun,
                base_path=base_path,
                plural=plural,
                record=record,
                rows=rows,
                can_edit=gateway.permitted_fields(visit.actor, resource, "update") is not None,
                can_delete=gateway.permitted_fields(visit.actor, resource, "delete") is not None,
                convert_link=convert_link(gateway, visit, record),
                related=await related_tables(gateway, visit, record)
                if resource == "contact"
                else [],
                # Consent belongs to people: contacts only (the record was readable above).
                consent=await consent_panel(request, visit, record, base_path)
                if resource == "contact"
                else None,
                notes=await notes_panel(gateway, visit, record),
            )

        @get("/{record_id:str}/edit")
        async def edit_form(
            self,
            request: Request[Any, Any, Any],
            visit: NamedDependency[Visit],
            record_id: FromPath[str],
        ) -> Template | Response[Any]:
            gateway = gateway_of(request)
            record = await gateway.read(visit.actor, resource, record_id)
            writable = gateway.permitted_fields(visit.actor, resource, "update")
            if writable is None:
                raise NotFound(f"{resource} not found")  # as the gateway answers such updates
            if record.erased:
                return await erased_refusal(request, rt, record)
            names, locked = editable(writable, record)
            values = {n: input_text(rt, n, record.values, visit.zone) for n in names}
            return await form_page(
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
            record_id: FromPath[str],
        ) -> Template | Redirect | Response[Any]:
            gateway = gateway_of(request)
            writable = gateway.permitted_fields(visit.actor, resource, "update")
            if writable is None:  # the gateway refuses (and audits) before reading any value
                await gateway.update(visit.actor, resource, record_id, {})
                raise NotFound(f"{resource} not found")
            record = await gateway.read(visit.actor, resource, record_id)
            if record.erased:
                return await erased_refusal(request, rt, record)
            names, locked = editable(writable, record)
            form = await request.form()
            read = read_form(rt, form, names, current=record.values, zone=visit.zone)
            changes, submitted = read.values, read.submitted
            if form.get("_pick"):  # a picker's "Find" (no JavaScript): show the matches
                shown = {n: input_text(rt, n, record.values, visit.zone) for n in names}
                return await form_page(
                    request,
                    visit,
                    names=names,
                    values=shown | submitted,
                    record=record,
                    not_editable=locked,
                    owner=str(form.get("owner_id") or ""),
                    picks=picks_of(form, names),
                )
            owner_id = None
            if offers_owner(request, visit, "update"):
                owner_id = owner_from_form(form, record.owner_id)
            if not changes and owner_id is None and not read.problems:
                await flash(request, visit, "Nothing was changed.", "info")
                return see_other(f"{base_path}/{record.id}")
            try:
                if read.problems:
                    raise InvalidInput("invalid amount", problems=read.problems)
                await gateway.update(visit.actor, resource, record.id, changes, owner_id=owner_id)
            except (InvalidInput, Forbidden, Conflict) as exc:
                problems = exc.problems or {"": exc.message}
                shown = {n: input_text(rt, n, record.values, visit.zone) for n in names}
                values = shown | submitted
                return await form_page(
                    request,
                    visit,
                    names=names,
                    values=values,
                    problems=problems,
                    record=record,
                    not_editable=locked,
                    status=HTTP_403_FORBIDDEN
                    if isinstance(exc, Forbidden)
                    else HTTP_400_BAD_REQUEST,
                    owner=str(form.get("owner_id") or ""),
                    picks={},
                )
            await flash(request, visit, f"{rt.label} updated.")
            return see_other(f"{base_path}/{record.id}")

        @get("/{record_id:str}/delete")
        async def delete_form(
            self,
            request: Request[Any, Any, Any],
            visit: NamedDependency[Visit],
            record_id: FromPath[str],
        ) -> Template:
            gateway = gateway_of(request)
            if gateway.permitted_fields(visit.actor, resource, "delete") is None:
                raise NotFound(f"{resource} not found")
            record = await gateway.read(visit.actor, resource, record_id)
            return await render(
                request,
                "records/delete.html",
                visit=visit,
                section=resource,
                title=f"Delete {noun}",
                heading=heading_of(rt, record),
                noun=noun,
                base_path=base_path,
                record=record,
                # A converted lead shares its person's key with the contact it became:
                # deleting the lead leaves that key (and the contact) alone.
                shreds_key=rt.subject_from is None
                and not (resource == "lead" and record.values.get("converted_contact_id")),
            )

        @post("/{record_id:str}/delete")
        async def delete(
            self,
            request: Request[Any, Any, Any],
            visit: NamedDependency[Visit],
            record_id: FromPath[str],
        ) -> Redirect:
            try:
                await gateway_of(request).delete(visit.actor, resource, record_id)
            except Conflict as exc:
                await flash(request, visit, _sentence(exc.message), "error")
                return see_other(f"{base_path}/{record_id}")
            await flash(request, visit, f"{rt.label} deleted.")
            return see_other(base_path)

    RecordPages.__name__ = RecordPages.__qualname__ = f"{rt.label}Pages"
    return RecordPages


async def related_tables(
    gateway: Gateway, visit: Visit, contact: GatewayRecord
) -> list[dict[str, Any]]:
    """The person's deals, interactions and cases, one small table each - only the types
    this user may list, through the gateway (scoped, audited) like every other list."""
    tables: list[dict[str, Any]] = []
    for rt in RECORD_TYPES.values():
        # Record types without a page of their own (survey answers, a case's messages) are
        # shown where they belong (the case, the feedback results), not as a linked table.
        path = PAGE_PATHS.get(rt.resource)
        if rt.subject_from != "contact_id" or path is None:
            continue
        readable = gateway.permitted_fields(visit.actor, rt.resource, "list")
        if readable is None or "contact_id" not in readable:
            continue
        try:
            page = await gateway.list(
                visit.actor,
                rt.resource,
                filters={"contact_id": contact.id},
                page=1,
                page_size=RELATED_ROWS,
            )
        except GatewayError:
            continue
        # On the person's own page: no column naming them; the owner is on each record.
        columns = [
            n
            for n in SUMMARY_FIELDS.get(rt.resource, ())
            if n != lists.OWNER and not rt.by_name[n].references
        ]
        may_create = gateway.permitted_fields(visit.actor, rt.resource, "create")
        tables.append(
            {
                "title": PLURALS.get(rt.resource, rt.label + "s"),
                "noun": rt.label.lower(),
                "columns": [rt.by_name[n].label for n in columns],
                "rows": [
                    {
                        "link": f"{path}/{r.id}",
                        "heading": heading_of(rt, r, visit.zone),
                        "cells": [
                            (
                                n in r.restricted,
                                shown_value(
                                    rt, n, r.values.get(n), values=r.values, zone=visit.zone
                                ),
                                lists.cell_kind(rt, n),
                            )
                            for n in columns
                        ],
                    }
                    for r in page.items
                ],
                "total": page.total,
                "all_link": f"{path}?{urlencode({'contact_id': contact.id})}",
                "new_link": f"{path}/new?{urlencode({'contact_id': contact.id})}"
                if may_create is not None and "contact_id" in may_create
                else "",
            }
        )
    return tables


async def notes_panel(
    gateway: Gateway, visit: Visit, record: GatewayRecord
) -> dict[str, Any] | None:
    """The notes on a record, newest first, and whether this user may add one: a gateway
    list like any other (their note scope, audited). None where notes do not apply."""
    if record.resource not in NOTE_TARGETS or record.erased:
        return None
    if gateway.permitted_fields(visit.actor, NOTE.resource, "list") is None:
        return None
    try:
        page = await gateway.list(
            visit.actor,
            NOTE.resource,
            filters={"record_type": record.resource, "record_id": record.id},
            page=1,
            page_size=RELATED_ROWS,
        )
    except GatewayError:
        return None
    may_add = gateway.permitted_fields(visit.actor, NOTE.resource, "create")
    return {
        "items": [
            {
                "link": f"{PAGE_PATHS[NOTE.resource]}/{n.id}",
                "body": "" if "body" in n.restricted else str(n.values.get("body") or ""),
                "restricted": "body" in n.restricted,
                "created_at": n.created_at,
                "owner_id": n.owner_id,
            }
            for n in page.items
        ],
        "total": page.total,
        "all_link": f"{PAGE_PATHS[NOTE.resource]}?"
        + urlencode({"record_type": record.resource, "record_id": record.id}),
        "can_add": may_add is not None and "body" in may_add,
        "record_type": record.resource,
        "record_id": record.id,
    }


def convert_link(gateway: Gateway, visit: Visit, record: GatewayRecord) -> str:
    """The lead page's "Convert" button (admin_ui.pages.leads), for an unconverted lead."""
    if record.resource != "lead" or record.values.get("status") == "converted":
        return ""
    if record.erased or gateway.permitted_fields(visit.actor, "lead", "convert") is None:
        return ""
    return f"/leads/{record.id}/convert"


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")
