"""``/api/v1/leads`` (the generic record routes plus conversion) and the public form.

Bodies and answers are msgspec Structs, so the OpenAPI document carries their schemas (the
public form's body, which may also be a plain HTML form, is documented from ``WebFormIn``).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED
from msgspec import UNSET

from server.datamap import DEAL, LEAD
from server.gateway import Actor, Gateway, InvalidInput
from server.leads.webform import HONEYPOT, Throttled, WebForm
from server.records.routes import record_routes
from server.request_guard import ACCEPTS, HTML_FORM_OR_JSON
from server.settings import Settings
from server.web import (
    ALSO_ANSWERS,
    DOCUMENTED_BODY,
    TooManyCalls,
    client_address_of,
    provide_actor,
    provide_identity,
    purpose_of,
    struct_schema,
)

LeadRoutes = record_routes(LEAD, "/api/v1/leads", "leads")
DOCUMENTED_FORM_TYPES = ("application/json", "application/x-www-form-urlencoded")
MAX_FORM_VALUE = 5000

# The deal a conversion may create: any of the deal's fields (the data map checks them, and
# reports every problem at once); the contact, organization and status are the conversion's.
DealDraft = msgspec.defstruct(
    "DealDraft",
    [
        (f.name, Annotated[Any | msgspec.UnsetType, msgspec.Meta(description=str(f.kind))], UNSET)
        for f in DEAL.fields
        if f.name not in {"contact_id", "organization_id"}
    ],
    forbid_unknown_fields=True,
    kw_only=True,
)


class LeadConversionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    create_organization: bool = False  # true: an organization from the lead's company name
    organization_id: str | None = None  # or an existing organization
    deal: DealDraft | None = None  # type: ignore[valid-type]  # built from the data map


class LeadConversionOut(msgspec.Struct):
    lead_id: str
    contact_id: str
    organization_id: str | None
    deal_id: str | None
    subject_id: str


class FormTokenOut(msgspec.Struct):
    form_token: str
    min_seconds: int
    honeypot_field: str


class FormReceived(msgspec.Struct):
    status: str
    detail: str


def provide_web_form(
    gateway: NamedDependency[Gateway], settings: NamedDependency[Settings]
) -> WebForm:
    """The form over the process's gateway and settings. Made here, not in
    ``build_services``: the thin route packages stay independent of each other, and the
    composition root (reached by all of them through ``server.web``) would tie them to
    this one. It keeps nothing per request (spent tokens and throttles are in the database)."""
    return WebForm(gateway, settings)


class WebFormIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The public form's fields (JSON, url-encoded or multipart). The lead's own fields are
    checked by the data map; the token comes from ``GET .../form-token``."""

    form_token: str
    first_name: str | msgspec.UnsetType = msgspec.UNSET
    last_name: str | msgspec.UnsetType = msgspec.UNSET
    email: str | msgspec.UnsetType = msgspec.UNSET
    phone: str | msgspec.UnsetType = msgspec.UNSET
    company_name: str | msgspec.UnsetType = msgspec.UNSET
    message: str | msgspec.UnsetType = msgspec.UNSET
    website: str | msgspec.UnsetType = msgspec.UNSET  # the honeypot: people leave it empty


class LeadConversion(Controller):
    path = "/api/v1/leads"
    tags = ["leads"]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @post(
        "/{record_id:uuid}/convert",
        status_code=200,
        description=(
            "Convert a lead into a contact (the same data subject), in one transaction. "
            "Body (all optional): `create_organization` (true: from the lead's company "
            "name) or `organization_id` (an existing one), and `deal` "
            '(`{"title": ..., "amount": ..., "currency": ...}`, `amount` an integer in minor '
            "units of the currency: 1250000 with EUR is 12,500.00 EUR). The lead becomes "
            "`converted` with references to what was created; a second conversion is 409."
        ),
    )
    async def convert(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        record_id: FromPath[UUID],
        data: JSONBody[LeadConversionIn | None] = None,
        *,
        gateway: NamedDependency[Gateway],
    ) -> LeadConversionOut:
        asked = data or LeadConversionIn()
        deal = None
        if asked.deal is not None:
            deal = {
                name: value
                for name in asked.deal.__struct_fields__
                if (value := getattr(asked.deal, name)) is not UNSET
            }
        result = await gateway.convert_lead(
            actor,
            str(record_id),
            purpose=purpose_of(request),
            create_organization=asked.create_organization,
            organization_id=asked.organization_id or None,
            deal=deal,
        )
        return LeadConversionOut(
            lead_id=result.lead_id,
            contact_id=result.contact_id,
            organization_id=result.organization_id,
            deal_id=result.deal_id,
            subject_id=result.subject_id,
        )


class PublicLeadForm(Controller):
    """No staff session: a website's contact form posts here (JSON or form-encoded)."""

    path = "/api/v1/public/leads"
    tags = ["public"]
    dependencies = {"web_form": Provide(provide_web_form, sync_to_thread=False)}

    @get(
        "/form-token",
        description=(
            "A signed timestamp to put in the form's hidden `form_token` field when the "
            "page is shown; a submission must come at least a few seconds later."
        ),
        cache_control=None,
    )
    async def form_token(
        self,
        request: Request[Any, Any, Any],
        *,
        web_form: NamedDependency[WebForm],
        settings: NamedDependency[Settings],
    ) -> Response[FormTokenOut]:
        return Response(
            FormTokenOut(
                form_token=web_form.new_token(),
                min_seconds=settings.web_form_min_seconds,
                honeypot_field=HONEYPOT,
            ),
            headers={"Cache-Control": "no-store"},
        )

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        description=(
            "Capture a lead from a public web form: `first_name`, `last_name`, `email`, "
            "`phone`, `company_name`, `message`, plus `form_token` and the empty honeypot "
            "`website`. 202 when accepted (nothing echoed), 400 naming bad fields, 429 with "
            "Retry-After when a client sends too many. The body may be JSON or a plain HTML "
            "form (url-encoded or multipart); anything else is 415."
        ),
        # The one API route that takes HTML forms: a website's own form posts here
        # directly. It needs no session, so a cross-site form gains nothing from it.
        opt={
            ACCEPTS: HTML_FORM_OR_JSON,
            ALSO_ANSWERS: (429,),
            # Multipart is accepted too but not documented: generated clients (and the
            # schemathesis run) send the url-encoded form, which every site can post.
            DOCUMENTED_BODY: (struct_schema(WebFormIn), DOCUMENTED_FORM_TYPES),
        },
    )
    async def submit(
        self, request: Request[Any, Any, Any], *, web_form: NamedDependency[WebForm]
    ) -> FormReceived:
        # Parsed here, not by Litestar: the body may be a plain HTML form as well as JSON,
        # and the form reports every bad field at once (the data map's messages).
        data = await _submitted(request)
        try:
            await web_form.submit(data, client_address_of(request))
        except Throttled as exc:
            raise TooManyCalls(
                "too many submissions from this address; try again later",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        return FormReceived(status="received", detail="Thank you: we will be in touch.")


async def _submitted(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The body as a flat mapping, whether the site posts JSON or a plain HTML form."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            data = await request.json()
        except Exception:  # malformed JSON: say so without quoting it
            raise InvalidInput("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidInput("expected a JSON object")
        return data
    form = await request.form()
    return {k: v[:MAX_FORM_VALUE] for k, v in form.items() if isinstance(v, str)}
