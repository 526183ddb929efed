"""Duplicate contacts: merging one into the other - reversibly until someone confirms the
merge - and the review of a pair before it. Finding likely pairs is
:mod:`server.gateway.duplicate_scan`; both need the ``merge`` right (:func:`merge_decision`).

Merging (:func:`merge`) is one transaction: the chosen field values are sealed again for
the survivor's row under the survivor's key; every record carrying the merged contact's
subject id (deals, interactions, cases, tasks, notes, the lead it was converted from) is
decrypted with the merged contact's key and sealed again under the survivor's, takes the
survivor's subject id, and every reference to the merged contact (``contact_id``, a
note's ``record_id``, a lead's ``converted_contact_id``) is pointed at the survivor. The
merged contact's row is left untouched with its own key, hidden from every list, search,
count and report by its ``merged_into`` column, set in the merge's transaction and
cleared by :func:`undo` (``lifecycle.visible``, compiled into the query by
``GatewayCore.in_scope``). A ``contact_merge`` row remembers what moved and the
survivor's overwritten columns as they were stored (ciphertext under the survivor's key),
so :func:`undo` can put everything back exactly. :func:`confirm` makes it final: the
merged contact becomes a tombstone and its key is shredded, as erasure does
(``server.gateway.erasure``), after which undo is refused. Mentions in other people's
free text are *not* scrubbed: the person is not erased, they live on as the survivor.

Refused with a clear 409 rather than done wrong: either person is restricted (Art. 18),
under a legal hold, has an open data-subject request or an erasure in progress, or is
already part of a merge awaiting confirmation (two merges of one contact at once: the
rows are locked on PostgreSQL, SQLite serialises writers). Consent records and requests
of the merged person stay in their append-only ledgers under the merged subject id (the
merge record links the two ids); consent is never copied to the survivor, since that
would fabricate evidence.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

from audit.events import AuditEvent
from policy.enforcer import AccessDecision
from server import db
from server.datamap import CONTACT, RECORD_TYPES, FieldKind, RecordType
from server.gateway import erasure, mention_index, name_index
from server.gateway.actor import Actor
from server.gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.gateway.events import allowed_event
from server.gateway.tables import Contact, ContactMerge
from server.vault import DataKey
from server.vault.envelope import CiphertextError

if TYPE_CHECKING:
    from server.gateway.core import GatewayCore

MERGE = "merge"  # the policy action (on ``contact``) and the audit action
PENDING, UNDONE, CONFIRMED = "pending", "undone", "confirmed"
STATES = (PENDING, UNDONE, CONFIRMED)
SURVIVOR, MERGED = "survivor", "merged"
_CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Merge:
    id: str
    survivor_id: str
    merged_id: str
    state: str
    merged_by: str
    created_at: dt.datetime
    decided_at: dt.datetime | None
    fields: tuple[str, ...]  # contact fields taken from the merged contact
    moved: dict[str, int]  # records moved per type


@dataclass(frozen=True)
class Preview:
    """What a merge of these two would do, for the review page: record counts per type
    (the contact itself excluded) and the reasons it would be refused (empty: allowed)."""

    related: dict[str, dict[str, int]]  # contact id -> record type -> count
    blockers: list[str]
    writable: frozenset[str]  # the fields whose value the actor may choose


@dataclass
class _Moved:
    resource: str
    id: str
    subject: bool  # carried the merged subject id (re-sealed); else only references moved
    refs: list[str] = field(default_factory=list)


# --- helpers ---------------------------------------------------------------------------------


def _uuid(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise InvalidInput(f"{name}: not an id", problems={name: "not an id"}) from None


async def merge_decision(gw: GatewayCore, actor: Actor, purpose: str) -> AccessDecision:
    """The ``merge`` right on contacts, which finding duplicates needs as well."""
    refusal = Forbidden("your role may not find or merge duplicate contacts")
    op = await gw.authorize(actor, CONTACT.resource, MERGE, purpose=purpose, refusal=refusal)
    return op.decision


# --- the pair, and the checks a merge must pass --------------------------------------------


async def _pair(
    gw: GatewayCore, actor: Actor, decision: AccessDecision, purpose: str, ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Both contacts, each in the actor's scope and visible; else an audited 404."""
    rows = []
    for value in ids:
        row = await gw.find_in_scope(Contact, decision, actor, value)
        if row is None:
            raise await gw.deny(
                actor,
                CONTACT,
                MERGE,
                purpose,
                "not_found_or_out_of_scope",
                NotFound("contact not found"),
                record_id=str(value),
                subject_ids=await gw.subject_for_audit(Contact, value),
            )
        rows.append(row)
    return rows


