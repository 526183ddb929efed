"""``/api/v1/segments`` and ``/api/v1/campaigns``: thin routes over :mod:`server.campaigns`.

Staff session as for every API route. Roles without ``campaign manage`` (sales, support,
compliance) get 403; unknown ids 404; bad input 400 naming the field. Member lists and
call lists are gateway pages: only the fields the role may read, each page audited.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from server.campaigns.service import CHANNELS, Campaigns, segment_fields
from server.gateway import Actor, InvalidInput, Page
from server.records.routes import record_json
from server.web import PageNumber, PageSize, provide_actor, provide_identity

FILTERS_DOC = (
    "`filters` maps contact fields to the values accepted (any of them): "
    + ", ".join(f"`{n}`" for n in segment_fields())
    + ', e.g. `{"lifecycle_stage": ["prospect", "customer"]}`. Fields are combined with AND; '
    "no filters means every contact. Only fields your role may read are accepted. "
    "`score_segment` selects by customer-score segment (docs/analytics-scores.md): only "
    "people scored under their consent to profiling, for purposes that may use scores."
)


def _page_json(result: Page) -> dict[str, Any]:
    return {
        "items": [record_json(r) for r in result.items],
        "total": result.total,
        "page": result.page,
        "page_size": result.page_size,
        "pages": (result.total + result.page_size - 1) // result.page_size,
    }


class SegmentRoutes(Controller):
    path = "/api/v1/segments"
    tags = ["campaigns"]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get("/", description="Every saved segment (name, description, filters, owner).")
    async def list_segments(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        segments = await campaigns.segments(actor)
        return {"items": [s.as_json() for s in segments]}

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        description="Save a segment: `name`, optional `description`, `filters`. " + FILTERS_DOC,
    )
    async def create_segment(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        data: JSONBody[dict[str, Any]],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        segment = await campaigns.create_segment(
            actor, data.get("name"), data.get("description"), data.get("filters")
        )
        return segment.as_json()

    @get("/{segment_id:uuid}", description="One segment.")
    async def get_segment(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        segment_id: FromPath[UUID],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        return (await campaigns.segment(actor, str(segment_id))).as_json()

    @patch("/{segment_id:uuid}", description="Change `name`, `description` or `filters`.")
    async def update_segment(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        segment_id: FromPath[UUID],
        data: JSONBody[dict[str, Any]],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        return (await campaigns.update_segment(actor, str(segment_id), data)).as_json()

    @delete(
        "/{segment_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        description="Delete a segment no campaign uses (409 otherwise).",
    )
    async def delete_segment(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        segment_id: FromPath[UUID],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> None:
        await campaigns.delete_segment(actor, str(segment_id))

    @get(
        "/{segment_id:uuid}/size",
        description="How many contacts are in the segment now (a count; nothing is read).",
    )
    async def segment_size(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        segment_id: FromPath[UUID],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, int]:
        segment = await campaigns.segment(actor, str(segment_id))
        return {"size": await campaigns.segment_size(actor, segment)}

    @get(
        "/{segment_id:uuid}/members",
        description=(
            "A page of the segment's members, evaluated now, newest first, with the fields "
            "your role may read for campaign planning (purpose `marketing`)."
        ),
    )
    async def segment_members(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        segment_id: FromPath[UUID],
        page: PageNumber = 1,
        page_size: PageSize = 25,
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        segment = await campaigns.segment(actor, str(segment_id))
        members = await campaigns.segment_members(actor, segment, page=page, page_size=page_size)
        return _page_json(members)


class CampaignRoutes(Controller):
    path = "/api/v1/campaigns"
    tags = ["campaigns"]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @get("/", description="Every campaign, newest first.")
    async def list_campaigns(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        return {"items": [c.as_json() for c in await campaigns.campaigns(actor)]}

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        description=(
            "Create a draft: `name`, `purpose` ("
            + ", ".join(f"`{p}` -> {c}" for p, c in CHANNELS.items())
            + "), `segment_id`, and for e-mail `subject_line` and `body` (`{first_name}` and "
            "`{last_name}` are filled in; a one-click withdrawal link is always appended)."
        ),
    )
    async def create_campaign(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        data: JSONBody[dict[str, Any]],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        return (await campaigns.create_campaign(actor, data)).as_json()

    @get("/{campaign_id:uuid}", description="One campaign, with its delivery counts.")
    async def get_campaign(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        campaign_id: FromPath[UUID],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        campaign = await campaigns.campaign(actor, str(campaign_id))
        return {**campaign.as_json(), "deliveries": await campaigns.delivery_counts(campaign.id)}

    @patch("/{campaign_id:uuid}", description="Change a draft (409 once sending has started).")
    async def update_campaign(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        campaign_id: FromPath[UUID],
        data: JSONBody[dict[str, Any]],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        return (await campaigns.update_campaign(actor, str(campaign_id), data)).as_json()

    @delete(
        "/{campaign_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        description="Delete a draft or cancelled campaign that sent nothing (409 otherwise).",
    )
    async def delete_campaign(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        campaign_id: FromPath[UUID],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> None:
        await campaigns.delete_campaign(actor, str(campaign_id))

    @post(
        "/{campaign_id:uuid}/cancel",
        status_code=200,
        description="Cancel a draft or an interrupted send; nothing already sent is undone.",
    )
    async def cancel_campaign(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        campaign_id: FromPath[UUID],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        return (await campaigns.cancel_campaign(actor, str(campaign_id))).as_json()

    @get(
        "/{campaign_id:uuid}/audience",
        description=(
            "`segment_size` (the segment's members now) and `audience_size` (those with a "
            "valid basis for the campaign's purpose: consent in force, no objection, not "
            "restricted), plus `excluded`. Counts only: no personal data is read."
        ),
    )
    async def audience(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        campaign_id: FromPath[UUID],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, int]:
        campaign = await campaigns.campaign(actor, str(campaign_id))
        return (await campaigns.audience(actor, campaign)).as_json()

    @get(
        "/{campaign_id:uuid}/call-list",
        description="A phone campaign's audience, a page at a time (name and phone number).",
    )
    async def call_list(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        campaign_id: FromPath[UUID],
        page: PageNumber = 1,
        page_size: PageSize = 25,
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        campaign = await campaigns.campaign(actor, str(campaign_id))
        return _page_json(
            await campaigns.call_list(actor, campaign, page=page, page_size=page_size)
        )

    @post(
        "/{campaign_id:uuid}/send",
        status_code=200,
        description=(
            'Send an e-mail campaign: `{"confirm_audience": N}` with the `audience_size` you '
            "were shown. 409 if the audience changed since (look again), if the campaign "
            "was sent or cancelled, or if no mail server is configured. Each person is "
            "mailed at most once, however often this is called; a run that stopped part "
            "way is resumed by calling it again."
        ),
    )
    async def send(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        campaign_id: FromPath[UUID],
        data: JSONBody[dict[str, Any]],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> dict[str, Any]:
        await campaigns.require_manager(actor, "send", str(campaign_id))  # the right first
        if "confirm_audience" not in data:
            raise InvalidInput(
                "confirm_audience: required (the audience size you were shown)",
                problems={"confirm_audience": "required"},
            )
        result = await campaigns.send(actor, str(campaign_id), data["confirm_audience"])
        return result.as_json()
