# Over 800 lines: segments, campaigns and sending share one manager check, one audit
# record and the consent gate of the audience; sending (send to _deliver) is the split to
# make next (issue 18).
"""Segments and campaigns: who marketing may reach is decided by the gateway, never stored.

A **segment** is a saved filter over contacts (e.g. lifecycle_stage in {prospect,
customer} and source in {event}); its members are re-evaluated through the gateway every
time, under the planning purpose ``marketing``, so a contact who changes stage moves in or
out of the segment at the next look and the viewer's record scope applies.

A **campaign** pursues one per-person purpose (``marketing_email`` or ``marketing_phone``)
over a segment. Its **audience** is the segment's members with a valid basis for that
purpose, counted by ``Gateway.count(..., purpose=..., filters=...)``: consent in force,
no objection, not restricted, within the actor's scope - all compiled into the SQL by the
gateway, so no personal data is read to show the number.

**Sending** (e-mail) reads the audience's addresses through the gateway under
``marketing_email`` (audited), and for each person first *claims* a row in
``campaign_delivery`` (unique on campaign + subject), then sends. A re-run, a second click
or a crash therefore never mails anyone twice: a claimed person is skipped, a refused
delivery (``failed``) is retried, a claim left by a crashed run (``sending``) is not -
at most once, never twice. The person's basis is asked again just before their message
goes out, so a withdrawal between the preview and the send is honoured.

Configuration changes and sends are audited with ids, field names and counts only; the
logs carry ids and counts, never an address.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import PolicyEngine
from server import db
from server.analytics.model import SEGMENT_LABELS, SEGMENTS
from server.analytics.service import CustomerScores
from server.campaigns.tables import Campaign, CampaignDelivery, Segment
from server.consent.service import ConsentEngine
from server.datamap import CONTACT, CURRENCIES, PURPOSES, InvalidValues, clean_values, shown_name
from server.gateway import Actor, Conflict, Forbidden, Gateway, InvalidInput, NotFound, Page
from server.logs import get_logger
from server.mail import Mailer

log = get_logger("consentry.campaigns")

RESOURCE = "campaign"  # policy: ``p, marketing, campaign, manage, allow``
SEGMENT_PURPOSE = "marketing"  # planning: who is in a segment (objectors already left out)
SCORE_FILTER = "score_segment"  # customer-score segments (server.analytics), not a contact field
# The purposes a campaign may pursue and the channel each one uses.
CHANNELS: Mapping[str, str] = {"marketing_email": "email", "marketing_phone": "phone"}
STATUSES = ("draft", "sending", "sent", "cancelled")
MAX_NAME = 100
MAX_DESCRIPTION = 500
MAX_SUBJECT_LINE = 200
MAX_BODY = 20_000
MAX_VALUES = 100  # values per filter field
MAX_COST = 10**15  # minor units
SEND_PAGE = 100  # audience records read per gateway page while sending
# Placeholders a campaign body may use; filled from fields read under the campaign purpose.
PLACEHOLDERS = ("first_name", "last_name")
# Filled in per person by a survey tied to the campaign (server.feedback: NPS surveys).
SURVEY_PLACEHOLDER = "survey_link"
SurveyLinks = Callable[[str, str], Awaitable[str | None]]  # campaign id, subject id -> link


def segment_fields() -> tuple[str, ...]:
    """Contact fields a segment may filter on: the data map's filterable ones."""
    return tuple(f.name for f in CONTACT.fields if f.filterable)


@dataclass(frozen=True)
class SegmentInfo:
    id: str
    name: str
    description: str
    filters: dict[str, list[str]]  # field -> accepted values (any of them)
    owner_id: int
    created_at: dt.datetime
    updated_at: dt.datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "filters": self.filters,
            "owner_id": self.owner_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class CampaignInfo:
    id: str
    name: str
    purpose: str
    channel: str
    segment_id: str
    subject_line: str
    body: str
    status: str
    created_by: int
    created_at: dt.datetime
    updated_at: dt.datetime
    sent_by: int | None
    sent_at: dt.datetime | None
    sent_count: int

    @property
    def editable(self) -> bool:
        return self.status == "draft"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "purpose": self.purpose,
            "channel": self.channel,
            "segment_id": self.segment_id,
            "subject_line": self.subject_line,
            "body": self.body,
            "status": self.status,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "sent_by": self.sent_by,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "sent_count": self.sent_count,
        }


