"""The customer 360 page: one person's organization, deals, interactions, cases, tasks and
consents, with a single timeline merging all of them (newest first).

Everything about the person is read through the gateway as the signed-in staff member,
so their policy applies and every read is audited: fields they may not read show as
"Restricted", record types they may not list are left out with a note, and the record
scope (own / team) applies to the related records too. Consent comes from the consent
engine: the current state for this one person (what the contact page shows), each entry
dated when it took effect, and the whole ledger below it, newest first (every grant,
withdrawal, expiry, objection and lifted objection: when, how, by whom, under which notice
version; never the evidence text). Reading the ledger is audited (``consent.ledger_read``).

Roles the policy lets see a person's related records as metadata only (action
``metadata`` on deal, interaction and case; compliance officers) get those records listed
by subject id with no field at all: type, created, last changed, owner and counts, so an
officer can see that the person has three deals and an open case without reading any.

The timeline holds at most ``TIMELINE_LIMIT`` entries; each list links to its full list.
Plain HTML: nothing here needs JavaScript.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Template

from admin_ui.display import UTC
from admin_ui.pages.consent import CHANNEL_LABELS, KIND_LABELS
from admin_ui.pages.erased import erased_page
from admin_ui.pages.records import heading_of, page_path_of, shown_value
from admin_ui.rendering import render
from admin_ui.session import Visit, page_access, provide_visit
from policy.enforcer import PolicyEngine
from server.analytics.model import LOGIC, SEGMENT_LABELS
from server.consent.model import SUBJECT_ACTOR, ConsentEventKind
from server.datamap import (
    CASE,
    CONTACT,
    DEAL,
    INTERACTION,
    MAIL,
    ORGANIZATION,
    RECORD_TYPES,
    TASK,
    RecordType,
)
from server.dsr.export import CONSENT_SOURCE_LABELS
from server.gateway import Gateway, GatewayError
from server.gateway import Record as GatewayRecord
from server.pipelines.service import pipeline_names, stage_kinds
from server.reports.service import OPEN_CASE_STATUSES, money
from server.web import services_of

TIMELINE_LIMIT = 100  # entries on the page; also the most records read per type
# The records about one contact, in page order. Captured mail is found by the person's
# subject id (mail filed under their lead before conversion included); the gateway leaves
# out other people's private mail in SQL.
RELATED = (DEAL, INTERACTION, CASE, TASK, MAIL)
ORGANIZATION_FIELDS = ("name", "domain", "industry", "city", "country")


@dataclass(frozen=True)
class Detail:
    label: str
    text: str
    restricted: bool = False


@dataclass(frozen=True)
class Entry:
    """One line of the timeline. ``moment`` is aware UTC (dates count as midnight UTC)."""

    moment: dt.datetime
    kind: str  # "deal" | "interaction" | "case" | "task" | "consent": CSS hook and label
    title: str
    link: str = ""
    details: tuple[Detail, ...] = ()
    flag: str = ""  # e.g. "SLA breached", "Upcoming"


@dataclass
class RelatedList:
    resource: str
    title: str
    total: int = 0
    shown: int = 0
    all_link: str = ""
    note: str = ""  # why the list is missing, when it is
    records: list[GatewayRecord] = field(default_factory=list)
    metadata_only: bool = False  # listed without contents (type, dates, owner, counts)


def _moment(value: Any) -> dt.datetime | None:
    """A record's time value (aware datetime, ISO string or ISO date) as aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        moment = value
    else:
        text = str(value)
        try:
            moment = (
                dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
                if len(text) == 10
                else dt.datetime.fromisoformat(text)
            )
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _detail(
    rt: RecordType, record: GatewayRecord, name: str, zone: ZoneInfo = UTC
) -> Detail | None:
    """A field for the timeline: Restricted if hidden, left out if empty."""
    label = rt.by_name[name].label
    if name in record.restricted:
        return Detail(label, "", restricted=True)
    value = record.values.get(name)
    if value is None or value == "":
        return None
    return Detail(label, shown_value(rt, name, value, values=record.values, zone=zone))


def _details(
    rt: RecordType, record: GatewayRecord, names: tuple[str, ...], zone: ZoneInfo = UTC
) -> tuple[Detail, ...]:
    return tuple(d for n in names if (d := _detail(rt, record, n, zone)) is not None)


def _amount(record: GatewayRecord) -> Detail | None:
    if "amount" in record.restricted:
        return Detail("Amount", "", restricted=True)
    amount = record.values.get("amount")
    if amount is None:
        return None
    currency = None if "currency" in record.restricted else record.values.get("currency")
    return Detail("Amount", money(int(amount), currency))


