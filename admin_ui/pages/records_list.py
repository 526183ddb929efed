"""A record type's list page: filters, sorting and paging, search by name or by an exact
e-mail address or phone number, and bulk actions on ticked rows.

Mounted once per record type by ``admin_ui.pages.records_routes``; ``pages`` (the type's
:class:`RecordTypePages`) is injected. Lists and searches go through the gateway (scoped
and audited); a filter or sort the user may not use falls back instead of failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui import record_lists as lists
from admin_ui.pages import bulk_actions
from admin_ui.pages.imports import export_page
from admin_ui.pages.records import (
    DEFAULT_PAGE_SIZE,
    LIST_HITS,
    MAX_SEARCH,
    PAGE_SIZES,
    RecordTypePages,
    about_a_person,
    gateway_of,
    heading_of,
    shown_value,
)
from admin_ui.pages.records_forms import fields_for, options_for
from admin_ui.rendering import render
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import Field, FieldKind
from server.gateway import Forbidden, Gateway, InvalidInput
from server.gateway import Record as GatewayRecord

# A term that is only what a phone number is written with: an exact phone lookup.
_PHONE_LIKE = re.compile(r"^\+?[\d\s().-]{6,}$")


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value or default)
    except ValueError:
        return default
    return min(max(number, low), high)


@dataclass
class Found:
    """What a list page shows: a page of records or a search's matches, and what went
    wrong finding them (a filter's problems, a search's message)."""

    page: int
    items: list[GatewayRecord] = field(default_factory=list)
    total: int = 0
    problems: dict[str, str] = field(default_factory=dict)
    search_error: str = ""
    exact_search: bool = False


@dataclass(frozen=True)
class ListView:
    """What the user may do on this list: read and filter by these fields, search."""

    readable: frozenset[str]
    may_search: frozenset[str] | None
    shown_filters: list[Field]
    active: dict[str, str]  # the filters in use
    sort: str


class RecordListPages(Controller):
    """``<page_path>``, its search and its bulk actions, of one record type."""

    path = "/"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
    ) -> Template:
        query = request.query_params
        page_size = _int(query.get("page_size"), DEFAULT_PAGE_SIZE, 1, 100)
        return await list_page(
            pages,
            request,
            visit,
            filters={f.name: query.get(f.name, "").strip() for f in pages.filterable},
            page=_int(query.get("page"), 1, 1, 1_000_000),
            page_size=page_size,
            sort=str(query.get("sort", ""))[:40],
        )

    @post("/search")
    async def search(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
    ) -> Template:
        """A POST, like the API's search: the term never appears in a URL or a log."""
        form = await request.form()
        term = form.get("q", "")
        return await list_page(
            pages,
            request,
            visit,
            filters={},
            page=1,
            page_size=DEFAULT_PAGE_SIZE,
            search=term[:MAX_SEARCH] if isinstance(term, str) else "",
        )

    @post("/bulk")
    async def bulk_review(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
    ) -> Template:
        """Ticked rows and an action: the confirmation page (nothing changes yet)."""
        choices = await pages.choices_for(request, {})
        menu = await bulk_actions.menu(request, visit, pages.rt, choices)
        form = await request.form()
        bulk, error = bulk_actions.read_request(form, [a for a, _ in menu.actions])
        base_path, plural = pages.base_path, pages.plural
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
            sentence=bulk_actions.describe(bulk, pages.noun, plural, menu),
            base_path=base_path,
            noun=pages.noun,
            plural=plural,
        )

    @post("/bulk/apply")
    async def bulk_apply(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
    ) -> Template | Redirect:
        choices = await pages.choices_for(request, {})
        menu = await bulk_actions.menu(request, visit, pages.rt, choices)
        form = await request.form()
        allowed = [a for a, _ in menu.actions if a != "export"]
        bulk, error = bulk_actions.read_request(form, allowed)
        base_path, plural = pages.base_path, pages.plural
        if bulk is None:
            return await bulk_actions.refused_page(
                request, visit, error=error, base_path=base_path, plural=plural
            )
        return await bulk_actions.apply(
            request, visit, gateway_of(request), pages.rt, bulk, base_path=base_path, plural=plural
        )


async def list_page(
    pages: RecordTypePages,
    request: Request[Any, Any, Any],
    visit: Visit,
    *,
    filters: dict[str, str],
    page: int,
    page_size: int,
    search: str | None = None,
    sort: str = "",
) -> Template:
    """A page of records (``filters``, ``sort``), or the matches of a ``search``."""
    gateway = gateway_of(request)
    view = await list_view(pages, gateway, visit, filters, sort)
    if search is not None:
        items, error, exact = await run_search(pages, gateway, visit, search)
        found = Found(page, items, len(items), search_error=error, exact_search=exact)
    else:
        found = await list_records(pages, gateway, visit, view, page, page_size)
    return await render_list(pages, request, visit, view, found, page_size, search)