@dataclass(frozen=True)
class Audience:
    """The numbers shown before sending: no personal data is read to compute them."""

    segment_size: int  # segment members under the planning purpose
    audience_size: int  # of those, with a valid basis for the campaign's purpose

    @property
    def excluded(self) -> int:
        return max(self.segment_size - self.audience_size, 0)

    def as_json(self) -> dict[str, int]:
        return {
            "segment_size": self.segment_size,
            "audience_size": self.audience_size,
            "excluded": self.excluded,
        }


@dataclass
class SendResult:
    sent: int = 0  # messages handed to the mail server in this run
    already: int = 0  # people a previous run already reached (or claimed)
    skipped: int = 0  # no address, or no basis any more when their turn came
    failed: int = 0  # the mail server refused: retried on the next run
    errors: dict[str, int] = field(default_factory=dict)  # failure code -> how many
    status: str = "sending"

    def as_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "already_sent": self.already,
            "skipped": self.skipped,
            "failed": self.failed,
            "errors": self.errors,
            "status": self.status,
        }


class AudienceChanged(Conflict):
    """The audience is not the size the user confirmed: they must look again."""


async def campaign_choices() -> list[tuple[str, str]]:
    """(id, name) of every campaign, newest first: the options of a lead's or deal's
    campaign field (names are configuration, not anyone's data)."""
    rows = await Campaign.select(Campaign.id, Campaign.name).order_by(
        Campaign.created_at, ascending=False
    )
    return [(str(r["id"]), str(r["name"])) for r in rows]


def _problem(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name}: {message}", problems={name: message})