def deal_entries(
    record: GatewayRecord,
    now: dt.datetime,
    kinds: Mapping[tuple[str, str], str] | None = None,
) -> list[Entry]:
    """A deal's creation (flagged Won or Lost once closed) and, while it is open, its
    expected close. ``kinds``: (pipeline id, stage key) -> open | won | lost, so a
    configured pipeline's won stage counts whatever it is called."""
    link = f"{page_path_of(DEAL.resource)}/{record.id}"
    title = heading_of(DEAL, record)
    amount = _amount(record)
    details = _details(DEAL, record, ("stage",)) + ((amount,) if amount else ())
    stage = str(record.values.get("stage") or "")
    kind = (kinds or {}).get((str(record.values.get("pipeline_id") or ""), stage))
    if kind is None and stage in ("won", "lost"):  # the default pipeline's keys
        kind = stage
    entries = [
        Entry(
            record.created_at.astimezone(dt.UTC),
            "deal",
            f"Deal created: {title}",
            link,
            details + _details(DEAL, record, ("expected_close",)),
            kind.capitalize()
            if kind in ("won", "lost") and "stage" not in record.restricted
            else "",
        )
    ]
    close = _moment(record.values.get("expected_close"))
    if close is not None and kind not in ("won", "lost"):
        flag = "Upcoming" if close > now else "Overdue"
        entries.append(Entry(close, "deal", f"Expected to close: {title}", link, details, flag))
    return entries


def interaction_entry(record: GatewayRecord) -> Entry:
    when = _moment(record.values.get("occurred_at")) or record.created_at.astimezone(dt.UTC)
    channel = record.values.get("channel")
    name = shown_value(INTERACTION, "channel", channel) if channel else "Interaction"
    return Entry(
        when,
        "interaction",
        name,
        f"{page_path_of(INTERACTION.resource)}/{record.id}",
        _details(INTERACTION, record, ("direction", "participants", "summary")),
    )


def mail_entry(record: GatewayRecord, zone: ZoneInfo = UTC) -> Entry:
    """A captured e-mail on the interaction history, at the time it was sent."""
    when = _moment(record.values.get("occurred_at")) or record.created_at.astimezone(dt.UTC)
    sent = record.values.get("direction") == "outbound"
    subject = "" if "subject" in record.restricted else str(record.values.get("subject") or "")
    title = f"E-mail {'sent' if sent else 'received'}" + (f": {subject}" if subject else "")
    return Entry(
        when,
        "interaction",
        title,
        f"{page_path_of(MAIL.resource)}/{record.id}",
        _details(MAIL, record, ("correspondents", "attachments", "visibility"), zone),
        "Private to you" if record.values.get("visibility") == "private" else "",
    )


def case_entry(record: GatewayRecord, now: dt.datetime, zone: ZoneInfo = UTC) -> Entry:
    due = _moment(record.values.get("due_at"))
    open_ = record.values.get("status") in OPEN_CASE_STATUSES
    return Entry(
        record.created_at.astimezone(dt.UTC),
        "case",
        f"Case opened: {heading_of(CASE, record)}",
        f"{page_path_of(CASE.resource)}/{record.id}",
        _details(CASE, record, ("kind", "priority", "status", "due_at"), zone),
        "SLA breached" if open_ and due is not None and due <= now else "",
    )


def task_entry(record: GatewayRecord, now: dt.datetime, zone: ZoneInfo = UTC) -> Entry:
    """A task sits on the timeline at its due time; an open one past it is flagged."""
    due = _moment(record.values.get("due_at"))
    open_ = record.values.get("status") == "open"
    return Entry(
        due or record.created_at.astimezone(dt.UTC),
        "task",
        f"Task: {heading_of(TASK, record)}",
        f"{page_path_of(TASK.resource)}/{record.id}",
        _details(TASK, record, ("status", "priority", "due_at"), zone),
        "Overdue" if open_ and due is not None and due <= now else "",
    )


