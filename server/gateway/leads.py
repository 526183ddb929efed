"""The gateway's side of lead conversion: a lead becomes a contact, optionally with an
organization and a deal, in one transaction.

The contact takes over the lead's subject id and data key. The values are decrypted and
sealed again for the contact's row (each ciphertext is bound to its table, field and row),
but under the *same* key: the person stays one data subject from first enquiry to
customer. Their access report and subject export show the lead and the contact together,
an erasure reaches both, and no key is shredded during conversion (shredding the lead's
key would make the lead unreadable, and a failure half-way could not be undone). The
price is that the key is shared: deleting a converted lead must not shred it while the
contact still uses it (``lifecycle.subject_still_held``).

Checks, all before anything is written: the actor may ``convert`` this lead (in scope)
and may create each record asked for, with every field it would set; the values pass the
data map's validation. The lead is then claimed with a conditional update (``WHERE
converted_contact_id IS NULL``), so two conversions racing each other cannot both win.
Every record written gets its audit event in the same transaction; any failure rolls
everything back.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from piccolo.table import Table

from audit.events import Action, AuditEvent, Outcome, audit_event
from server import db
from server.datamap import CONTACT, DEAL, LEAD, ORGANIZATION, RecordType
from server.gateway import mention_index, name_index, write_checks
from server.gateway.actor import Actor
from server.gateway.errors import Conflict, InvalidInput
from server.gateway.events import allowed_event
from server.gateway.filters import to_db
from server.gateway.tables import TABLES
from server.vault import DataKey

if TYPE_CHECKING:
    from server.gateway.core import GatewayCore

CONVERT = "convert"
CONVERTED = "converted"
# What a lead hands on to its contact; the message stays on the lead (same key, same
# subject, so it remains part of the person's record and export).
# What the contact takes over from the lead (declared on the lead's fields: to_contact).
CONTACT_FROM_LEAD = tuple(f.name for f in LEAD.fields if f.to_contact)
CONVERTED_STAGE = "prospect"


@dataclass(frozen=True)
class Conversion:
    lead_id: str
    subject_id: str
    contact_id: str
    organization_id: str | None
    deal_id: str | None


@dataclass(frozen=True)
class _Planned:
    """One record to insert: its type, cleaned values and id."""

    rt: RecordType
    row_id: str
    values: dict[str, Any]


async def convert(
    gw: GatewayCore,
    actor: Actor,
    lead_id: str,
    *,
    purpose: str,
    create_organization: bool = False,
    organization_id: str | None = None,
    deal: Mapping[str, Any] | None = None,
) -> Conversion:
    """Convert one lead; see the module docstring for the rules."""
    if create_organization and organization_id:
        raise InvalidInput(
            "give either organization_id or create_organization, not both",
            problems={"organization_id": "conflicts with create_organization"},
        )
    op = await gw.authorize(actor, LEAD.resource, CONVERT, purpose=purpose, record_id=lead_id)
    row = await gw.find_or_deny(actor, op, lead_id, CONVERT)
    subject = str(row["subject_id"])
    if row["converted_contact_id"] is not None or row["status"] == CONVERTED:
        raise Conflict("this lead has already been converted")

    keys = await gw.vault.keys_for([subject])
    if subject not in keys:
        raise Conflict("this lead has been erased and cannot be converted")
    lead_values = gw.materialize(LEAD, row, keys[subject], frozenset(LEAD.by_name)).values
    plan = await _plan_records(
        gw, actor, purpose, lead_values, create_organization, organization_id, deal
    )
    now = dt.datetime.now(dt.UTC)
    async with db.write_transaction():
        await _claim(op.table, str(row["id"]), plan, now)
        await _write_records(gw, actor, purpose, row, plan, now)
    return Conversion(
        lead_id=str(row["id"]),
        subject_id=subject,
        contact_id=plan.contact.row_id,
        organization_id=plan.org_id,
        deal_id=plan.deal.row_id if plan.deal else None,
    )


@dataclass(frozen=True)
class _Records:
    """What a conversion will write, every check passed: a new organization (or the id of
    an existing one, in ``org_id``), the contact and a deal."""

    organization: _Planned | None
    contact: _Planned
    deal: _Planned | None
    org_id: str | None


async def _plan_records(
    gw: GatewayCore,
    actor: Actor,
    purpose: str,
    lead_values: Mapping[str, Any],
    create_organization: bool,
    organization_id: str | None,
    deal: Mapping[str, Any] | None,
) -> _Records:
    """Check every record the conversion would write before anything is written."""
    organization: _Planned | None = None
    if create_organization:
        name = lead_values.get("company_name")
        if not name:
            raise InvalidInput(
                "the lead has no company name to create an organization from",
                problems={"company_name": "is required to create an organization"},
            )
        organization = await _plan(gw, actor, ORGANIZATION, purpose, {"name": name})
    elif organization_id:
        await write_checks.check_references(
            gw, actor, CONTACT, {"organization_id": str(organization_id)}, purpose
        )
    org_id = organization.row_id if organization else (organization_id or None)

    contact_values = {n: lead_values[n] for n in CONTACT_FROM_LEAD if lead_values.get(n)}
    contact_values["lifecycle_stage"] = CONVERTED_STAGE
    if org_id:
        contact_values["organization_id"] = str(org_id)
    contact = await _plan(gw, actor, CONTACT, purpose, contact_values)
    if org_id:  # the given organization was checked above; normalise the id's spelling
        org_id = contact.values["organization_id"]

    planned_deal: _Planned | None = None
    if deal is not None:
        deal_values = dict(deal)
        for taken in ("contact_id", "organization_id"):
            if taken in deal_values:
                raise InvalidInput(
                    f"deal.{taken}: set by the conversion",
                    problems={f"deal.{taken}": "set by the conversion"},
                )
        deal_values["contact_id"] = contact.row_id
        if org_id:
            deal_values["organization_id"] = org_id
        planned_deal = await _plan(gw, actor, DEAL, purpose, deal_values)
    return _Records(organization, contact, planned_deal, org_id)


async def _claim(table: type[Table], lead_row_id: str, plan: _Records, now: dt.datetime) -> None:
    """Mark the lead converted, only if no other conversion got there first (a
    conditional update: two racing conversions cannot both win)."""
    changes: dict[Any, Any] = {
        getattr(table, "status"): CONVERTED,
        getattr(table, "converted_contact_id"): uuid.UUID(plan.contact.row_id),
        getattr(table, "converted_deal_id"): (uuid.UUID(plan.deal.row_id) if plan.deal else None),
        getattr(table, "updated_at"): now,
    }
    claimed = await (
        table.update(changes)
        .where(
            (table._meta.primary_key == uuid.UUID(lead_row_id))
            & getattr(table, "converted_contact_id").is_null()
        )
        .returning(table._meta.primary_key)
    )
    if not claimed:
        raise Conflict("this lead has already been converted")


async def _write_records(
    gw: GatewayCore,
    actor: Actor,
    purpose: str,
    row: Mapping[str, Any],
    plan: _Records,
    now: dt.datetime,
) -> None:
    """Inside the conversion's transaction: the new records under the lead's key (a new
    organization under its own), the scope re-checked, every event appended."""
    subject = str(row["subject_id"])
    owner, team = int(row["owner_id"]), str(row["team"])
    key = (await write_checks.subject_keys(gw, LEAD, [subject]))[0]
    events: list[AuditEvent] = []
    if plan.organization is not None:
        org_key = await gw.vault.new_subject(ORGANIZATION.resource)
        await _insert(gw, plan.organization, org_key, owner, team, now)
        events.append(_created(actor, plan.organization, org_key.subject_id, purpose))
    await _insert(gw, plan.contact, key, owner, team, now)
    events.append(_created(actor, plan.contact, subject, purpose))
    if plan.deal is not None:
        await _insert(gw, plan.deal, key, owner, team, now)
        events.append(_created(actor, plan.deal, subject, purpose))
    for planned in (plan.organization, plan.contact, plan.deal):
        if planned is not None:
            await gw.recheck(
                actor, planned.rt, TABLES[planned.rt.resource], planned.row_id, purpose
            )
    events.append(
        audit_event(
            actor_id=actor.id,
            actor_role=actor.role,
            action=CONVERT,
            resource_type=LEAD.resource,
            outcome=Outcome.ALLOWED,
            purpose=purpose,
            resource_id=str(row["id"]),
            subject_ids=(subject,),
            fields=("converted_contact_id", "converted_deal_id", "status"),
            reason="allowed",
            request_id=actor.request_id,
            detail={
                "contact": plan.contact.row_id,
                "organization": plan.org_id or "",
                "deal": plan.deal.row_id if plan.deal else "",
            },
        )
    )
    for event in events:
        await gw.audit.append(event)


async def _plan(
    gw: GatewayCore, actor: Actor, rt: RecordType, purpose: str, values: Mapping[str, Any]
) -> _Planned:
    """The checks ``Gateway.create`` runs before writing, for one record of a conversion:
    the role may create it and set each field; the values are valid."""
    op = await gw.authorize(
        actor, rt.resource, Action.CREATE, purpose=purpose, detail={"for": CONVERT}
    )
    decision = op.decision
    await gw.refuse_new_person(actor, rt, Action.CREATE, purpose)
    cleaned = await write_checks.clean(gw, actor, rt, Action.CREATE, purpose, values, partial=False)
    await write_checks.check_writable(gw, actor, rt, Action.CREATE, purpose, decision, cleaned)
    return _Planned(rt, str(uuid.uuid4()), cleaned)


async def _insert(
    gw: GatewayCore, planned: _Planned, key: DataKey, owner: int, team: str, now: dt.datetime
) -> None:
    table = TABLES[planned.rt.resource]
    columns = gw.vault.encrypt_values(planned.rt, planned.row_id, key, planned.values)
    await table.insert(
        table(
            id=uuid.UUID(planned.row_id),
            subject_id=uuid.UUID(key.subject_id),
            owner_id=owner,
            team=team,
            created_at=now,
            updated_at=now,
            **to_db(planned.rt, columns),
        )
    ).run()
    await name_index.write_new(gw.vault, planned.rt, [(planned.row_id, planned.values)])
    await mention_index.write_new(gw.vault, planned.rt, [(planned.row_id, planned.values)])


def _created(actor: Actor, planned: _Planned, subject: str, purpose: str) -> AuditEvent:
    return allowed_event(
        actor,
        Action.CREATE,
        planned.rt.resource,
        purpose,
        (subject,),
        record_id=planned.row_id,
        fields=tuple(planned.values),
    )