def _text(value: object, what: str, limit: int, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _problem(what, "must be text")
    clean = " ".join(value.split())
    if required and not clean:
        raise _problem(what, "must not be empty")
    if len(clean) > limit:
        raise _problem(what, f"longer than {limit} characters")
    return clean


def _body(value: object, limit: int = MAX_BODY) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _problem("body", "must not be empty")
    text = value.replace("\r\n", "\n").strip()
    if len(text) > limit:
        raise _problem("body", f"longer than {limit} characters")
    return text


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Campaigns:
    def __init__(
        self,
        audit: AuditLog,
        policy: PolicyEngine,
        gateway: Gateway,
        consent: ConsentEngine,
        mailer: Mailer,
        scores: CustomerScores,
        *,
        survey_links: SurveyLinks | None = None,
    ) -> None:
        self._scores = scores
        self._survey_links = survey_links
        self._audit = audit
        self._policy = policy
        self._gateway = gateway
        self._consent = consent
        self._mailer = mailer

    def may_manage(self, role: str) -> bool:
        return self._policy.allows(role, RESOURCE, "manage")

    # --- audit ---------------------------------------------------------------------------

    async def require_manager(self, actor: Actor, action: str, resource_id: str = "") -> None:
        """Refuse (403, audited) roles without ``campaign manage`` - e.g. sales."""
        if self.may_manage(actor.role):
            return
        async with db.write_transaction():
            await self._audit.append(
                audit_event(
                    actor_id=actor.id,
                    actor_role=actor.role,
                    action=f"campaign.{action}",
                    resource_type=RESOURCE,
                    resource_id=resource_id or None,
                    outcome=Outcome.DENIED,
                    reason="not_allowed",
                    request_id=actor.request_id,
                )
            )
        raise Forbidden("your role may not manage segments or campaigns")

    async def _record(
        self,
        actor: Actor,
        action: str,
        resource_type: str,
        resource_id: str,
        *,
        fields: tuple[str, ...] = (),
        detail: dict[str, int | str] | None = None,
    ) -> None:
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action=f"campaign.{action}",
                resource_type=resource_type,
                resource_id=resource_id,
                fields=fields,
                outcome=Outcome.ALLOWED,
                request_id=actor.request_id,
                detail=detail or {},
            )
        )

    # --- segments --------------------------------------------------------------------------

    def filter_fields(self, actor: Actor) -> tuple[str, ...]:
        """The contact fields this actor may segment by: filterable and readable by their
        role under the planning purpose (a field they cannot read would leak through counts)."""
        readable = self._gateway.permitted_fields(actor, "contact", "list", purpose=SEGMENT_PURPOSE)
        return tuple(n for n in segment_fields() if readable and n in readable)

    def may_filter_by_score(self, actor: Actor) -> bool:
        """May this actor select people by customer-score segment (``score_segment``)?"""
        return self._policy.allows(actor.role, "purpose:profiling", "use")

    def clean_filters(self, actor: Actor, raw: object) -> dict[str, list[str]]:
        """Validate a segment's filters: ``{field: value or [values]}``. Errors name the field
        (never a value); nothing is saved when one is wrong."""
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise _problem("filters", "must be an object of field -> list of values")
        allowed = self.filter_fields(actor)
        problems: dict[str, str] = {}
        cleaned: dict[str, list[str]] = {}
        for name, given in raw.items():
            key = shown_name(str(name))
            if name == SCORE_FILTER:
                picked = given if isinstance(given, list | tuple) else [given]
                picked = [v for v in picked if v not in (None, "")]
                if any(v not in SEGMENTS for v in picked):
                    problems[key] = "must be score segments: " + ", ".join(SEGMENTS)
                elif not self.may_filter_by_score(actor):
                    problems[key] = "your role may not use customer scores"
                elif picked:
                    cleaned[name] = sorted(set(picked))
                continue
            if name not in segment_fields():
                problems[key] = "not a filterable contact field: use one of " + ", ".join(
                    segment_fields()
                )
                continue
            if name not in allowed:
                problems[key] = "your role may not read this field"
                continue
            values = given if isinstance(given, list | tuple) else [given]
            values = [v for v in values if v not in (None, "")]
            if not values:
                continue  # an empty choice means "any": the field is not filtered
            if len(values) > MAX_VALUES:
                problems[key] = f"at most {MAX_VALUES} values"
                continue
            out: list[str] = []
            for value in values:
                if not isinstance(value, str):
                    problems[key] = "values must be text"
                    break
                try:
                    one = clean_values(CONTACT, {name: value}, partial=True, default_region="GB")
                except InvalidValues as exc:
                    problems[key] = exc.problems.get(name, "invalid value")
                    break
                if str(one[name]) not in out:
                    out.append(str(one[name]))
            else:
                cleaned[name] = sorted(out)
        if problems:
            raise InvalidInput(
                "invalid filter: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
                problems=problems,
            )
        return cleaned

    @staticmethod
    def _segment_of(row: Mapping[str, Any]) -> SegmentInfo:
        return SegmentInfo(
            id=str(row["id"]),
            name=str(row["name"]),
            description=str(row["description"] or ""),
            filters=json.loads(row["filters"] or "{}"),
            owner_id=int(row["owner_id"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    async def segments(self, actor: Actor) -> list[SegmentInfo]:
        await self.require_manager(actor, "segment_list")
        rows = await Segment.select().order_by(Segment.name)
        return [self._segment_of(r) for r in rows]

    async def segment(self, actor: Actor, segment_id: str) -> SegmentInfo:
        await self.require_manager(actor, "segment_read", segment_id)
        row = await Segment.select().where(Segment.id == _uuid(segment_id, "segment")).first()
        if row is None:
            raise NotFound("segment not found")
        return self._segment_of(row)

    async def create_segment(
        self, actor: Actor, name: object, description: object, filters: object
    ) -> SegmentInfo:
        await self.require_manager(actor, "segment_create")
        clean_name = _text(name, "name", MAX_NAME)
        clean_description = _text(description, "description", MAX_DESCRIPTION, required=False)
        clean = self.clean_filters(actor, filters)
        new_id, now = uuid.uuid4(), _now()
        async with db.write_transaction():
            await Segment.insert(
                Segment(
                    id=new_id,
                    name=clean_name,
                    description=clean_description,
                    filters=json.dumps(clean, sort_keys=True),
                    owner_id=actor.user_id or 0,
                    created_at=now,
                    updated_at=now,
                )
            ).run()
            await self._record(
                actor, "segment_create", "segment", str(new_id), fields=tuple(sorted(clean))
            )
        return await self.segment(actor, str(new_id))

    async def update_segment(
        self, actor: Actor, segment_id: str, changes: Mapping[str, Any]
    ) -> SegmentInfo:
        current = await self.segment(actor, segment_id)
        unknown = sorted(set(changes) - {"name", "description", "filters"})
        if unknown:
            raise InvalidInput(
                "unknown field(s): " + ", ".join(shown_name(u) for u in unknown),
                problems={shown_name(u): "unknown field" for u in unknown},
            )
        values: dict[Any, Any] = {}
        if "name" in changes:
            values[Segment.name] = _text(changes["name"], "name", MAX_NAME)
        if "description" in changes:
            values[Segment.description] = _text(
                changes["description"], "description", MAX_DESCRIPTION, required=False
            )
        if "filters" in changes:
            clean = self.clean_filters(actor, changes["filters"])
            values[Segment.filters] = json.dumps(clean, sort_keys=True)
        if not values:
            return current
        values[Segment.updated_at] = _now()
        async with db.write_transaction():
            await Segment.update(values).where(Segment.id == uuid.UUID(current.id))
            await self._record(
                actor,
                "segment_update",
                "segment",
                current.id,
                fields=tuple(sorted(k for k in changes if k in {"name", "description", "filters"})),
            )
        return await self.segment(actor, current.id)

    async def delete_segment(self, actor: Actor, segment_id: str) -> None:
        """Delete a segment no campaign uses (a sent campaign must keep saying whom it
        was for)."""
        current = await self.segment(actor, segment_id)
        used = await Campaign.count().where(Campaign.segment_id == uuid.UUID(current.id))
        if used:
            raise Conflict(f"{used} campaign(s) use this segment; delete or re-point them first")
        async with db.write_transaction():
            await Segment.delete().where(Segment.id == uuid.UUID(current.id))
            await self._record(actor, "segment_delete", "segment", current.id)

    async def gateway_filters(
        self, actor: Actor, segment: SegmentInfo, purpose: str
    ) -> dict[str, list[str]]:
        """A segment's filters as the gateway takes them: a score filter becomes the people
        in those score segments, and is refused under a purpose that may not use scores
        (``Purpose.uses_scores``: nothing with legal or similar effect selects by score)."""
        filters = dict(segment.filters)
        wanted = filters.pop(SCORE_FILTER, None)
        if wanted is None:
            return filters
        if not PURPOSES[purpose].uses_scores:
            raise Forbidden(f"customer scores may not select people for {purpose}")
        filters["subject_id"] = sorted(await self._scores.subjects_in_segments(actor, wanted))
        return filters

    async def segment_size(self, actor: Actor, segment: SegmentInfo) -> int:
        """Members now: a count by the gateway (audited, nothing decrypted)."""
        return await self._gateway.count(
            actor,
            "contact",
            purpose=SEGMENT_PURPOSE,
            filters=await self.gateway_filters(actor, segment, SEGMENT_PURPOSE),
        )

    async def segment_members(
        self, actor: Actor, segment: SegmentInfo, *, page: int = 1, page_size: int = 25
    ) -> Page:
        """A page of members, re-evaluated now, with the fields the role may read under the
        planning purpose (the gateway decrypts only those, and audits the page)."""
        return await self._gateway.list(
            actor,
            "contact",
            purpose=SEGMENT_PURPOSE,
            filters=await self.gateway_filters(actor, segment, SEGMENT_PURPOSE),
            page=page,
            page_size=page_size,
        )

    # --- campaigns -------------------------------------------------------------------------

    @staticmethod
    def _campaign_of(row: Mapping[str, Any]) -> CampaignInfo:
        return CampaignInfo(
            id=str(row["id"]),
            name=str(row["name"]),
            purpose=str(row["purpose"]),
            channel=str(row["channel"]),
            segment_id=str(row["segment_id"]),
            subject_line=str(row["subject_line"] or ""),
            body=str(row["body"] or ""),
            status=str(row["status"]),
            created_by=int(row["created_by"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            sent_by=None if row["sent_by"] is None else int(row["sent_by"]),
            sent_at=row["sent_at"],
            sent_count=int(row["sent_count"] or 0),
        )

    async def campaigns(self, actor: Actor) -> list[CampaignInfo]:
        await self.require_manager(actor, "list")
        rows = await Campaign.select().order_by(Campaign.created_at, ascending=False)
        return [self._campaign_of(r) for r in rows]

    async def campaign(self, actor: Actor, campaign_id: str) -> CampaignInfo:
        await self.require_manager(actor, "read", campaign_id)
        row = await Campaign.select().where(Campaign.id == _uuid(campaign_id, "campaign")).first()
        if row is None:
            raise NotFound("campaign not found")
        return self._campaign_of(row)

    async def set_cost(self, actor: Actor, campaign_id: str, cost: int, currency: str) -> None:
        """What the campaign cost, in minor units of ``currency``: the funnel's cost per
        won deal (0 clears it). Any status: costs are often known only afterwards."""
        await self.require_manager(actor, "cost", campaign_id)
        if currency not in CURRENCIES:
            raise _problem("currency", "must be one of: " + ", ".join(CURRENCIES))
        if isinstance(cost, bool) or not 0 <= cost < MAX_COST:
            raise _problem("cost", "must be a whole number of minor units, 0 or more")
        wanted = _uuid(campaign_id, "campaign")
        async with db.write_transaction():
            if not await Campaign.exists().where(Campaign.id == wanted):
                raise NotFound("campaign not found")
            await Campaign.update({Campaign.cost: cost, Campaign.cost_currency: currency}).where(
                Campaign.id == wanted
            )
            await self._record(actor, "cost", RESOURCE, campaign_id, fields=("cost",))

    async def _check_segment(self, actor: Actor, segment_id: object) -> str:
        if not isinstance(segment_id, str) or not segment_id:
            raise _problem("segment_id", "choose a segment")
        try:
            return (await self.segment(actor, segment_id)).id
        except NotFound:
            raise _problem("segment_id", "no such segment") from None

    def _check_content(self, channel: str, subject_line: object, body: object) -> tuple[str, str]:
        if channel != "email":  # a call list: nothing is sent, so no text is kept
            return "", ""
        problems: dict[str, str] = {}
        clean_subject = clean_body = ""
        try:
            clean_subject = _text(subject_line, "subject_line", MAX_SUBJECT_LINE)
        except InvalidInput as exc:
            problems.update(exc.problems)
        try:
            clean_body = _body(body)
        except InvalidInput as exc:
            problems.update(exc.problems)
        if problems:
            raise InvalidInput(
                "; ".join(f"{k}: {v}" for k, v in problems.items()), problems=problems
            )
        return clean_subject, clean_body

    async def create_campaign(self, actor: Actor, data: Mapping[str, Any]) -> CampaignInfo:
        """A draft: name, purpose (which fixes the channel), segment, and for e-mail a
        subject line and body."""
        await self.require_manager(actor, "create")
        unknown = sorted(set(data) - {"name", "purpose", "segment_id", "subject_line", "body"})
        if unknown:
            raise InvalidInput(
                "unknown field(s): " + ", ".join(shown_name(u) for u in unknown),
                problems={shown_name(u): "unknown field" for u in unknown},
            )
        name = _text(data.get("name"), "name", MAX_NAME)
        purpose = data.get("purpose")
        if purpose not in CHANNELS:
            raise _problem("purpose", "must be one of " + ", ".join(CHANNELS))
        channel = CHANNELS[str(purpose)]
        segment_id = await self._check_segment(actor, data.get("segment_id"))
        subject_line, body = self._check_content(
            channel, data.get("subject_line"), data.get("body")
        )
        new_id, now = uuid.uuid4(), _now()
        async with db.write_transaction():
            await Campaign.insert(
                Campaign(
                    id=new_id,
                    name=name,
                    purpose=str(purpose),
                    channel=channel,
                    segment_id=uuid.UUID(segment_id),
                    subject_line=subject_line,
                    body=body,
                    status="draft",
                    created_by=actor.user_id or 0,
                    created_at=now,
                    updated_at=now,
                    sent_count=0,
                )
            ).run()
            await self._record(
                actor, "create", RESOURCE, str(new_id), detail={"purpose": str(purpose)}
            )
        return await self.campaign(actor, str(new_id))

    async def update_campaign(
        self, actor: Actor, campaign_id: str, changes: Mapping[str, Any]
    ) -> CampaignInfo:
        """Change a draft (a campaign being sent or sent is history)."""
        current = await self.campaign(actor, campaign_id)
        unknown = sorted(set(changes) - {"name", "purpose", "segment_id", "subject_line", "body"})
        if unknown:
            raise InvalidInput(
                "unknown field(s): " + ", ".join(shown_name(u) for u in unknown),
                problems={shown_name(u): "unknown field" for u in unknown},
            )
        if not current.editable:
            raise Conflict(f"this campaign is {current.status}: only a draft can be changed")
        values: dict[Any, Any] = {}
        if "name" in changes:
            values[Campaign.name] = _text(changes["name"], "name", MAX_NAME)
        purpose = current.purpose
        if "purpose" in changes:
            if changes["purpose"] not in CHANNELS:
                raise _problem("purpose", "must be one of " + ", ".join(CHANNELS))
            purpose = str(changes["purpose"])
            values[Campaign.purpose] = purpose
            values[Campaign.channel] = CHANNELS[purpose]
        if "segment_id" in changes:
            values[Campaign.segment_id] = uuid.UUID(
                await self._check_segment(actor, changes["segment_id"])
            )
        if {"subject_line", "body", "purpose"} & set(changes):
            subject_line, body = self._check_content(
                CHANNELS[purpose],
                changes.get("subject_line", current.subject_line),
                changes.get("body", current.body),
            )
            values[Campaign.subject_line] = subject_line
            values[Campaign.body] = body
        if not values:
            return current
        values[Campaign.updated_at] = _now()
        async with db.write_transaction():
            await Campaign.update(values).where(Campaign.id == uuid.UUID(current.id))
            await self._record(actor, "update", RESOURCE, current.id, fields=tuple(sorted(changes)))
        return await self.campaign(actor, current.id)

    async def delete_campaign(self, actor: Actor, campaign_id: str) -> None:
        """Delete a draft; anything sent (or being sent) stays as the record of it."""
        current = await self.campaign(actor, campaign_id)
        if current.status not in ("draft", "cancelled") or await self.delivery_counts(current.id):
            raise Conflict(
                f"this campaign is {current.status} and reached people: it is kept as a record"
            )
        async with db.write_transaction():
            await Campaign.delete().where(Campaign.id == uuid.UUID(current.id))
            await self._record(actor, "delete", RESOURCE, current.id)

    async def cancel_campaign(self, actor: Actor, campaign_id: str) -> CampaignInfo:
        """Stop a draft (or an interrupted send) from going out; nothing already sent is
        undone."""
        current = await self.campaign(actor, campaign_id)
        if current.status not in ("draft", "sending"):
            raise Conflict(f"this campaign is {current.status}: it cannot be cancelled")
        async with db.write_transaction():
            await Campaign.update(
                {Campaign.status: "cancelled", Campaign.updated_at: _now()}
            ).where(Campaign.id == uuid.UUID(current.id))
            await self._record(actor, "cancel", RESOURCE, current.id)
        return await self.campaign(actor, current.id)

    async def _segment_for(self, actor: Actor, campaign: CampaignInfo) -> SegmentInfo:
        try:
            return await self.segment(actor, campaign.segment_id)
        except NotFound:
            raise Conflict("this campaign's segment no longer exists: choose another") from None

    async def audience(self, actor: Actor, campaign: CampaignInfo) -> Audience:
        """Segment size and audience size, now: two gateway counts, no record read."""
        segment = await self._segment_for(actor, campaign)
        segment_size = await self.segment_size(actor, segment)
        audience_size = await self._gateway.count(
            actor,
            "contact",
            purpose=campaign.purpose,
            filters=await self.gateway_filters(actor, segment, campaign.purpose),
        )
        return Audience(segment_size=segment_size, audience_size=audience_size)

    async def call_list(
        self, actor: Actor, campaign: CampaignInfo, *, page: int = 1, page_size: int = 25
    ) -> Page:
        """A phone campaign's audience, a page at a time, read through the gateway under
        ``marketing_phone`` (the phone number is readable only under that purpose)."""
        if campaign.channel != "phone":
            raise Conflict("only a phone campaign has a call list")
        segment = await self._segment_for(actor, campaign)
        return await self._gateway.list(
            actor,
            "contact",
            purpose=campaign.purpose,
            filters=await self.gateway_filters(actor, segment, campaign.purpose),
            page=page,
            page_size=page_size,
        )

    async def delivery_counts(self, campaign_id: str) -> dict[str, int]:
        rows = await CampaignDelivery.select(CampaignDelivery.status).where(
            CampaignDelivery.campaign_id == uuid.UUID(campaign_id)
        )
        counts: dict[str, int] = {}
        for row in rows:
            counts[str(row["status"])] = counts.get(str(row["status"]), 0) + 1
        return counts

    # --- sending ---------------------------------------------------------------------------

    async def send(self, actor: Actor, campaign_id: str, confirm_audience: object) -> SendResult:
        """Send an e-mail campaign to its audience, once per person, after confirmation.

        ``confirm_audience`` is the audience size the user was shown; if the audience is
        a different size now (someone consented, withdrew, changed stage), nothing is sent
        and the caller is told to look again (409).
        """
        campaign = await self.campaign(actor, campaign_id)
        if campaign.channel != "email":
            raise Conflict("a phone campaign is not sent: work through its call list")
        if campaign.status not in ("draft", "sending"):
            raise Conflict(f"this campaign is {campaign.status}: it cannot be sent again")
        if isinstance(confirm_audience, bool) or not isinstance(confirm_audience, int):
            raise _problem("confirm_audience", "give the audience size you were shown, as a number")
        if not self._mailer.enabled:
            raise Conflict("no mail server is configured (CONSENTRY_SMTP_HOST): nothing was sent")
        segment = await self._segment_for(actor, campaign)
        now_size = (await self.audience(actor, campaign)).audience_size
        if now_size != confirm_audience:
            raise AudienceChanged(
                f"the audience is now {now_size} people, not {confirm_audience}: "
                "check the preview and confirm again",
                problems={"confirm_audience": f"the audience is now {now_size}"},
            )
        async with db.write_transaction():
            await Campaign.update(
                {
                    Campaign.status: "sending",
                    Campaign.sent_by: actor.user_id or 0,
                    Campaign.updated_at: _now(),
                }
            ).where(Campaign.id == uuid.UUID(campaign.id))
        result = SendResult()
        for person in await self._recipients(actor, campaign, segment):
            await self._deliver(campaign, person, result)
        counts = await self.delivery_counts(campaign.id)
        done = result.failed == 0
        result.status = "sent" if done else "sending"
        async with db.write_transaction():
            changes: dict[Any, Any] = {
                Campaign.sent_count: counts.get("sent", 0),
                Campaign.updated_at: _now(),
            }
            if done:
                changes[Campaign.status] = "sent"
                changes[Campaign.sent_at] = _now()
            await Campaign.update(changes).where(Campaign.id == uuid.UUID(campaign.id))
            await self._record(
                actor,
                "send",
                RESOURCE,
                campaign.id,
                detail={
                    "purpose": campaign.purpose,
                    "audience": now_size,
                    "sent": result.sent,
                    "already": result.already,
                    "skipped": result.skipped,
                    "failed": result.failed,
                },
            )
        log.info(
            "campaign sent" if done else "campaign send incomplete",
            campaign=campaign.id,
            sent=result.sent,
            already=result.already,
            skipped=result.skipped,
            failed=result.failed,
        )
        return result

    async def _recipients(
        self, actor: Actor, campaign: CampaignInfo, segment: SegmentInfo
    ) -> list[tuple[str, dict[str, Any]]]:
        """(subject id, readable values) for the whole audience, read page by page through
        the gateway under the campaign's purpose (each page audited with its subjects).
        Read before anything is sent, so sending does not shift the pages under us."""
        people: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        page = 1
        while True:
            batch = await self._gateway.list(
                actor,
                "contact",
                purpose=campaign.purpose,
                filters=await self.gateway_filters(actor, segment, campaign.purpose),
                page=page,
                page_size=SEND_PAGE,
            )
            for record in batch.items:
                if record.subject_id not in seen and not record.erased:
                    seen.add(record.subject_id)
                    people.append((record.subject_id, record.values))
            if page * SEND_PAGE >= batch.total or not batch.items:
                return people
            page += 1

    async def _claim(self, campaign_id: str, subject_id: str) -> bool:
        """Take one person for this campaign, before mailing them. False when a run (this
        one, an earlier one, or a concurrent one) already has them - except a delivery the
        mail server refused, which is taken again."""
        campaign, subject = uuid.UUID(campaign_id), uuid.UUID(subject_id)
        async with db.write_transaction():
            inserted = (
                await CampaignDelivery.insert(
                    CampaignDelivery(
                        id=uuid.uuid4(),
                        campaign_id=campaign,
                        subject_id=subject,
                        status="sending",
                        error="",
                        attempted_at=_now(),
                    )
                )
                .on_conflict(action="DO NOTHING")
                .returning(CampaignDelivery.id)
            )
            if inserted:
                return True
            retried = (
                await CampaignDelivery.update(
                    {CampaignDelivery.status: "sending", CampaignDelivery.attempted_at: _now()}
                )
                .where(
                    (CampaignDelivery.campaign_id == campaign)
                    & (CampaignDelivery.subject_id == subject)
                    & (CampaignDelivery.status == "failed")
                )
                .returning(CampaignDelivery.id)
            )
            return bool(retried)

    async def _mark(self, campaign_id: str, subject_id: str, status: str, error: str = "") -> None:
        async with db.write_transaction():
            await CampaignDelivery.update(
                {
                    CampaignDelivery.status: status,
                    CampaignDelivery.error: error[:40],
                    CampaignDelivery.attempted_at: _now(),
                }
            ).where(
                (CampaignDelivery.campaign_id == uuid.UUID(campaign_id))
                & (CampaignDelivery.subject_id == uuid.UUID(subject_id))
            )

    async def _deliver(
        self, campaign: CampaignInfo, person: tuple[str, dict[str, Any]], result: SendResult
    ) -> None:
        subject_id, values = person
        if not await self._claim(campaign.id, subject_id):
            result.already += 1
            return
        address = values.get("email")
        if not address:
            await self._mark(campaign.id, subject_id, "skipped", "no_address")
            result.skipped += 1
            return
        # Asked again at the last moment: a withdrawal a second ago still counts.
        basis = await self._consent.has_basis(subject_id, campaign.purpose, campaign.channel)
        if not basis.ok:
            await self._mark(campaign.id, subject_id, "skipped", basis.reason)
            result.skipped += 1
            return
        link = self._consent.withdrawal_link(subject_id, campaign.purpose, campaign.channel)
        survey = self._survey_links and await self._survey_links(campaign.id, subject_id)
        if survey:
            values = {**values, SURVEY_PLACEHOLDER: survey}
        sent = await self._mailer.send(
            str(address),
            campaign.subject_line,
            self.compose(campaign.body, values, link),
            headers={
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
        if sent.sent:
            await self._mark(campaign.id, subject_id, "sent")
            result.sent += 1
        else:
            await self._mark(campaign.id, subject_id, "failed", sent.error or "failed")
            result.failed += 1
            result.errors[sent.error or "failed"] = result.errors.get(sent.error or "failed", 0) + 1

    @staticmethod
    def compose(body: str, values: Mapping[str, Any], withdrawal_link: str) -> str:
        """The message text: the body with ``{first_name}``/``{last_name}`` filled in (plain
        replacement, no format language), then the one-click withdrawal link."""
        text = body
        for name in (*PLACEHOLDERS, SURVEY_PLACEHOLDER):
            text = text.replace("{" + name + "}", str(values.get(name) or ""))
        return (
            f"{text}\n\n--\n"
            "You receive this because you agreed to hear from us by e-mail.\n"
            f"To stop these e-mails, open this link (one click, no login): {withdrawal_link}\n"
        )


def describe_filters(
    filters: Mapping[str, Sequence[str]], names: Mapping[str, str] | None = None
) -> str:
    """A segment's filters in words for the pages ("Lifecycle stage is prospect or
    customer"); ``names`` turns values such as organization ids into what people read."""
    if not filters:
        return "every contact"
    labels = {f.name: f.label for f in CONTACT.fields} | {SCORE_FILTER: "Score segment"}
    shown = {**SEGMENT_LABELS, **(names or {})}
    return "; ".join(
        f"{labels.get(name, name)} is {' or '.join(shown.get(v, v) for v in values)}"
        for name, values in filters.items()
    )
