"""The header search box, its typeahead, the full results page and the record pickers.

Every answer comes from the gateway's name search (server.gateway.search): the record
scope is in its SQL, only fields the role may read are decrypted, and each search is
audited with the ids it returned. The term always travels in a POST body, so it never
appears in a URL, the access log or the browser history, and it is never logged.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.pages.records import heading_of, page_path_of, picker_options, shown_value
from admin_ui.rendering import render
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import RECORD_TYPES
from server.gateway import Forbidden, Gateway, InvalidInput, Record
from server.gateway.search import MAX_TERM, SEARCH_TYPES, NameHits

# The header box offers these types, grouped in this order.
HEADER_TYPES = ("contact", "lead", "organization", "deal", "case")
SUGGESTIONS_PER_TYPE = 4
RESULTS_PER_TYPE = 10


def _term(form: Any, name: str = "q") -> str:
    value = form.get(name, "")
    return value[:MAX_TERM] if isinstance(value, str) else ""


def item_of(record: Record) -> dict[str, str]:
    """A result as a list shows it: a link, the name, and one readable detail."""
    rt = RECORD_TYPES[record.resource]
    detail = next(
        (
            shown_value(rt, name, record.values[name])
            for name in rt.summary
            if record.values.get(name) and rt.by_name[name].kind.value != "reference"
        ),
        "",
    )
    return {
        "id": record.id,
        "link": f"{page_path_of(record.resource)}/{record.id}",
        "heading": heading_of(rt, record),
        "detail": detail,
        "type": rt.label,
    }


def group_of(hits: NameHits) -> dict[str, Any]:
    return {
        "type": hits.resource,
        "label": RECORD_TYPES[hits.resource].plural,
        "total": hits.total,
        "capped": hits.capped,
        "page": hits.page,
        "pages": max(1, (hits.total + hits.page_size - 1) // hits.page_size),
        "items": [item_of(r) for r in hits.items],
    }


async def search_groups(
    gateway: Gateway, visit: Visit, term: str, per_type: int
) -> tuple[list[dict[str, Any]], str]:
    """Groups of results for the term, or an explanation of what a term needs."""
    try:
        found = await gateway.search_everything(
            visit.actor, term, types=HEADER_TYPES, per_type=per_type
        )
    except InvalidInput:
        return [], "Type at least one letter or digit of a name."
    return [group_of(h) for h in found if h.items], ""


class SearchPages(Controller):
    path = "/search"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/")
    async def search_page(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await render(
            request, "search/results.html", visit=visit, title="Search", q="", groups=[],
            searched=False, error="",
        )  # fmt: skip

    @post("/")
    async def results(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template:
        """The full results page: a plain form POST, so it works without JavaScript. With
        ``type`` and ``page``, one type's further pages."""
        form = await request.form()
        term = _term(form)
        wanted = form.get("type")
        error = ""
        groups: list[dict[str, Any]] = []
        if isinstance(wanted, str) and wanted in SEARCH_TYPES:
            page = form.get("page", "1")
            number = int(page) if isinstance(page, str) and page.isdigit() else 1
            try:
                hits = await gateway.search_names(
                    visit.actor,
                    wanted,
                    term,
                    page=max(1, min(number, 1000)),
                    page_size=RESULTS_PER_TYPE,
                )
                groups = [group_of(hits)] if hits.items else []
            except InvalidInput:
                error = "Type at least one letter or digit of a name."
            except Forbidden:
                error = "Your role may not search these records."
        else:
            groups, error = await search_groups(gateway, visit, term, RESULTS_PER_TYPE)
        return await render(
            request,
            "search/results.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if error else 200,
            title="Search",
            q=term,
            groups=groups,
            searched=True,
            error=error,
            one_type=wanted if isinstance(wanted, str) and wanted in SEARCH_TYPES else "",
        )

    @post("/suggest")
    async def suggest(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template:
        """The typeahead's list (an htmx fragment): a few matches per type."""
        form = await request.form()
        term = _term(form)
        groups: list[dict[str, Any]] = []
        if term.strip():
            groups, _ = await search_groups(gateway, visit, term, SUGGESTIONS_PER_TYPE)
        return await render(request, "search/_suggestions.html", visit=visit, groups=groups, q=term)

    @post("/pick/{resource:str}")
    async def pick(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        resource: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template:
        """A picker's options (an htmx fragment swapped into its select): the records of
        ``resource`` whose name matches what was typed into ``pick_<field>``."""
        form = await request.form()
        field = form.get("field", "")
        term = _term(form, f"pick_{field}") if isinstance(field, str) else ""
        options = await picker_options(gateway, visit, resource, term)
        return await render(
            request,
            "search/_options.html",
            visit=visit,
            options=options,
            selected=options[0][0] if options else "",
            searched=bool(term.strip()),
        )
