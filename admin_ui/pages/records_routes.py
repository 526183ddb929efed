"""Where the record pages are mounted: one router per record type that has pages of its
own (the data map's ``RecordType.page_path``), holding the list, form and detail
controllers, with that type's :class:`RecordTypePages` provided to them as ``pages``.

A record type gains its pages by declaring a ``page_path`` (and a ``plural``) in the data
map; nothing here names a record type.
"""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from admin_ui.pages.records import RecordTypePages
from admin_ui.pages.records_detail import RecordDetailPages
from admin_ui.pages.records_forms import RecordFormPages
from admin_ui.pages.records_list import RecordListPages
from server.datamap import RECORD_TYPES, RecordType


def record_pages(rt: RecordType) -> Router:
    """The pages of ``rt`` under its ``page_path``: list, search and bulk actions, new and
    edit forms, a record's page and its deletion."""
    pages = RecordTypePages.of(rt)

    def provide_pages() -> RecordTypePages:
        return pages

    return Router(
        path=pages.base_path,
        route_handlers=[RecordListPages, RecordFormPages, RecordDetailPages],
        dependencies={"pages": Provide(provide_pages, sync_to_thread=False)},
        include_in_schema=False,
    )


def every_record_type_pages() -> list[Router]:
    """The pages of every record type that declares a ``page_path``, in data-map order."""
    return [record_pages(rt) for rt in RECORD_TYPES.values() if rt.page_path is not None]
