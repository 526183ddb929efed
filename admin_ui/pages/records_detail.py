"""A record's own page (its fields, linked records by name, notes, and on a person's page
their deals, interactions, cases and tasks and their consent) and its deletion.

Mounted once per record type by ``admin_ui.pages.records_routes``; ``pages`` (the type's
:class:`RecordTypePages`) is injected. Every record shown is read or listed through the
gateway (scoped, audited); a linked record the user may not read is "Not visible to you".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from admin_ui import record_lists as lists
from admin_ui.forms import FieldChoices
from admin_ui.pages.consent import consent_panel
from admin_ui.pages.erased import erased_page
from admin_ui.pages.records import (
    RELATED_ROWS,
    RecordTypePages,
    gateway_of,
    heading_of,
    page_path_of,
    shown_value,
)
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import NOTE, NOTE_TARGETS, RECORD_TYPES, Field, FieldKind
from server.gateway import Conflict, Gateway, GatewayError, NotFound
from server.gateway import Record as GatewayRecord


class RecordDetailPages(Controller):
    """``<page_path>/<id>`` and ``<page_path>/<id>/delete`` of one record type."""

    path = "/"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/{record_id:str}")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
        record_id: FromPath[str],
    ) -> Template:
        return await detail_page(pages, request, visit, record_id)

    @get("/{record_id:str}/delete")
    async def delete_form(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        pages: NamedDependency[RecordTypePages],
        record_id: FromPath[str],
    ) -> Template:
        rt, resource = pages.rt, pages.resource
        gateway = gateway_of(request)
        if gateway.permitted_fields(visit.actor, resource, "delete") is None:
            raise NotFound(f"{resource} not found")
        record = await gateway.read(visit.actor, resource, record_id)
        return await render(
            request,
            "records/delete.html",
            visit=visit,
            section=resource,
            title=f"Delete {pages.noun}",
            heading=heading_of(rt, record),
            noun=pages.noun,
            base_path=pages.base_path,
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
        pages: NamedDependency[RecordTypePages],
        record_id: FromPath[str],
    ) -> Redirect:
        try:
            await gateway_of(request).delete(visit.actor, pages.resource, record_id)
        except Conflict as exc:
            await flash(request, visit, _sentence(exc.message), "error")
            return see_other(f"{pages.base_path}/{record_id}")
        await flash(request, visit, f"{pages.rt.label} deleted.")
        return see_other(pages.base_path)


async def detail_page(
    pages: RecordTypePages, request: Request[Any, Any, Any], visit: Visit, record_id: str
) -> Template:
    """A record's page, or the tombstone page of an erased one."""
    rt, resource, base_path = pages.rt, pages.resource, pages.base_path
    gateway = gateway_of(request)
    record = await gateway.read(visit.actor, resource, record_id)
    if record.erased:
        return await erased_page(
            request, visit, rt, record, base_path=base_path, plural=pages.plural
        )
    choices = await pages.choices_for(request, record.values)
    rows = [
        await detail_row(pages, gateway, visit, record, spec, choices)
        for spec in rt.fields
        if not spec.bookkeeping
    ]
    return await render(
        request,
        "records/detail.html",
        visit=visit,
        section=resource,
        title=rt.label,
        heading=heading_of(rt, record),
        noun=pages.noun,
        base_path=base_path,
        plural=pages.plural,
        record=record,
        rows=rows,
        can_edit=gateway.permitted_fields(visit.actor, resource, "update") is not None,
        can_delete=gateway.permitted_fields(visit.actor, resource, "delete") is not None,
        convert_link=convert_link(gateway, visit, record),
        related=await related_tables(gateway, visit, record) if resource == "contact" else [],
        # Consent belongs to people: contacts only (the record was readable above).
        consent=await consent_panel(request, visit, record, base_path)
        if resource == "contact"
        else None,
        notes=await notes_panel(gateway, visit, record),
    )


async def detail_row(
    pages: RecordTypePages,
    gateway: Gateway,
    visit: Visit,
    record: GatewayRecord,
    spec: Field,
    choices: dict[str, FieldChoices],
) -> dict[str, Any]:
    """One field of the record's page: its value as shown, a linked record by its name
    (read through the gateway), "Restricted" for a value the role may not read."""
    restricted = spec.name in record.restricted
    value = record.values.get(spec.name)
    link = ""
    text = (
        ""
        if restricted
        else shown_value(pages.rt, spec.name, value, values=record.values, zone=visit.zone)
    )
    target = spec.references or (
        record.values.get(spec.references_from) if spec.references_from else None
    )
    if not restricted and value and target:
        link = f"{page_path_of(target)}/{value}"
        try:
            other = await gateway.read(visit.actor, target, str(value))
            text = heading_of(RECORD_TYPES[target], other)
        except GatewayError:
            text, link = "Not visible to you", ""
    elif not restricted and value and spec.kind is FieldKind.TEXT and len(str(value)) > 80:
        text = str(value)  # the whole text on the record's own page
    if not restricted and value and spec.name in choices:
        given = choices[spec.name]  # a pipeline by its name, not its id
        parent = str(record.values.get(given.depends_on) or "")
        text = given.label_of(str(value), parent) or text
    return {
        "label": spec.label,
        "restricted": restricted,
        "text": text,
        "link": link,
        "multiline": spec.kind is FieldKind.TEXT and spec.max_length > 500,
    }


async def related_tables(
    gateway: Gateway, visit: Visit, contact: GatewayRecord
) -> list[dict[str, Any]]:
    """The person's deals, interactions and cases, one small table each - only the types
    this user may list, through the gateway (scoped, audited) like every other list."""
    tables: list[dict[str, Any]] = []
    for rt in RECORD_TYPES.values():
        # Record types without a page of their own (survey answers, a case's messages) are
        # shown where they belong (the case, the feedback results), not as a linked table.
        path = rt.page_path
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
        columns = [n for n in rt.summary if n != lists.OWNER and not rt.by_name[n].references]
        may_create = gateway.permitted_fields(visit.actor, rt.resource, "create")
        tables.append(
            {
                "title": rt.plural,
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
    notes_path = page_path_of(NOTE.resource)
    return {
        "items": [
            {
                "link": f"{notes_path}/{n.id}",
                "body": "" if "body" in n.restricted else str(n.values.get("body") or ""),
                "restricted": "body" in n.restricted,
                "created_at": n.created_at,
                "owner_id": n.owner_id,
            }
            for n in page.items
        ],
        "total": page.total,
        "all_link": f"{notes_path}?"
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
