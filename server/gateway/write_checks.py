"""What a write must pass before anything is stored, for ``create``, ``update``,
``create_many`` and lead conversion alike.

Values are cleaned by the data map and the record type's rule; every field set must be
writable by the role; every reference must name a record the actor can read (a hidden
record answers like a missing one); a record about a person takes that person's subject
and key, and the records it points at must be about the same person; the owner and team
it ends with are settled by the policy. Each refusal is audited through the core
(:meth:`GatewayCore.deny`), with field names only.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from audit.events import AuditEvent, Outcome
from policy.enforcer import AccessDecision
from server.datamap import RECORD_TYPES, InvalidValues, RecordType, clean_values
from server.gateway.actor import Actor
from server.gateway.core import GatewayCore
from server.gateway.errors import Conflict, Forbidden, InvalidInput
from server.gateway.ownership import (
    Ownership,
    OwnershipRefused,
    change_detail,
    settle,
    starting_ownership,
)
from server.gateway.tables import TABLES
from server.vault import DataKey


async def settle_ownership(
    gw: GatewayCore,
    actor: Actor,
    rt: RecordType,
    action: str,
    purpose: str,
    decision: AccessDecision,
    current: Ownership | None,
    owner_id: int | None,
    team: str | None,
    *,
    record_id: str | None = None,
    subject_ids: tuple[str, ...] = (),
) -> Ownership:
    """The owner and team a create or update ends with; a refusal is audited."""
    try:
        return await settle(
            decision,
            actor,
            gw.staff,
            current or starting_ownership(actor),
            owner_id=owner_id,
            team=team,
        )
    except OwnershipRefused as exc:
        asked: dict[str, int | str] = {} if owner_id is None else {"owner_asked": owner_id}
        raise await gw.deny(
            actor,
            rt,
            action,
            purpose,
            exc.reason,
            exc,
            record_id=record_id,
            subject_ids=subject_ids,
            fields=tuple(n for n, v in (("owner_id", owner_id), ("team", team)) if v),
            detail=asked,
        ) from None


def with_ownership(event: AuditEvent, before: Ownership, after: Ownership) -> AuditEvent:
    """An allowed write's event, naming the change of hands if there was one."""
    moved = change_detail(before, after)
    if not moved:
        return event
    fields = {*event.fields, "owner_id", "team"}
    return dataclasses.replace(
        event, fields=tuple(sorted(fields)), detail={**event.detail, **moved}
    )