async def _blockers(gw: GatewayCore, subjects: Mapping[str, str]) -> list[str]:
    """Why these people may not be merged now (``subjects``: a label per subject id): a
    restriction, and what the compliance registers say (``GatewayCore.merge_blockers``)."""
    problems: list[str] = []
    for subject, label in subjects.items():
        if gw.restrictions is None or await gw.restrictions.is_restricted(subject):
            problems.append(
                f"the {label} contact's processing is restricted (Art. 18): lift the "
                "restriction before merging"
            )
        if gw.merge_blockers is None:
            problems.append("the compliance registers are not available: nothing is merged")
        else:
            problems += await gw.merge_blockers(subject, label)
    return problems


async def _pending_with(ids: Sequence[uuid.UUID]) -> int:
    involved = ContactMerge.survivor_id.is_in(list(ids)) | ContactMerge.merged_id.is_in(list(ids))
    return int(await ContactMerge.count().where((ContactMerge.state == PENDING) & involved))


async def preview(
    gw: GatewayCore, actor: Actor, first_id: str, second_id: str, *, purpose: str
) -> Preview:
    """Counts and refusal reasons for the review page (ids and numbers only)."""
    if _uuid(first_id, "first_id") == _uuid(second_id, "second_id"):
        raise InvalidInput(
            "a contact cannot be merged into itself", problems={"second_id": "same as first"}
        )
    decision = await merge_decision(gw, actor, purpose)
    rows = await _pair(gw, actor, decision, purpose, (first_id, second_id))
    related: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = await erasure.record_counts(gw, str(row["subject_id"]))
        counts[CONTACT.resource] = counts.get(CONTACT.resource, 1) - 1
        related[str(row["id"])] = {k: v for k, v in counts.items() if v}
    blockers = await _blockers(
        gw, {str(rows[0]["subject_id"]): "first", str(rows[1]["subject_id"]): "second"}
    )
    if await _pending_with([rows[0]["id"], rows[1]["id"]]):
        blockers.append(
            "one of these contacts is part of a merge awaiting confirmation: confirm or "
            "undo that merge first"
        )
    return Preview(related=related, blockers=blockers, writable=decision.fields)


# --- merge -----------------------------------------------------------------------------------