async def list_view(
    pages: RecordTypePages,
    gateway: Gateway,
    visit: Visit,
    filters: dict[str, str],
    sort: str,
) -> ListView:
    """The fields this user may list, filter and search by; the filters and sort in use."""
    rt, resource = pages.rt, pages.resource
    readable = gateway.permitted_fields(visit.actor, resource, "list")
    if readable is None:  # let the gateway refuse: its refusals are audited
        await gateway.list(visit.actor, resource, page=1, page_size=1)
        raise Forbidden(f"your role may not list {pages.noun} records")
    usable = [f for f in pages.filterable if f.name in readable]
    return ListView(
        readable=readable,
        may_search=gateway.permitted_fields(visit.actor, resource, "search"),
        # Records are filtered by person from that person's page (a link), not from a list.
        shown_filters=[f for f in usable if not (f.references and about_a_person(f.references))],
        active={k: v for k, v in filters.items() if v and k in {f.name for f in usable}},
        sort=lists.usable_sort(rt, readable, sort),
    )


async def list_records(
    pages: RecordTypePages,
    gateway: Gateway,
    visit: Visit,
    view: ListView,
    page: int,
    page_size: int,
) -> Found:
    """One page of the list; a page past the end shows the last one."""
    resource, active, sort = pages.resource, view.active, view.sort
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
    except InvalidInput as exc:
        return Found(
            page, problems={k: v for k, v in exc.problems.items() if k in pages.rt.by_name}
        )
    return Found(page, result.items, result.total)


async def render_list(
    pages: RecordTypePages,
    request: Request[Any, Any, Any],
    visit: Visit,
    view: ListView,
    found: Found,
    page_size: int,
    search: str | None,
) -> Template:
    """The list page: columns that sort, rows with linked names, paging, filters, the
    search box and the bulk actions the role may use."""
    rt, base_path, page = pages.rt, pages.base_path, found.page
    gateway = gateway_of(request)
    last = lists.last_page(found.total, page_size)
    query: dict[str, str] = {
        **view.active,
        **({"page_size": str(page_size)} if page_size != DEFAULT_PAGE_SIZE else {}),
        **({"sort": view.sort} if view.sort else {}),
    }

    def page_link(number: int) -> str:
        return f"{base_path}?{urlencode({**query, 'page': number})}"

    filter_names = {f.name for f in view.shown_filters}
    options = await options_for(pages, request, visit, filter_names)
    choices = await pages.choices_for(request, {})
    bulk_menu = await bulk_actions.menu(request, visit, rt, choices)
    shown_columns = list(pages.summary)
    cells = await lists.cells(
        gateway, visit.actor, rt, found.items, shown_columns, shown_value, heading_of, visit.zone
    )
    rows = [
        {"id": r.id, "heading": heading_of(rt, r, visit.zone), "cells": row}
        for r, row in zip(found.items, cells, strict=True)
    ]
    unsorted = {k: v for k, v in query.items() if k != "sort"}
    return await render(
        request,
        "records/list.html",
        visit=visit,
        status=HTTP_400_BAD_REQUEST if found.problems or found.search_error else 200,
        section=pages.resource,
        title=pages.plural,
        plural=pages.plural,
        noun=pages.noun,
        base_path=base_path,
        columns=lists.columns(
            rt,
            shown_columns,
            view.readable,
            view.sort,
            lambda key: lists.list_link(base_path, unsorted, sort=key),
        ),
        sort=view.sort,
        rows=rows,
        total=found.total,
        page=page,
        pages=last,
        page_size=page_size,
        page_sizes=PAGE_SIZES,
        prev_link=page_link(page - 1) if page > 1 and search is None else "",
        next_link=page_link(page + 1) if page < last and search is None else "",
        filters=fields_for(
            pages, [f.name for f in view.shown_filters], options, choices, view.active
        ),
        filter_values=view.active,
        filter_errors=dict(found.problems),
        searchable=search_offer(pages, view.may_search),
        search=search,
        search_error=found.search_error,
        exact_search=found.exact_search,
        can_create=gateway.permitted_fields(visit.actor, pages.resource, "create") is not None,
        can_export=gateway.permitted_fields(visit.actor, pages.resource, "export") is not None,
        bulk=bulk_menu if rows and search is None else None,
    )


def search_offer(pages: RecordTypePages, may_search: frozenset[str] | None) -> list[str]:
    """What the search box offers to find records by ("name", "e-mail address", ...)."""
    by_name = ["name"] if pages.name_search and may_search is not None else []
    return by_name + [f.label.lower() for f in pages.searchable if f.name in (may_search or ())]


async def run_search(
    pages: RecordTypePages, gateway: Gateway, visit: Visit, term: str
) -> tuple[list[GatewayRecord], str, bool]:
    """Name search; exact search when the term is an e-mail address (an @) or looks
    like a phone number (digits, spaces and + - ( ) . only)."""
    resource, plural = pages.resource, pages.plural
    term = term.strip()
    if not term:
        return [], f"Enter {' or '.join(pages.search_words)} to search for.", False
    kind = FieldKind.EMAIL if "@" in term else FieldKind.PHONE if _PHONE_LIKE.match(term) else None
    spec = next((f for f in pages.searchable if f.kind is kind), None) if kind else None
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
    if not pages.name_search:
        return [], f"{plural} cannot be searched by name.", False
    try:
        hits = await gateway.search_names(visit.actor, resource, term, page_size=LIST_HITS)
    except InvalidInput:
        return [], "Type at least one letter or digit of a name.", False
    except Forbidden:
        return [], f"Your role may not search {plural.lower()}.", False
    return hits.items, "", False
