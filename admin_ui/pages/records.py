"""The pages of every record type with pages of its own, generated from the data map.

Lists, search and bulk actions (``records_list``), the new and edit forms
(``records_forms``), a record's page and its deletion (``records_detail``); each is a
small controller mounted once per record type under the type's ``page_path``
(``record_pages``), with the :class:`RecordTypePages` of that type injected as ``pages``.
This module holds what they, and other pages, share: how a record is named and a value
shown, and the options of a reference field.

Every page goes through the gateway, exactly like the JSON API: the policy decides what
is shown, the vault decrypts only permitted fields, and each read and write is audited.
A field the role may not read arrives as a name in ``Record.restricted`` and is shown as
"Restricted" - its value never reaches these handlers, let alone the browser.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Request

from admin_ui.display import UTC, money, shown_moment
from admin_ui.forms import FieldChoices, choice_label
from admin_ui.pages.funnel import lead_choices
from admin_ui.pages.pipeline import deal_choices
from admin_ui.session import Visit
from server.datamap import RECORD_TYPES, Field, FieldKind, RecordType
from server.gateway import Forbidden, Gateway, GatewayError, InvalidInput
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

ChoicesProvider = Callable[
    [Request[Any, Any, Any], Mapping[str, Any]], Awaitable[dict[str, FieldChoices]]
]
# Per record type: options for fields whose valid values are configuration, not in the data
# map (a deal's pipeline and its stages). Called with the record's current values (empty
# on a new one); the gateway's record rules still validate whatever is submitted.
CHOICES_PROVIDERS: dict[str, ChoicesProvider] = {"deal": deal_choices, "lead": lead_choices}


@dataclass(frozen=True)
class RecordTypePages:
    """What every page of one record type needs to know, from its data-map declaration:
    injected into the list, form and detail handlers as ``pages``."""

    rt: RecordType
    base_path: str  # RecordType.page_path
    plural: str
    noun: str  # "deal", "captured e-mail"
    filterable: tuple[Field, ...]  # the list's filters
    searchable: tuple[Field, ...]  # exact search (blind-indexed fields)
    name_search: bool  # searchable by name (server.gateway.search)
    search_words: tuple[str, ...]  # "a name", "an e-mail address", ...
    summary: tuple[str, ...]  # the list's columns
    provider: ChoicesProvider | None

    @classmethod
    def of(cls, rt: RecordType) -> RecordTypePages:
        searchable = tuple(f for f in rt.fields if f.blind_index)
        name_search = rt.resource in SEARCH_TYPES
        return cls(
            rt=rt,
            base_path=page_path_of(rt.resource),
            plural=rt.plural,
            noun=rt.label.lower(),
            filterable=tuple(f for f in rt.fields if f.filterable),
            searchable=searchable,
            name_search=name_search,
            search_words=(("a name",) if name_search else ())
            + tuple(
                f"{'an' if f.kind is FieldKind.EMAIL else 'a'} {f.label.lower()}"
                for f in searchable
            ),
            summary=rt.summary or tuple(f.name for f in rt.fields[1:4]),
            provider=CHOICES_PROVIDERS.get(rt.resource),
        )

    @property
    def resource(self) -> str:
        return self.rt.resource

    async def choices_for(
        self, request: Request[Any, Any, Any], current: Mapping[str, Any]
    ) -> dict[str, FieldChoices]:
        """Options the data map cannot know (a deal's pipelines), for ``current`` values."""
        return await self.provider(request, current) if self.provider is not None else {}


def page_path_of(resource: str) -> str:
    """Where a record type's pages live (the data map's ``page_path``): its list there, a
    record at ``<path>/<id>``. A type without pages of its own has nothing to link to."""
    path = RECORD_TYPES[resource].page_path
    if path is None:
        raise LookupError(f"{resource} records have no pages of their own")
    return path


def gateway_of(request: Request[Any, Any, Any]) -> Gateway:
    return services_of(request).gateway


def heading_of(rt: RecordType, record: GatewayRecord, zone: ZoneInfo = UTC) -> str:
    parts = [
        shown_value(rt, n, record.values[n], zone=zone) for n in rt.heading if record.values.get(n)
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


def about_a_person(resource: str) -> bool:
    """Contacts and the records about one: offering them all in a filter would read (and
    audit as accessed) a hundred people on every list page, so they are never offered."""
    return resource == "contact" or RECORD_TYPES[resource].subject_from is not None