async def related_lists(
    gateway: Gateway, policy: PolicyEngine, visit: Visit, contact: GatewayRecord
) -> list[RelatedList]:
    """The person's deals, interactions, cases and tasks (newest first, at most the cap), one
    audited ``list`` per type; a type the user may not list is a note, not an error. A type
    the role sees as metadata only is listed by subject id (no field read)."""
    lists = []
    for rt in RELATED:
        title = rt.plural
        found = RelatedList(rt.resource, title)
        readable = gateway.permitted_fields(visit.actor, rt.resource, "list")
        # Metadata is the fallback for a role that may list the records but not read
        # whom they are about (compliance); a role that reads them (admin) sees them all.
        reference = rt.subject_from if rt is MAIL else "contact_id"
        found.metadata_only = (
            readable is not None
            and reference not in readable
            and may_see_metadata(policy, visit, rt.resource)
        )
        if readable is None or (reference not in readable and not found.metadata_only):
            found.note = f"Your role may not see {title.lower()}: they are left out."
            lists.append(found)
            continue
        about: dict[str, Any] = (
            {"subject_id": contact.subject_id}
            if found.metadata_only or rt is MAIL
            else {"contact_id": contact.id}
        )
        try:
            page = await gateway.list(
                visit.actor, rt.resource, filters=about, page=1, page_size=TIMELINE_LIMIT
            )
        except GatewayError:
            found.note = f"{title} could not be shown to you: they are left out."
            lists.append(found)
            continue
        found.records = page.items
        found.total = page.total
        found.shown = len(page.items)
        if not found.metadata_only:
            ref = "record_id" if rt is MAIL else "contact_id"
            found.all_link = f"{page_path_of(rt.resource)}?{urlencode({ref: contact.id})}"
        lists.append(found)
    return lists


def may_see_metadata(policy: PolicyEngine, visit: Visit, resource: str) -> bool:
    """Whether the role sees a person's ``resource`` records as metadata (a policy
    question: ``<resource>, metadata``)."""
    return policy.allows(visit.identity.role, resource, "metadata")