def _stored(value: Any) -> Any:
    """A column value as JSON can hold it (ids and moments as strings)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _restored(spec_kind: FieldKind | None, value: Any) -> Any:
    if value is not None and spec_kind is FieldKind.REFERENCE:
        return uuid.UUID(value)
    return value


def _choose(
    keep: Mapping[str, str],
    writable: frozenset[str],
    survivor: Mapping[str, Any],
    merged: Mapping[str, Any],
) -> list[str]:
    """The fields whose value comes from the merged contact: those asked for, and by default
    those the survivor lacks and the merged contact has (if the actor may write them)."""
    problems: dict[str, str] = {}
    for name, side in keep.items():
        if name not in CONTACT.by_name:
            problems[name[:40]] = "unknown field"
        elif side not in (SURVIVOR, MERGED):
            problems[name] = f"expected {SURVIVOR!r} or {MERGED!r}"
        elif side == MERGED and name not in writable:
            problems[name] = "your role may not change this field"
        elif side == MERGED and CONTACT.by_name[name].required and not merged.get(name):
            problems[name] = "the merged contact has no value for this required field"
    if problems:
        raise InvalidInput(
            "keep: " + "; ".join(f"{k}: {v}" for k, v in problems.items()), problems=problems
        )
    taken = []
    for spec in CONTACT.fields:
        chosen = keep.get(spec.name)
        if chosen is None:
            empty = survivor.get(spec.name) in (None, "")
            has = merged.get(spec.name) not in (None, "")
            chosen = MERGED if empty and has and spec.name in writable else SURVIVOR
        if chosen == MERGED:
            taken.append(spec.name)
    return taken


async def _lock(ids: Sequence[uuid.UUID]) -> None:
    """Serialise merges touching these contacts: row locks on PostgreSQL (in id order, so
    two merges never wait on each other crosswise); SQLite already runs one writer."""
    if isinstance(db.get_engine(), PostgresEngine):
        await (
            Contact.select(Contact.id)
            .where(Contact.id.is_in(sorted(ids)))
            .order_by(Contact.id)
            .lock_rows()
        )


def _reseal(
    gw: GatewayCore,
    rt: RecordType,
    table: type[Table],
    row: Mapping[str, Any],
    old: DataKey,
    new: DataKey,
) -> dict[Any, Any]:
    """Column changes re-sealing one record from ``old``'s subject to ``new``'s. The blind
    indexes do not depend on the key and stay as they are."""
    row_id = str(row["id"])
    changes: dict[Any, Any] = {getattr(table, "subject_id"): uuid.UUID(new.subject_id)}
    for spec in rt.fields:
        token = row.get(spec.name)
        if not spec.encrypted or not token:
            continue
        try:
            plain = gw.vault.decrypt_value(rt, spec, row_id, old, token)
        except CiphertextError:
            raise Conflict(
                f"a {rt.resource} record could not be opened with its person's key; "
                "nothing was changed"
            ) from None
        sealed = gw.vault.encrypt_values(rt, row_id, new, {spec.name: plain})
        changes[getattr(table, spec.name)] = sealed[spec.name]
    return changes


def _contact_references(rt: RecordType) -> list[str]:
    """The fields of ``rt`` that can point at a contact."""
    names = [f.name for f in rt.fields if f.references == CONTACT.resource]
    names += [f.name for f in rt.fields if f.references_from]
    return names


def _points_at(rt: RecordType, row: Mapping[str, Any], name: str, contact: uuid.UUID) -> bool:
    spec = rt.by_name[name]
    if spec.references_from and row.get(spec.references_from) != CONTACT.resource:
        return False
    return row.get(name) == contact


async def _move(
    gw: GatewayCore, source: uuid.UUID, target: uuid.UUID, old: DataKey, new: DataKey
) -> list[_Moved]:
    """Move every record of ``old``'s subject to ``new``'s (re-sealed) and point every
    reference to contact ``source`` at ``target``. The contact ``source`` itself stays.
    Runs inside the caller's transaction."""
    moved: list[_Moved] = []
    old_subject = uuid.UUID(old.subject_id)
    for rt, table in erasure.record_types():
        refs = _contact_references(rt)
        condition = getattr(table, "subject_id") == old_subject
        for name in refs:
            condition = condition | (getattr(table, name) == source)
        for row in await table.select().where(condition):
            if table is Contact and row["id"] == source:
                continue
            entry = _Moved(rt.resource, str(row["id"]), row["subject_id"] == old_subject)
            changes = _reseal(gw, rt, table, row, old, new) if entry.subject else {}
            for name in refs:
                if _points_at(rt, row, name, source):
                    changes[getattr(table, name)] = target
                    entry.refs.append(name)
            if changes:
                await table.update(changes).where(table._meta.primary_key == row["id"])
                moved.append(entry)
    return moved


async def _move_back(
    gw: GatewayCore,
    moved: Sequence[_Moved],
    survivor: uuid.UUID,
    merged: uuid.UUID,
    survivor_key: DataKey,
    merged_key: DataKey,
) -> list[_Moved]:
    """Exactly the records a merge moved, back: re-sealed under the merged contact's key
    and their recorded references pointed at it again. A record deleted since is gone."""
    back: list[_Moved] = []
    survivor_subject = uuid.UUID(survivor_key.subject_id)
    by_type: dict[str, dict[uuid.UUID, _Moved]] = defaultdict(dict)
    for entry in moved:
        by_type[entry.resource][uuid.UUID(entry.id)] = entry
    for rt, table in erasure.record_types():
        wanted = by_type.get(rt.resource)
        if not wanted:
            continue
        pk = table._meta.primary_key
        ids = list(wanted)
        for start in range(0, len(ids), _CHUNK):
            for row in await table.select().where(pk.is_in(ids[start : start + _CHUNK])):
                entry = wanted[row["id"]]
                changes: dict[Any, Any] = {}
                if entry.subject and row["subject_id"] == survivor_subject:
                    changes = _reseal(gw, rt, table, row, survivor_key, merged_key)
                for name in entry.refs:
                    if row.get(name) == survivor:
                        changes[getattr(table, name)] = merged
                if changes:
                    await table.update(changes).where(pk == row["id"])
                    back.append(entry)
    return back


