"""Segments and campaigns in the admin (``/campaigns``), for roles the policy lets manage
them (marketing, admin); anyone else gets the service's audited 403 page.

Pages: the list of campaigns and segments; a segment form (checkboxes per filter value, so
it works without JavaScript) with the member count and a page of members showing only the
fields the role may read; a campaign form; a campaign page with the preview (segment size,
audience size, how many are left out for lack of consent) and a send form carrying the
audience size the user saw, so a changed audience is caught and shown again; the result
once sent; and a phone campaign's call list.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_409_CONFLICT

from admin_ui.forms import choice_label
from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.analytics.model import SEGMENT_LABELS, SEGMENTS
from server.campaigns.service import (
    CHANNELS,
    MAX_BODY,
    MAX_DESCRIPTION,
    MAX_NAME,
    MAX_SUBJECT_LINE,
    SCORE_FILTER,
    SEGMENT_PURPOSE,
    AudienceChanged,
    CampaignInfo,
    Campaigns,
    SegmentInfo,
    describe_filters,
)
from server.datamap import CONTACT
from server.gateway import Conflict, Forbidden, GatewayError, InvalidInput, NotFound, Page
from server.web import services_of

MEMBERS_PER_PAGE = 25
PURPOSE_LABELS = {
    "marketing_email": "E-mail (marketing_email): sent to people who consented to e-mails",
    "marketing_phone": "Phone (marketing_phone): a call list of people who agreed to calls",
}
STATUS_LABELS = {
    "draft": "Draft",
    "sending": "Sending interrupted (send again to finish)",
    "sent": "Sent",
    "cancelled": "Cancelled",
}


def _campaigns(request: Request[Any, Any, Any]) -> Campaigns:
    return services_of(request).campaigns


def _text(form: FormMultiDict, name: str, limit: int) -> str:
    value = form.get(name, "")
    return value.strip()[: limit + 1] if isinstance(value, str) else ""


def _columns(request: Request[Any, Any, Any], visit: Visit, purpose: str) -> list[Any]:
    """Contact fields a member list shows: those the role may read under ``purpose``."""
    readable = services_of(request).gateway.permitted_fields(
        visit.actor, "contact", "list", purpose=purpose
    )
    return [f for f in CONTACT.fields if readable and f.name in readable]


async def _cells(
    request: Request[Any, Any, Any],
    visit: Visit,
    members: Page | None,
    columns: list[Any],
    purpose: str,
    known: dict[str, str],
) -> dict[tuple[str, str], str]:
    """(member id, field) -> what the member list shows: choices by their label, an
    organization by its name (read through the gateway as the user), never a code or id."""
    gateway = services_of(request).gateway
    names = dict(known)
    cells: dict[tuple[str, str], str] = {}
    for member in members.items if members else []:
        for spec in columns:
            value = member.values.get(spec.name)
            if value in (None, ""):
                text = "\u2013"
            elif spec.choices:
                text = choice_label(str(value))
            elif spec.references:
                if str(value) not in names:
                    try:
                        other = await gateway.read(
                            visit.actor, spec.references, str(value), purpose=purpose
                        )
                        names[str(value)] = str(other.values.get("name") or "(no name)")
                    except GatewayError:
                        names[str(value)] = "Not visible to you"
                text = names[str(value)]
            else:
                text = str(value)
            cells[(member.id, spec.name)] = text
    return cells


def _problem_list(errors: dict[str, str]) -> list[tuple[str, str]]:
    """(anchor, sentence) pairs for the error summary; anchors are the inputs' ids."""
    return [
        (name, f"{name.replace('_', ' ').capitalize()}: {text}" if name else text)
        for name, text in errors.items()
    ]