def metadata_entry(resource: str, record: GatewayRecord) -> Entry:
    """A related record shown without contents: its type, dates and owner."""
    label = RECORD_TYPES[resource].label
    return Entry(
        record.created_at.astimezone(dt.UTC),
        resource,
        f"{label} created",
        details=(
            Detail("Last changed", record.updated_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")),
            Detail("Owner", f"staff {record.owner_id} ({record.team or 'no team'})"),
        ),
    )


async def consent_ledger(
    request: Request[Any, Any, Any], visit: Visit, contact: GatewayRecord
) -> list[dict[str, Any]]:
    """The person's consent ledger, newest first, in words (no evidence text)."""
    engine = services_of(request).consent
    purposes = {p.name: p for p in await engine.purposes()}
    ledger = await engine.ledger(
        contact.subject_id,
        actor_id=visit.actor.id,
        actor_role=visit.identity.role,
        request_id=visit.request_id,
    )
    return [
        {
            "id": event.id,
            "at": event.occurred_at,
            "kind": KIND_LABELS.get(event.kind.value, event.kind.value),
            "purpose": purposes[event.purpose].description
            if event.purpose in purposes
            else event.purpose.replace("_", " ").capitalize(),
            "channel": CHANNEL_LABELS.get(event.channel, event.channel),
            "source": CONSENT_SOURCE_LABELS.get(event.source, event.source),
            "by": "the person" if event.actor_id == SUBJECT_ACTOR else event.actor_id,
            "notice_version": event.notice_version,
            "expires_at": event.expires_at,
        }
        for event in ledger
    ]


async def organization_of(
    gateway: Gateway, visit: Visit, contact: GatewayRecord
) -> dict[str, Any] | None:
    """The person's organization as a small table, or a note why it is not shown."""
    if "organization_id" in contact.restricted:
        return {"note": "Restricted: your role may not see the person's organization."}
    org_id = contact.values.get("organization_id")
    if not org_id:
        return None
    try:
        org = await gateway.read(visit.actor, "organization", str(org_id))
    except GatewayError:
        return {"note": "The person's organization is not visible to you."}
    return {
        "heading": heading_of(ORGANIZATION, org),
        "link": f"{page_path_of(ORGANIZATION.resource)}/{org.id}",
        "details": [
            d
            for n in ORGANIZATION_FIELDS
            if n in ORGANIZATION.by_name and (d := _detail(ORGANIZATION, org, n)) is not None
        ],
    }


async def consent_entries(
    request: Request[Any, Any, Any], contact: GatewayRecord
) -> tuple[list[dict[str, Any]], list[Entry]]:
    """Current consent per purpose and channel, and a timeline entry for each (when that
    state took effect)."""
    engine = services_of(request).consent
    purposes = {p.name: p for p in await engine.purposes()}
    rows: list[dict[str, Any]] = []
    entries: list[Entry] = []
    for status in await engine.state(contact.subject_id):
        info = purposes.get(status.purpose)
        purpose = info.description if info else status.purpose.replace("_", " ").capitalize()
        state = KIND_LABELS.get(status.state.value, status.state.value)
        channel = CHANNEL_LABELS.get(status.channel, status.channel)
        rows.append(
            {
                "purpose": purpose,
                "channel": channel,
                "state": state,
                "since": status.since,
                "expires_at": status.expires_at,
            }
        )
        entries.append(
            Entry(
                status.since.astimezone(dt.UTC),
                "consent",
                f"{objection_title(status.state, state)}: {purpose}",
                details=(Detail("Channel", channel),),
            )
        )
    return rows, entries


def objection_title(kind: ConsentEventKind, label: str) -> str:
    """ "Consent granted", but "Objected" and "Objection lifted" as they are."""
    return (
        label
        if kind in (ConsentEventKind.OBJECTED, ConsentEventKind.LIFTED)
        else f"Consent {label.lower()}"
    )


async def score_view(
    request: Request[Any, Any, Any], visit: Visit, contact: GatewayRecord
) -> dict[str, Any] | None:
    """The person's customer scores with their explanation and date, for roles the policy
    lets read them (None: no scores section at all). Reading them is audited."""
    services = services_of(request)
    if not services.policy.allows(visit.actor.role, "customer_score", "read"):
        return None
    basis = await services.consent.has_basis(contact.subject_id, "profiling")
    held = await services.analytics.of_subject(visit.actor, contact.subject_id, why="customer_360")
    view: dict[str, Any] = {"basis": basis.reason, "logic": LOGIC, "held": None}
    if held is not None:
        found = held.scores
        lines = await pipeline_names()
        view["held"] = {
            "computed_at": held.computed_at,
            "segment": SEGMENT_LABELS.get(found["segment"], found["segment"]),
            "rfm": found["rfm"],
            "churn_risk": found["churn_risk"],
            "historical_value": found["historical_value"],
            "predicted_value": found["predicted_value"],
            # Scores from before values were counted in one currency carry neither.
            "value_currency": found.get("value_currency", ""),
            "unconverted": found.get("unconverted", {}),
            "factors": found["churn_factors"],
            "suggestions": [lines.get(s, "A product line") for s in found["suggestions"]],
        }
    return view


class CustomerPages(Controller):
    path = "/contacts"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/{record_id:str}/360")
    async def overview(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        record_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
        policy: NamedDependency[PolicyEngine],
    ) -> Template:
        # 404 (audited) for a person out of the user's scope, before anything else is read.
        contact = await gateway.read(visit.actor, "contact", record_id)
        if contact.erased:
            return await erased_page(
                request, visit, CONTACT, contact, base_path="/contacts", plural="Contacts"
            )
        now = dt.datetime.now(dt.UTC)
        organization = await organization_of(gateway, visit, contact)
        lists = await related_lists(gateway, policy, visit, contact)
        consents, timeline = await consent_entries(request, contact)
        ledger = await consent_ledger(request, visit, contact)
        scores = await score_view(request, visit, contact)
        kinds = await stage_kinds()
        for found in lists:
            for record in found.records:
                if found.metadata_only:
                    timeline.append(metadata_entry(found.resource, record))
                elif found.resource == "deal":
                    timeline.extend(deal_entries(record, now, kinds))
                elif found.resource == "interaction":
                    timeline.append(interaction_entry(record))
                elif found.resource == "task":
                    timeline.append(task_entry(record, now, visit.zone))
                elif found.resource == "mail":
                    timeline.append(mail_entry(record, visit.zone))
                else:
                    timeline.append(case_entry(record, now, visit.zone))
        timeline.sort(key=lambda e: e.moment, reverse=True)
        capped = len(timeline) > TIMELINE_LIMIT or any(f.total > f.shown for f in lists)
        return await render(
            request,
            "records/customer360.html",
            visit=visit,
            section="contact",
            title="Customer 360",
            heading=heading_of(CONTACT, contact),
            contact=contact,
            contact_details=[
                d
                for n in ("email", "phone", "job_title", "lifecycle_stage", "city", "country")
                if (d := _detail(CONTACT, contact, n)) is not None
            ],
            organization=organization,
            lists=lists,
            consents=consents,
            ledger=ledger,
            scores=scores,
            timeline=timeline[:TIMELINE_LIMIT],
            capped=capped,
            limit=TIMELINE_LIMIT,
        )