def _counts(moved: Iterable[_Moved]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for entry in moved:
        counts[entry.resource] += 1
    return dict(counts)


def _move_events(
    actor: Actor,
    action: str,
    purpose: str,
    moved: Sequence[_Moved],
    subjects: Sequence[str],
    merge_id: str,
) -> list[AuditEvent]:
    """One event per record type moved: both subjects, the re-sealed fields, the count."""
    events = []
    for resource, count in sorted(_counts(moved).items()):
        rt = RECORD_TYPES[resource]
        fields = [f.name for f in rt.fields if f.encrypted]
        fields += sorted({r for m in moved if m.resource == resource for r in m.refs})
        events.append(
            allowed_event(
                actor,
                action,
                resource,
                purpose,
                subjects,
                fields=fields,
                detail={"records": count, "merge": merge_id},
            )
        )
    return events


async def merge(
    gw: GatewayCore,
    actor: Actor,
    survivor_id: str,
    merged_id: str,
    *,
    keep: Mapping[str, str] | None = None,
    purpose: str,
) -> Merge:
    """Merge ``merged_id`` into ``survivor_id``; see the module docstring. The right is
    asked before the ids are looked at: a role without it learns nothing from its input."""
    decision = await merge_decision(gw, actor, purpose)
    survivor_uuid, merged_uuid = _uuid(survivor_id, "survivor_id"), _uuid(merged_id, "merged_id")
    if survivor_uuid == merged_uuid:
        raise InvalidInput(
            "a contact cannot be merged into itself", problems={"merged_id": "same as survivor"}
        )
    survivor, merged = await _pair(gw, actor, decision, purpose, (survivor_id, merged_id))
    subjects = (str(survivor["subject_id"]), str(merged["subject_id"]))
    blockers = await _blockers(gw, {subjects[0]: "surviving", subjects[1]: "merged"})
    if blockers:
        raise Conflict("these contacts cannot be merged now: " + "; ".join(blockers))
    now = dt.datetime.now(dt.UTC)
    merge_id = str(uuid.uuid4())
    async with db.write_transaction():
        await _lock([survivor_uuid, merged_uuid])
        if await _pending_with([survivor_uuid, merged_uuid]):
            raise Conflict(
                "one of these contacts is already part of a merge awaiting confirmation: "
                "confirm or undo that merge first"
            )
        # Read again under the lock: the values merged are those of this moment.
        survivor, merged = await _pair(gw, actor, decision, purpose, (survivor_id, merged_id))
        keys = await gw.vault.keys_for(subjects)
        if subjects[0] not in keys or subjects[1] not in keys:
            raise Conflict("one of these contacts has been erased and cannot be merged")
        old, new = keys[subjects[1]], keys[subjects[0]]
        taken = _choose(keep or {}, decision.fields, survivor, merged)
        changes, previous = _taken_values(gw, taken, survivor, merged, old, new)
        changes[Contact.updated_at] = now
        await Contact.update(changes).where(Contact.id == survivor_uuid)
        await name_index.refresh(gw, CONTACT, [survivor_uuid])
        await mention_index.refresh(gw, CONTACT, [survivor_uuid])
        moved = await _move(gw, merged_uuid, survivor_uuid, old, new)
        # Hidden from every read from this commit on (lifecycle.visible).
        await Contact.update({Contact.merged_into: survivor_uuid}).where(Contact.id == merged_uuid)
        await ContactMerge.insert(
            ContactMerge(
                id=uuid.UUID(merge_id),
                survivor_id=survivor_uuid,
                merged_id=merged_uuid,
                survivor_subject_id=uuid.UUID(subjects[0]),
                merged_subject_id=uuid.UUID(subjects[1]),
                state=PENDING,
                merged_by=actor.id,
                created_at=now,
                fields=json.dumps(taken),
                moved=json.dumps([m.__dict__ for m in moved]),
                previous=json.dumps(previous),
            )
        ).run()
        await gw.recheck(actor, CONTACT, Contact, str(survivor_uuid), purpose)
        counts = _counts(moved)
        await gw.audit.append(
            allowed_event(
                actor,
                MERGE,
                CONTACT.resource,
                purpose,
                subjects,
                record_id=str(survivor_uuid),
                fields=taken,
                detail={"merge": merge_id, "merged": str(merged_uuid), **counts},
            )
        )
        for event in _move_events(actor, "merge_move", purpose, moved, subjects, merge_id):
            await gw.audit.append(event)
    return Merge(
        id=merge_id,
        survivor_id=str(survivor_uuid),
        merged_id=str(merged_uuid),
        state=PENDING,
        merged_by=actor.id,
        created_at=now,
        decided_at=None,
        fields=tuple(taken),
        moved=counts,
    )


def _taken_values(
    gw: GatewayCore,
    taken: Sequence[str],
    survivor: Mapping[str, Any],
    merged: Mapping[str, Any],
    old: DataKey,
    new: DataKey,
) -> tuple[dict[Any, Any], dict[str, Any]]:
    """The survivor's column changes for the fields taken from the merged contact, each
    sealed again for the survivor's row under the survivor's key; and the survivor's
    columns as they were stored, so an undo can put them back exactly."""
    survivor_id, merged_id = str(survivor["id"]), str(merged["id"])
    previous: dict[str, Any] = {}
    changes: dict[Any, Any] = {}
    for name in taken:
        spec = CONTACT.by_name[name]
        previous[name] = _stored(survivor[name])
        if spec.blind_index:
            previous[spec.index_column] = survivor[spec.index_column]
        raw = merged[name]
        if spec.encrypted and raw:
            try:
                plain = gw.vault.decrypt_value(CONTACT, spec, merged_id, old, raw)
            except CiphertextError:
                raise Conflict("the merged contact's values could not be read") from None
            sealed = gw.vault.encrypt_values(CONTACT, survivor_id, new, {name: plain})
        elif spec.encrypted:
            sealed = gw.vault.encrypt_values(CONTACT, survivor_id, new, {name: None})
        else:
            sealed = {name: raw}
        changes.update({getattr(Contact, k): v for k, v in sealed.items()})
    return changes, previous


# --- the merge record: list, undo, confirm --------------------------------------------------


def _merge_of(row: Mapping[str, Any]) -> Merge:
    moved = [_Moved(**m) for m in json.loads(row["moved"])]
    return Merge(
        id=str(row["id"]),
        survivor_id=str(row["survivor_id"]),
        merged_id=str(row["merged_id"]),
        state=str(row["state"]),
        merged_by=str(row["merged_by"]),
        created_at=row["created_at"],
        decided_at=row["decided_at"],
        fields=tuple(json.loads(row["fields"])),
        moved=_counts(moved),
    )


def _survivor_in_scope(gw: GatewayCore, actor: Actor, decision: AccessDecision) -> Any:
    """Merges whose survivor the actor can reach (a sub-select with the record scope)."""
    contacts = gw.in_scope(Contact.select(Contact.id), Contact, decision, actor)
    return ContactMerge.survivor_id.is_in(contacts)


async def list_merges(
    gw: GatewayCore, actor: Actor, *, purpose: str, state: str | None = None, limit: int = 100
) -> list[Merge]:
    """Merges of contacts in the actor's scope, newest first (ids and counts only)."""
    if state is not None and state not in STATES:
        raise InvalidInput(
            "state: expected one of " + ", ".join(STATES), problems={"state": "unknown state"}
        )
    decision = await merge_decision(gw, actor, purpose)
    query = ContactMerge.select().where(_survivor_in_scope(gw, actor, decision))
    if state is not None:
        query = query.where(ContactMerge.state == state)
    rows = await query.order_by(ContactMerge.created_at, ascending=False).limit(limit)
    merges = [_merge_of(r) for r in rows]
    async with db.write_transaction():
        await gw.audit.append(
            allowed_event(
                actor,
                "list_merges",
                CONTACT.resource,
                purpose,
                (),
                detail={"returned": len(merges), "state": state or ""},
            )
        )
    return merges


async def _find_merge(
    gw: GatewayCore, actor: Actor, merge_id: str, action: str, purpose: str
) -> tuple[AccessDecision, dict[str, Any]]:
    decision = await merge_decision(gw, actor, purpose)
    try:
        mid = uuid.UUID(str(merge_id))
    except ValueError:
        mid = None
    row = None
    if mid is not None:
        row = await (
            ContactMerge.select()
            .where((ContactMerge.id == mid) & _survivor_in_scope(gw, actor, decision))
            .first()
        )
    if row is None:
        raise await gw.deny(
            actor,
            CONTACT,
            action,
            purpose,
            "not_found_or_out_of_scope",
            NotFound("merge not found"),
            record_id=str(merge_id)[:64],
        )
    return decision, row


async def read_merge(gw: GatewayCore, actor: Actor, merge_id: str, *, purpose: str) -> Merge:
    """One merge of a contact in scope (ids, state, field names and counts)."""
    _, row = await _find_merge(gw, actor, merge_id, "read_merge", purpose)
    return _merge_of(row)


def _decided(state: str) -> Conflict:
    if state == CONFIRMED:
        return Conflict(
            "this merge was confirmed: the merged contact has been erased, so the merge "
            "can no longer be undone"
        )
    return Conflict("this merge was undone; merge the contacts again if they are one person")


async def _claim(row: Mapping[str, Any], state: str, actor: Actor, now: dt.datetime) -> None:
    """Move the merge from pending to ``state``, or 409 if someone decided it first."""
    claimed = await (
        ContactMerge.update(
            {
                ContactMerge.state: state,
                ContactMerge.decided_at: now,
                ContactMerge.decided_by: actor.id,
                ContactMerge.previous: "{}",  # no longer needed either way: minimise
            }
        )
        .where((ContactMerge.id == row["id"]) & (ContactMerge.state == PENDING))
        .returning(ContactMerge.id)
    )
    if not claimed:
        current = await ContactMerge.select(ContactMerge.state).where(ContactMerge.id == row["id"])
        raise _decided(str(current[0]["state"]) if current else UNDONE)


async def _added_since(moved: Sequence[_Moved], survivor_subject: uuid.UUID) -> dict[str, int]:
    """Records of the survivor, not moved by the merge, that point at a moved record (a task
    added to a moved deal): undoing would leave them about the wrong person."""
    ids: dict[str, list[uuid.UUID]] = defaultdict(list)
    for entry in moved:
        ids[entry.resource].append(uuid.UUID(entry.id))
    found: dict[str, int] = {}
    for rt, table in erasure.record_types():
        for spec in rt.fields:
            if spec.references_from:  # a note: typed by its type field
                targets = list(ids)
            elif spec.references in ids:
                targets = [spec.references]
            else:
                continue
            for target in targets:
                query = table.count().where(
                    (getattr(table, "subject_id") == survivor_subject)
                    & getattr(table, spec.name).is_in(ids[target])
                )
                if spec.references_from:
                    query = query.where(getattr(table, spec.references_from) == target)
                if ids.get(rt.resource):
                    query = query.where(table._meta.primary_key.not_in(ids[rt.resource]))
                n = int(await query)
                if n:
                    found[rt.resource] = found.get(rt.resource, 0) + n
    return found


async def undo(gw: GatewayCore, actor: Actor, merge_id: str, *, purpose: str) -> Merge:
    """Put back exactly what the merge moved (sealed again under the merged contact's key),
    restore the survivor's overwritten fields and show the merged contact again."""
    _, row = await _find_merge(gw, actor, merge_id, "merge_undo", purpose)
    if row["state"] != PENDING:
        raise _decided(str(row["state"]))
    now = dt.datetime.now(dt.UTC)
    moved = [_Moved(**m) for m in json.loads(row["moved"])]
    subjects = (str(row["survivor_subject_id"]), str(row["merged_subject_id"]))
    async with db.write_transaction():
        await _lock([row["survivor_id"], row["merged_id"]])
        await _claim(row, UNDONE, actor, now)
        added = await _added_since(moved, row["survivor_subject_id"])
        if added:
            raise Conflict(
                "records were added since the merge to records it moved ("
                + ", ".join(f"{n} {name}(s)" for name, n in sorted(added.items()))
                + "); move or delete them before undoing the merge"
            )
        keys = await gw.vault.keys_for(subjects)
        if subjects[0] not in keys or subjects[1] not in keys:
            raise Conflict(
                "one of these people has been erased since the merge: it cannot be undone"
            )
        back = await _move_back(
            gw, moved, row["survivor_id"], row["merged_id"], keys[subjects[0]], keys[subjects[1]]
        )
        previous = json.loads(row["previous"])
        restore: dict[Any, Any] = {Contact.updated_at: now}
        for name, value in previous.items():
            spec = CONTACT.by_name.get(name)
            restore[getattr(Contact, name)] = _restored(spec.kind if spec else None, value)
        await Contact.update(restore).where(Contact.id == row["survivor_id"])
        await Contact.update({Contact.merged_into: None}).where(Contact.id == row["merged_id"])
        await name_index.refresh(gw, CONTACT, [row["survivor_id"]])
        await mention_index.refresh(gw, CONTACT, [row["survivor_id"]])
        await gw.audit.append(
            allowed_event(
                actor,
                "merge_undo",
                CONTACT.resource,
                purpose,
                subjects,
                record_id=str(row["survivor_id"]),
                fields=json.loads(row["fields"]),
                detail={"merge": str(row["id"]), "merged": str(row["merged_id"]), **_counts(back)},
            )
        )
        for event in _move_events(
            actor, "merge_move_back", purpose, back, subjects, str(row["id"])
        ):
            await gw.audit.append(event)
    return _merge_of({**row, "state": UNDONE, "decided_at": now})


async def confirm(gw: GatewayCore, actor: Actor, merge_id: str, *, purpose: str) -> Merge:
    """Make the merge final: the merged contact becomes a tombstone and its key is shredded
    (as erasure does), in one transaction. Undo is refused from then on."""
    _, row = await _find_merge(gw, actor, merge_id, "merge_confirm", purpose)
    if row["state"] != PENDING:
        raise _decided(str(row["state"]))
    merged_subject = str(row["merged_subject_id"])
    blockers = await _blockers(gw, {merged_subject: "merged"})
    if blockers:
        raise Conflict("this merge cannot be confirmed now: " + "; ".join(blockers))
    now = dt.datetime.now(dt.UTC)
    async with db.write_transaction():
        await _claim(row, CONFIRMED, actor, now)
        erased: dict[str, int] = {}
        for rt, table in erasure.record_types():
            count = await erasure.pending_rows(rt, table, row["merged_subject_id"])
            if not count:
                continue
            await erasure.clear_rows(
                gw,
                actor,
                rt,
                table,
                row["merged_subject_id"],
                count,
                purpose=purpose,
                detail={"merge": str(row["id"])},
            )
            erased[rt.resource] = count
        await gw.vault.shred_subject(merged_subject)
        await name_index.clear_subject(row["merged_subject_id"])
        await mention_index.clear_subject(row["merged_subject_id"])
        await gw.audit.append(
            allowed_event(
                actor,
                "shred",
                "data_subject",
                purpose,
                (merged_subject,),
                detail={"merge": str(row["id"])},
            )
        )
        await gw.audit.append(
            allowed_event(
                actor,
                "merge_confirm",
                CONTACT.resource,
                purpose,
                (str(row["survivor_subject_id"]), merged_subject),
                record_id=str(row["survivor_id"]),
                detail={"merge": str(row["id"]), "merged": str(row["merged_id"]), **erased},
            )
        )
    return _merge_of({**row, "state": CONFIRMED, "decided_at": now})