async def clean(
    gw: GatewayCore,
    actor: Actor,
    rt: RecordType,
    action: str,
    purpose: str,
    values: Mapping[str, Any],
    *,
    partial: bool,
    record_id: str | None = None,
    subject_ids: tuple[str, ...] = (),
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The values as the data map and the record type's rule accept them; a refusal is
    audited here, with the record and person it concerns, and marked as audited so the
    operation's decorator does not log it a second time."""
    try:
        return await cleaned_values(gw, rt, values, partial=partial, current=current)
    except InvalidValues as exc:
        await gw.audit_access(
            actor,
            rt,
            action,
            Outcome.ERROR,
            purpose,
            record_id=record_id,
            subject_ids=subject_ids,
            fields=tuple(k for k in exc.problems if k in rt.by_name),
            reason="invalid_input",
        )
        error = InvalidInput(
            "invalid input: " + "; ".join(f"{k}: {v}" for k, v in exc.problems.items()),
            problems=exc.problems,
        )
        error.audited = True  # with the record and subject ids the decorator lacks
        raise error from None


async def cleaned_values(
    gw: GatewayCore,
    rt: RecordType,
    values: Mapping[str, Any],
    *,
    partial: bool,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``clean_values`` and then the record type's rule, with every problem of both in
    one ``InvalidValues`` (the rule sees the fields that passed the data map)."""
    problems: dict[str, str] = {}
    try:
        cleaned = clean_values(rt, values, partial=partial, default_region=gw.default_region)
    except InvalidValues as exc:
        problems = dict(exc.problems)
        cleaned = {k: v for k, v in values.items() if k in rt.by_name and k not in problems}
    rule = gw.record_rules.get(rt.resource)
    if rule is not None:
        for name, problem in (await rule(cleaned, current)).items():
            problems.setdefault(name, problem)
    if problems:
        raise InvalidValues(problems)
    return cleaned


async def check_writable(
    gw: GatewayCore,
    actor: Actor,
    rt: RecordType,
    action: str,
    purpose: str,
    decision: AccessDecision,
    cleaned: Mapping[str, Any],
    *,
    record_id: str | None = None,
    subject_ids: tuple[str, ...] = (),
) -> None:
    """Every field being set is one the role may write under this purpose; else an audited
    403 naming the fields (never their values)."""
    forbidden = sorted(set(cleaned) - decision.fields)
    if forbidden:
        raise await gw.deny(
            actor,
            rt,
            action,
            purpose,
            "field_not_writable",
            Forbidden(f"your role may not set {rt.resource} field(s): " + ", ".join(forbidden)),
            record_id=record_id,
            subject_ids=subject_ids,
            fields=tuple(forbidden),
        )


async def check_references(
    gw: GatewayCore, actor: Actor, rt: RecordType, cleaned: Mapping[str, Any], purpose: str
) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Every reference must name a record the actor can read (else the same 400 as a
    missing one: an id must not reveal that a hidden record exists). Returns the rows
    found, by (field, id), so a create can take the subject from its source."""
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    for spec in rt.fields:
        target = spec.references
        value = cleaned.get(spec.name)
        if spec.references_from is not None and value:
            target = cleaned.get(spec.references_from)
            if target is None:  # an update naming the id alone: the type stays as it was
                raise InvalidInput(
                    f"{spec.name}: give {spec.references_from} with it",
                    problems={spec.references_from: "is required with " + spec.name},
                )
        if target is None or not value:
            continue
        target_rt, target_table = gw.record_type(target)
        decision = gw.decide(actor, target_rt, "read", purpose)
        row = (
            await gw.find_in_scope(target_table, decision, actor, str(value))
            if decision.allowed
            else None
        )
        if row is None:
            raise InvalidInput(
                f"{spec.name}: no such {target}", problems={spec.name: f"no such {target}"}
            )
        found[(spec.name, str(value))] = row
    return found


def same_subject_problems(
    rt: RecordType,
    cleaned: Mapping[str, Any],
    found: Mapping[tuple[str, str], Mapping[str, Any]],
    subject: str | None,
) -> dict[str, str]:
    """References in ``rt.same_subject`` must be about the record's own person (its
    ``subject``; None for a record that is its own subject): a task on Jane's deal
    filed under nobody, or under Joe, would survive Jane's erasure."""
    problems: dict[str, str] = {}
    person = (rt.subject_from or "").removesuffix("_id")
    for name in rt.same_subject:
        other = found.get((name, str(cleaned.get(name))))
        if other is not None and str(other["subject_id"]) != subject:
            problems[name] = f"must belong to the same {person} (set {rt.subject_from})"
    return problems


def require_same_subject(
    rt: RecordType,
    cleaned: Mapping[str, Any],
    found: Mapping[tuple[str, str], Mapping[str, Any]],
    subject: str | None,
) -> None:
    """:func:`same_subject_problems` as one invalid-input error, for a single write."""
    problems = same_subject_problems(rt, cleaned, found, subject)
    if problems:
        raise InvalidInput(
            "invalid input: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
            problems=problems,
        )


def source_subject(
    rt: RecordType,
    cleaned: Mapping[str, Any],
    found: Mapping[tuple[str, str], Mapping[str, Any]],
) -> str | None:
    """The subject a new record takes from its source reference; None: its own."""
    if rt.subject_from is None or cleaned.get(rt.subject_from) is None:
        return None
    return str(found[(rt.subject_from, str(cleaned[rt.subject_from]))]["subject_id"])


async def subject_keys(gw: GatewayCore, rt: RecordType, subjects: Sequence[str]) -> list[DataKey]:
    """The data keys of the people these new records are about (inside the write
    transaction, so a concurrent erasure either happened before or waits)."""
    keys = await gw.vault.keys_for(subjects)
    missing = [s for s in subjects if s not in keys]
    if missing:
        raise Conflict(
            f"the person this {rt.resource} is about has been erased; "
            f"no {rt.resource} can be added for them"
        )
    return [keys[s] for s in subjects]


async def referencing(rt: RecordType, row_id: str) -> dict[str, int]:
    """How many records of each type point at this one (unscoped: a record someone
    else can see still depends on it). Deleting it would leave them dangling."""
    counts: dict[str, int] = {}
    for other in RECORD_TYPES.values():
        other_table = TABLES[other.resource]
        for spec in other.fields:
            if spec.references_from is not None:  # a note: typed by its type field
                query = other_table.count().where(
                    getattr(other_table, spec.references_from) == rt.resource
                )
            elif spec.references == rt.resource:
                query = other_table.count()
            else:
                continue
            column = getattr(other_table, spec.name)
            n = int(await query.where(column == uuid.UUID(row_id)))
            if n:
                counts[other.resource] = counts.get(other.resource, 0) + n
    return counts
