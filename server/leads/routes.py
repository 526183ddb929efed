"""``/api/v1/leads`` (the generic record routes plus conversion) and the public form."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_429_TOO_MANY_REQUESTS

from server.datamap import LEAD
from server.gateway import Actor, InvalidInput
from server.leads.webform import HONEYPOT, TOKEN_FIELD, Throttled, WebForm
from server.records.routes import record_routes
from server.request_guard import ACCEPTS, HTML_FORM_OR_JSON
from server.web import (
    ALSO_ANSWERS,
    client_address_of,
    provide_actor,
    provide_identity,
    purpose_of,
    services_of,
)

LeadRoutes = record_routes(LEAD, "/api/v1/leads", "leads")
MAX_FORM_VALUE = 5000
CONVERT_KEYS = {"create_organization", "organization_id", "deal"}


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
        data: JSONBody[dict[str, Any] | None] = None,
    ) -> dict[str, Any]:
        data = data or {}
        unknown = sorted(set(data) - CONVERT_KEYS)
        if unknown:
            raise InvalidInput(
                "unknown key(s): " + ", ".join(k[:40] for k in unknown),
                problems=dict.fromkeys((k[:40] for k in unknown), "unknown key"),
            )
        create_organization = data.get("create_organization", False)
        organization_id = data.get("organization_id")
        deal = data.get("deal")
        if not isinstance(create_organization, bool):
            raise InvalidInput(
                "create_organization: expected true or false",
                problems={"create_organization": "expected a boolean"},
            )
        if organization_id is not None and not isinstance(organization_id, str):
            raise InvalidInput(
                "organization_id: expected an id", problems={"organization_id": "expected a string"}
            )
        if deal is not None and not isinstance(deal, dict):
            raise InvalidInput("deal: expected an object", problems={"deal": "expected an object"})
        result = await services_of(request).gateway.convert_lead(
            actor,
            str(record_id),
            purpose=purpose_of(request),
            create_organization=create_organization,
            organization_id=organization_id or None,
            deal=deal,
        )
        return {
            "lead_id": result.lead_id,
            "contact_id": result.contact_id,
            "organization_id": result.organization_id,
            "deal_id": result.deal_id,
            "subject_id": result.subject_id,
        }


class PublicLeadForm(Controller):
    """No staff session: a website's contact form posts here (JSON or form-encoded)."""

    path = "/api/v1/public/leads"
    tags = ["public"]

    @get(
        "/form-token",
        description=(
            "A signed timestamp to put in the form's hidden `form_token` field when the "
            "page is shown; a submission must come at least a few seconds later."
        ),
        cache_control=None,
    )
    async def form_token(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        services = services_of(request)
        return Response(
            {
                TOKEN_FIELD: WebForm(services).new_token(),
                "min_seconds": services.settings.web_form_min_seconds,
                "honeypot_field": HONEYPOT,
            },
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
        opt={ACCEPTS: HTML_FORM_OR_JSON, ALSO_ANSWERS: (429,)},
    )
    async def submit(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        data = await _submitted(request)
        try:
            await WebForm(services_of(request)).submit(data, client_address_of(request))
        except Throttled as exc:
            return Response(
                {
                    "status_code": HTTP_429_TOO_MANY_REQUESTS,
                    "detail": "too many submissions from this address; try again later",
                },
                status_code=HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(exc.retry_after)},
            )
        return Response(
            {"status": "received", "detail": "Thank you: we will be in touch."},
            status_code=HTTP_202_ACCEPTED,
        )


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