def _pages(page: Page) -> int:
    return max((page.total + page.page_size - 1) // page.page_size, 1)


async def _filter_options(request: Request[Any, Any, Any], visit: Visit) -> list[dict[str, Any]]:
    """One group of checkboxes per contact field the user may segment by. Organizations
    are read through the gateway (first 100 by newest; names only)."""
    campaigns = _campaigns(request)
    groups: list[dict[str, Any]] = []
    for name in campaigns.filter_fields(visit.actor):
        spec = CONTACT.by_name[name]
        if spec.choices:
            options = [(c, choice_label(c)) for c in spec.choices]
        elif spec.references == "organization":
            try:
                orgs = await services_of(request).gateway.list(
                    visit.actor, "organization", purpose=SEGMENT_PURPOSE, page_size=100
                )
            except Forbidden:  # may filter by organization id, may not list organizations
                continue
            options = [(o.id, str(o.values.get("name") or "(no name)")) for o in orgs.items]
        else:
            continue
        groups.append({"name": name, "label": spec.label, "options": options})
    if campaigns.may_filter_by_score(visit.actor):
        groups.append(
            {
                "name": SCORE_FILTER,
                "label": "Score segment (people who consented to profiling)",
                "options": [(s, SEGMENT_LABELS[s]) for s in SEGMENTS],
            }
        )
    return groups


def _filters_from(form: FormMultiDict, groups: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {g["name"]: [str(v) for v in form.getall(g["name"], [])] for g in groups}


class CampaignPages(Controller):
    path = "/campaigns"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    # --- the overview ------------------------------------------------------------------

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template:
        every = await campaigns.campaigns(visit.actor)
        segments = await campaigns.segments(visit.actor)
        return await render(
            request,
            "campaigns/index.html",
            visit=visit,
            section="campaigns",
            title="Campaigns",
            campaigns=every,
            segments=segments,
            segment_names={s.id: s.name for s in segments},
            describe=describe_filters,
            status_labels=STATUS_LABELS,
        )

    # --- segments ------------------------------------------------------------------------

    async def _segment_form(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        segment: SegmentInfo | None,
        values: dict[str, Any],
        errors: dict[str, str] | None = None,
        page: int = 1,
        status: int = 200,
    ) -> Template:
        campaigns = _campaigns(request)
        size: int | None = None
        members: Page | None = None
        if segment is not None:
            size = await campaigns.segment_size(visit.actor, segment)
            members = await campaigns.segment_members(
                visit.actor, segment, page=page, page_size=MEMBERS_PER_PAGE
            )

        def page_link(n: int) -> str:
            return f"/campaigns/segments/{segment.id}?" + urlencode({"page": n}) if segment else ""

        groups = await _filter_options(request, visit)
        names = {str(v): label for g in groups for v, label in g["options"]}
        columns = _columns(request, visit, SEGMENT_PURPOSE)
        return await render(
            request,
            "campaigns/segment.html",
            visit=visit,
            status=status,
            section="campaigns",
            title=segment.name if segment else "New segment",
            segment=segment,
            values=values,
            errors=errors or {},
            problem_list=_problem_list(errors or {}),
            groups=groups,
            size=size,
            members=members,
            pages=_pages(members) if members else 1,
            columns=columns,
            cells=await _cells(request, visit, members, columns, SEGMENT_PURPOSE, names),
            page_link=page_link,
            describe=lambda filters: describe_filters(filters, names),
            max_name=MAX_NAME,
            max_description=MAX_DESCRIPTION,
        )

    @get("/segments/new")
    async def new_segment(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template:
        await campaigns.require_manager(visit.actor, "segment_form")
        values = {"name": "", "description": "", "filters": {}}
        return await self._segment_form(request, visit, segment=None, values=values)

    @post("/segments/new")
    async def create_segment(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template | Redirect:
        await campaigns.require_manager(visit.actor, "segment_create")
        form = await request.form()
        groups = await _filter_options(request, visit)
        values = {
            "name": _text(form, "name", MAX_NAME),
            "description": _text(form, "description", MAX_DESCRIPTION),
            "filters": _filters_from(form, groups),
        }
        try:
            segment = await campaigns.create_segment(
                visit.actor, values["name"], values["description"], values["filters"]
            )
        except InvalidInput as exc:
            return await self._segment_form(
                request,
                visit,
                segment=None,
                values=values,
                errors=exc.problems or {"": exc.message},
                status=HTTP_400_BAD_REQUEST,
            )
        await flash(request, visit, "Segment saved.")
        return see_other(f"/campaigns/segments/{segment.id}")

    @get("/segments/{segment_id:str}")
    async def segment(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        segment_id: FromPath[str],
        page: FromQuery[int] = 1,
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template:
        segment = await campaigns.segment(visit.actor, segment_id)
        values = {
            "name": segment.name,
            "description": segment.description,
            "filters": segment.filters,
        }
        return await self._segment_form(
            request, visit, segment=segment, values=values, page=max(page, 1)
        )

    @post("/segments/{segment_id:str}")
    async def update_segment(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        segment_id: FromPath[str],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template | Redirect:
        segment = await campaigns.segment(visit.actor, segment_id)
        form = await request.form()
        groups = await _filter_options(request, visit)
        values = {
            "name": _text(form, "name", MAX_NAME),
            "description": _text(form, "description", MAX_DESCRIPTION),
            "filters": _filters_from(form, groups),
        }
        try:
            await campaigns.update_segment(visit.actor, segment.id, values)
        except InvalidInput as exc:
            return await self._segment_form(
                request,
                visit,
                segment=segment,
                values=values,
                errors=exc.problems or {"": exc.message},
                status=HTTP_400_BAD_REQUEST,
            )
        await flash(request, visit, "Segment saved.")
        return see_other(f"/campaigns/segments/{segment.id}")

    @post("/segments/{segment_id:str}/delete")
    async def delete_segment(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        segment_id: FromPath[str],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Redirect:
        try:
            await campaigns.delete_segment(visit.actor, segment_id)
        except Conflict as exc:
            await flash(request, visit, exc.message, "error")
            return see_other(f"/campaigns/segments/{segment_id}")
        await flash(request, visit, "Segment deleted.")
        return see_other("/campaigns")

    # --- campaigns -----------------------------------------------------------------------

    async def _campaign_form(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        values: dict[str, Any],
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Template:
        segments = await _campaigns(request).segments(visit.actor)
        return await render(
            request,
            "campaigns/campaign_form.html",
            visit=visit,
            status=status,
            section="campaigns",
            title="New campaign",
            values=values,
            errors=errors or {},
            problem_list=_problem_list(errors or {}),
            segments=segments,
            purposes=[(p, PURPOSE_LABELS.get(p, p)) for p in CHANNELS],
            max_name=MAX_NAME,
            max_subject=MAX_SUBJECT_LINE,
            max_body=MAX_BODY,
        )

    @get("/new")
    async def new_campaign(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        segment: FromQuery[str] = "",
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template:
        await campaigns.require_manager(visit.actor, "form")
        values = {
            "name": "",
            "purpose": "marketing_email",
            "segment_id": segment,
            "subject_line": "",
            "body": "",
        }
        return await self._campaign_form(request, visit, values)

    @post("/new")
    async def create_campaign(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template | Redirect:
        await campaigns.require_manager(visit.actor, "create")
        form = await request.form()
        values = {
            "name": _text(form, "name", MAX_NAME),
            "purpose": _text(form, "purpose", 32),
            "segment_id": _text(form, "segment_id", 36),
            "subject_line": _text(form, "subject_line", MAX_SUBJECT_LINE),
            "body": str(form.get("body", ""))[: MAX_BODY + 1],
        }
        try:
            campaign = await campaigns.create_campaign(visit.actor, values)
        except InvalidInput as exc:
            return await self._campaign_form(
                request,
                visit,
                values,
                errors=exc.problems or {"": exc.message},
                status=HTTP_400_BAD_REQUEST,
            )
        await flash(request, visit, "Campaign saved as a draft. Check the audience, then send.")
        return see_other(f"/campaigns/{campaign.id}")

    async def _campaign_page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        campaign: CampaignInfo,
        *,
        error: str = "",
        status: int = 200,
    ) -> Template:
        campaigns = _campaigns(request)
        segment: SegmentInfo | None
        try:
            segment = await campaigns.segment(visit.actor, campaign.segment_id)
        except NotFound:  # deleted meanwhile: shown as missing
            segment = None
        audience = None
        if segment is not None and campaign.status in ("draft", "sending"):
            audience = await campaigns.audience(visit.actor, campaign)
        return await render(
            request,
            "campaigns/campaign.html",
            visit=visit,
            status=status,
            section="campaigns",
            title=campaign.name,
            campaign=campaign,
            segment=segment,
            audience=audience,
            deliveries=await campaigns.delivery_counts(campaign.id),
            describe=describe_filters,
            status_labels=STATUS_LABELS,
            purpose_label=PURPOSE_LABELS.get(campaign.purpose, campaign.purpose),
            mail_enabled=services_of(request).mailer.enabled,
            error=error,
        )

    @get("/{campaign_id:str}")
    async def campaign(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        campaign_id: FromPath[str],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template:
        campaign = await campaigns.campaign(visit.actor, campaign_id)
        return await self._campaign_page(request, visit, campaign)

    @post("/{campaign_id:str}/send")
    async def send(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        campaign_id: FromPath[str],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template | Redirect:
        campaign = await campaigns.campaign(visit.actor, campaign_id)
        form = await request.form()
        confirmed = _text(form, "confirm_audience", 12)
        if not form.get("confirm") or not confirmed.isdigit():
            return await self._campaign_page(
                request,
                visit,
                campaign,
                error="Tick the box to confirm the audience before sending.",
                status=HTTP_400_BAD_REQUEST,
            )
        try:
            result = await campaigns.send(visit.actor, campaign.id, int(confirmed))
        except AudienceChanged as exc:
            fresh = await campaigns.campaign(visit.actor, campaign.id)
            return await self._campaign_page(
                request,
                visit,
                fresh,
                error=(
                    f"Nothing was sent: {exc.message.split(':')[0]}. The numbers below are "
                    "up to date; check them and confirm again."
                ),
                status=HTTP_409_CONFLICT,
            )
        except Conflict as exc:
            fresh = await campaigns.campaign(visit.actor, campaign.id)
            return await self._campaign_page(
                request, visit, fresh, error=exc.message, status=HTTP_409_CONFLICT
            )
        message = f"Sent to {result.sent} people."
        if result.already:
            message += f" {result.already} had already been sent it and were skipped."
        if result.skipped:
            message += f" {result.skipped} skipped (no address, or consent gone meanwhile)."
        if result.failed:
            message += f" {result.failed} failed: send again to retry them."
        await flash(request, visit, message, "error" if result.failed else "success")
        return see_other(f"/campaigns/{campaign.id}")

    @post("/{campaign_id:str}/cancel")
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        campaign_id: FromPath[str],
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template | Redirect:
        try:
            await campaigns.cancel_campaign(visit.actor, campaign_id)
        except Conflict as exc:
            campaign = await campaigns.campaign(visit.actor, campaign_id)
            return await self._campaign_page(
                request, visit, campaign, error=exc.message, status=HTTP_409_CONFLICT
            )
        await flash(request, visit, "Campaign cancelled.")
        return see_other(f"/campaigns/{campaign_id}")

    @get("/{campaign_id:str}/call-list")
    async def call_list(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        campaign_id: FromPath[str],
        page: FromQuery[int] = 1,
        *,
        campaigns: NamedDependency[Campaigns],
    ) -> Template:
        campaign = await campaigns.campaign(visit.actor, campaign_id)
        people = await campaigns.call_list(
            visit.actor, campaign, page=max(page, 1), page_size=MEMBERS_PER_PAGE
        )
        columns = _columns(request, visit, campaign.purpose)
        return await render(
            request,
            "campaigns/call_list.html",
            visit=visit,
            section="campaigns",
            title=f"Call list: {campaign.name}",
            campaign=campaign,
            members=people,
            pages=_pages(people),
            columns=columns,
            cells=await _cells(request, visit, people, columns, campaign.purpose, {}),
            page_link=lambda n: f"/campaigns/{campaign.id}/call-list?" + urlencode({"page": n}),
        )
