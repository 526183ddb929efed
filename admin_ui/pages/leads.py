"""The lead page's "Convert" step: a form asking what to create besides the contact.

Everything is decided by ``Gateway.convert_lead`` (policy, scope, validation, one
transaction, audit); this page only offers the choices this user can make: an
organization from the lead's company name or an existing one, and an optional deal.
"""

from __future__ import annotations

import contextlib
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_403_FORBIDDEN

from admin_ui.forms import FormField, choice_label, problem_message
from admin_ui.pages.records import (
    MAX_SEARCH,
    RECENT_OPTIONS,
    heading_of,
    picker_options,
    reference_options,
)
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import CURRENCIES, LEAD, ORGANIZATION
from server.gateway import Conflict, Forbidden, Gateway, GatewayError, InvalidInput, NotFound
from server.gateway import Record as GatewayRecord
from server.money import AmountError, parse_major
from server.web import services_of

BASE = "/leads"
DEAL_INPUTS = ("deal_title", "deal_amount", "deal_currency")
# Problems reported by the gateway for the deal's fields, shown at the deal's inputs.
DEAL_FIELDS = {"title": "deal_title", "amount": "deal_amount", "currency": "deal_currency"}


def _text(form: Any, name: str, limit: int = 200) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _anchor(name: str) -> str:
    """Where an error in the summary jumps to: the picker's select has a prefixed id."""
    return "field-organization_id" if name == "organization_id" else name


async def _default_pipeline_name(request: Request[Any, Any, Any]) -> str:
    """Where a converted lead's deal starts (the form says so; the gateway decides)."""
    try:
        return (await services_of(request).pipelines.default()).name
    except NotFound:
        return "default"


class LeadConvertPages(Controller):
    path = BASE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    async def _lead(
        self, request: Request[Any, Any, Any], visit: Visit, lead_id: str
    ) -> GatewayRecord:
        gateway = services_of(request).gateway
        if gateway.permitted_fields(visit.actor, "lead", "convert") is None:
            raise NotFound("lead not found")
        lead = await gateway.read(visit.actor, "lead", lead_id)
        if lead.values.get("status") == "converted" or lead.values.get("converted_contact_id"):
            raise Conflict("this lead has already been converted")
        return lead

    async def _form(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        lead: GatewayRecord,
        *,
        values: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Template:
        errors = errors or {}
        return await render(
            request,
            "leads/convert.html",
            visit=visit,
            status=status,
            section="lead",
            title="Convert lead",
            heading=heading_of(LEAD, lead),
            lead=lead,
            company=lead.values.get("company_name") or "",
            organization=await self._organization_picker(request, visit, values or {}, errors),
            currencies=[(c, choice_label(c)) for c in CURRENCIES],
            pipeline_name=await _default_pipeline_name(request),
            values=values or {},
            errors=errors,
            problem_list=[(_anchor(k), v) for k, v in errors.items()],
        )

    async def _organization_picker(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        values: dict[str, str],
        errors: dict[str, str],
    ) -> FormField:
        """The organization to link, picked by name like on every record form (the newest
        few before anything is typed), so the oldest of 2,000 can be found too."""
        gateway = services_of(request).gateway
        term = values.get("pick_organization_id", "")
        if term.strip():
            choices = await picker_options(gateway, visit, "organization", term)
        else:
            choices = await reference_options(gateway, visit, "organization", limit=RECENT_OPTIONS)
        chosen = values.get("organization_id", "")
        if chosen and chosen not in {value for value, _ in choices}:
            # The one picked earlier stays offered (and selected) when the form returns; one
            # the user may no longer read is simply not offered.
            with contextlib.suppress(GatewayError):
                other = await gateway.read(visit.actor, "organization", chosen)
                choices = [(other.id, heading_of(ORGANIZATION, other)), *choices]
        return FormField(
            name="organization_id",
            label="Link an existing organization",
            control="select",
            input_type="",
            required=False,
            max_length=0,
            choices=tuple(choices),
            hint="",
            picker="organization",
            pick_term=term,
        )

    @get("/{record_id:str}/convert")
    async def convert_form(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        record_id: FromPath[str],
    ) -> Template:
        lead = await self._lead(request, visit, record_id)
        return await self._form(request, visit, lead)

    @post("/{record_id:str}/convert")
    async def convert(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        record_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template | Redirect:
        lead = await self._lead(request, visit, record_id)
        form = await request.form()
        values = {n: _text(form, n) for n in (*DEAL_INPUTS, "organization_id")}
        values["pick_organization_id"] = _text(form, "pick_organization_id", MAX_SEARCH)
        create_organization = form.get("create_organization") == "on"
        if create_organization:
            values["create_organization"] = "on"  # ticked again if the form comes back
        if form.get("_pick"):  # the picker's "Find" without JavaScript: show the matches
            return await self._form(request, visit, lead, values=values)
        errors: dict[str, str] = {}
        deal: dict[str, Any] | None = None
        if any(values[n] for n in DEAL_INPUTS):
            deal = {"title": values["deal_title"], "currency": values["deal_currency"] or None}
            if values["deal_amount"]:
                try:  # typed in major units of the chosen currency: "12500" EUR is 12,500.00
                    deal["amount"] = parse_major(values["deal_amount"], deal["currency"])
                except AmountError as exc:
                    errors["deal_amount"] = problem_message("Amount", str(exc))
        if create_organization and values["organization_id"]:
            errors["organization_id"] = "Choose an existing organization or create one, not both."
        if not errors:
            try:
                result = await gateway.convert_lead(
                    visit.actor,
                    lead.id,
                    create_organization=create_organization,
                    organization_id=values["organization_id"] or None,
                    deal=deal,
                )
            except (InvalidInput, Forbidden) as exc:
                for name, message in (exc.problems or {"": exc.message}).items():
                    errors[DEAL_FIELDS.get(name, name) if deal else name] = message
                status = HTTP_403_FORBIDDEN if isinstance(exc, Forbidden) else HTTP_400_BAD_REQUEST
                return await self._form(
                    request, visit, lead, values=values, errors=errors, status=status
                )
            await flash(request, visit, "Lead converted.")
            return see_other(f"/contacts/{result.contact_id}")
        return await self._form(
            request, visit, lead, values=values, errors=errors, status=HTTP_400_BAD_REQUEST
        )
