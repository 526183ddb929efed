"""The gateway: the only path by which customer personal data is read or written.

Every operation runs the same steps, in this order:

1. look up the record type in the data map and check the purpose is registered;
2. ask the policy engine (role x resource x action x purpose -> fields and record scope);
3. run the query with the scope compiled into its WHERE clause (so counts and pages are
   right and an out-of-scope record is indistinguishable from a missing one);
4. encrypt on the way in, decrypt only the permitted fields on the way out;
5. append the audit event - in the write's own transaction, or before a read returns. If
   the append fails the operation fails: there is no unaudited access.

Denials are audited too, committed before the error is raised. The events of reads and
denials (which have no transaction of their own) are committed in groups (audit.log).
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
import functools
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from piccolo.columns import Column
from piccolo.query.functions.aggregate import Count, Sum
from piccolo.table import Table

from audit.events import Action, AuditEvent, Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import AccessDecision, Assign, PolicyEngine, Scope
from policy.scope import private_condition, scope_condition
from server import db
from server.datamap import (
    DEFAULT_PURPOSE,
    PERSON_TYPES,
    PURPOSES,
    RECORD_TYPES,
    Field,
    FieldKind,
    InvalidValues,
    RecordType,
    clean_values,
    shown_name,
)
from server.gateway import bulk, duplicates, erasure, leads, mention_index, mentions, name_index
from server.gateway import search as name_search
from server.gateway.actor import Actor
from server.gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.gateway.events import allowed_event
from server.gateway.ownership import (
    Ownership,
    OwnershipRefused,
    StaffDirectory,
    change_detail,
    settle,
    starting_ownership,
)
from server.gateway.sorting import sort_order
from server.gateway.tables import TABLES
from server.vault import DataKey, Vault
from server.vault.envelope import CiphertextError

P = ParamSpec("P")
T = TypeVar("T")
MAX_PAGE_SIZE = 100
# Deeper pages than this are never useful to a person and their OFFSET, page x page_size,
# must stay far inside a 64-bit integer (9223372036854775807 was a 500 on both engines).
MAX_PAGE = 1_000_000
READ_ACTIONS = {"read", "list", "search", "export"}
_MOMENTS = (FieldKind.DATE, FieldKind.DATETIME)  # kinds a ``<field>_before`` list filter accepts
# Record types private to their owner until shared (captured mail): table -> the field.
_PRIVATE_UNTIL = {TABLES[r]: rt.private_until for r, rt in RECORD_TYPES.items() if rt.private_until}
# The purposes a restricted person's data may still serve (Art. 18(2)): storage and the
# controller's legal obligations (requests, audits, legal holds).
STORAGE_PURPOSES = frozenset({"compliance"})


def _plain_value(raw: Any) -> Any:
    """A plaintext column as the API shows it: ids and moments as strings (UTC ISO 8601),
    exactly as ``clean_values`` canonicalised them on the way in."""
    if type(raw) in (int, str):  # most values of a large GROUP BY: nothing to convert
        return raw
    if isinstance(raw, uuid.UUID):
        return str(raw)
    if isinstance(raw, dt.datetime):
        return raw.astimezone(dt.UTC).isoformat()
    if isinstance(raw, dt.date):
        return raw.isoformat()
    return raw


class OutsideScope(Forbidden):
    """A write would leave the actor's record scope; raised inside the write transaction."""

    reason = "outside_scope_after_write"


@dataclass(frozen=True)
class Record:
    resource: str
    id: str
    subject_id: str
    owner_id: int
    team: str
    created_at: dt.datetime
    updated_at: dt.datetime
    values: dict[str, Any]  # only the fields this actor may read
    restricted: tuple[str, ...]  # fields that exist but are hidden from this actor
    erased: bool = False  # a tombstone: the person was erased, the values are gone


@dataclass(frozen=True)
class BulkResult:
    created: list[str]  # new record ids, in input order of the accepted rows
    rejected: dict[int, dict[str, str]]  # input row index -> field -> reason (no values)


@dataclass(frozen=True)
class Page:
    items: builtins.list[Record]
    total: int
    page: int
    page_size: int


@dataclass(frozen=True)
class Group:
    """One row of an ``aggregate``: the grouped column values (in ``group_by`` order), how
    many records, the sum of the summed column (None when none was asked for), and how
    many different people the records are about (None unless ``count_people``)."""

    key: tuple[Any, ...]
    count: int
    total: int | None = None
    people: int | None = None


def audits_bad_input(
    action: str,
) -> Callable[
    [Callable[Concatenate[Gateway, Actor, str, P], Awaitable[T]]],
    Callable[Concatenate[Gateway, Actor, str, P], Awaitable[T]],
]:
    """Audit every refused input (bad purpose, field list, filter, page, search value).

    Errors raised after the audit was already written (validation in ``_clean``) are not
    logged twice. The audit row names fields only, never the rejected value.
    """

    def wrap(
        operation: Callable[Concatenate[Gateway, Actor, str, P], Awaitable[T]],
    ) -> Callable[Concatenate[Gateway, Actor, str, P], Awaitable[T]]:
        @functools.wraps(operation)
        async def guarded(
            self: Gateway, actor: Actor, resource: str, /, *args: P.args, **kwargs: P.kwargs
        ) -> T:
            try:
                return await operation(self, actor, resource, *args, **kwargs)
            except InvalidInput as exc:
                rt = RECORD_TYPES.get(resource)
                if rt is not None and not exc.audited:
                    purpose = kwargs.get("purpose")
                    await self._audit(
                        actor,
                        rt,
                        action,
                        Outcome.ERROR,
                        purpose if isinstance(purpose, str) and purpose in PURPOSES else "",
                        fields=tuple(k for k in exc.problems if k in rt.by_name),
                        reason="invalid_input",
                    )
                    exc.audited = True
                raise

        return guarded

    return wrap


class BasisVerdict(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class AudienceCondition(Protocol):
    def where(self, subject_column: Column) -> Any: ...


class SubjectBasis(Protocol):
    """What the gateway asks the consent engine (``server.consent``): whether one person,
    or which people, give a valid basis for a purpose. A protocol, so the gateway does
    not import the engine and the engine does not import customer tables."""

    async def has_basis(
        self,
        subject_id: str,
        purpose: str,
        channel: str | None = None,
        now: dt.datetime | None = None,
    ) -> BasisVerdict: ...

    async def subjects_with_basis(
        self, purpose: str, channel: str | None = None, now: dt.datetime | None = None
    ) -> AudienceCondition: ...


class SubjectRestrictions(Protocol):
    """What the gateway asks the restriction register (``server.dsr.restriction``): is one
    person restricted, and which people are not (as a WHERE condition)."""

    async def is_restricted(self, subject_id: str) -> bool: ...

    async def unrestricted_subjects(self) -> AudienceCondition: ...


class MergeBlockers(Protocol):
    """Why one person's records may not be merged now, one sentence each (legal holds, open
    requests, erasure: ``server.dsr.registers``). The gateway does not read those registers
    itself: ``server.dsr`` builds on the gateway, not the other way round."""

    async def __call__(self, subject_id: str, label: str) -> list[str]: ...


class RecordRule(Protocol):
    """Checks a record type's values against configuration the data map cannot hold (a
    deal's stage must belong to its pipeline). Completes ``values`` in place (defaults
    and values that follow from others) and returns problems by field name, no values.
    ``current`` is the stored row on an update, None on a create."""

    async def __call__(
        self, values: dict[str, Any], current: Mapping[str, Any] | None
    ) -> dict[str, str]: ...


class Gateway:
    def __init__(
        self,
        vault: Vault,
        policy: PolicyEngine,
        audit: AuditLog,
        staff: StaffDirectory,
        *,
        default_region: str = "GB",
    ) -> None:
        self.vault = vault
        self.policy = policy
        self.audit = audit
        self.staff = staff  # who records may be handed to (server.gateway.ownership)
        self.default_region = default_region  # for phone numbers written without +country
        # Set by build_services once the consent engine exists; until then every purpose
        # that needs a per-person basis is refused (fail closed).
        self.subject_basis: SubjectBasis | None = None
        # Set by build_services (server.dsr.restriction); until then only the storage
        # purposes reach anyone (fail closed).
        self.restrictions: SubjectRestrictions | None = None
        # Set by build_services (server.dsr.registers); until then no merge is allowed.
        self.merge_blockers: MergeBlockers | None = None
        # Per record type, set by build_services (server.pipelines for deals).
        self.record_rules: dict[str, RecordRule] = {}

    # --- decisions and audit ----------------------------------------------------------------

    def default_purpose(self, role: str) -> str:
        """The first registered purpose this role may act under."""
        for name in PURPOSES:
            if self.policy.allows(role, f"purpose:{name}", "use"):
                return name
        return DEFAULT_PURPOSE

    def purpose_for(self, actor: Actor) -> str:
        """The purpose an operation runs under when the caller names none: the role's
        default, or for an API token the first of its own purposes the role may use."""
        if actor.limits is None:
            return self.default_purpose(actor.role)
        for name in PURPOSES:
            if name in actor.limits.purposes and self.policy.allows(
                actor.role, f"purpose:{name}", "use"
            ):
                return name
        return self.default_purpose(actor.role)

    def permitted_fields(
        self, actor: Actor, resource: str, action: str, *, purpose: str | None = None
    ) -> frozenset[str] | None:
        """The fields ``actor`` may use for ``action``, or None if the action is refused.

        A policy question only - for building forms and menus (no input for a field the
        role may not write, no button for an action it may not take). No record is touched,
        so nothing is audited; every operation still decides again for itself.
        """
        rt, _ = self._record_type(resource)
        decision = self._decide(actor, rt, action, purpose or self.purpose_for(actor))
        return decision.fields if decision.allowed else None

    def list_scope(self, actor: Actor, resource: str, *, purpose: str | None = None) -> Scope:
        """The record scope ``actor`` lists ``resource`` under (``Scope.NONE`` if refused): a
        policy question, e.g. whether an aggregate covers only the actor's own records
        (server.reports.small_groups). Nothing is touched, so nothing is audited."""
        rt, _ = self._record_type(resource)
        decision = self._decide(actor, rt, "list", purpose or self.purpose_for(actor))
        return decision.scope if decision.allowed else Scope.NONE

    def assignment(
        self, actor: Actor, resource: str, action: str, *, purpose: str | None = None
    ) -> Assign:
        """Whom ``actor`` may hand a record to on ``action`` (create or update): a policy
        question for building forms (an owner select only where it can be used)."""
        rt, _ = self._record_type(resource)
        decision = self._decide(actor, rt, action, purpose or self.purpose_for(actor))
        return decision.assign if decision.allowed else Assign.NONE

    def _record_type(self, resource: str) -> tuple[RecordType, type[Table]]:
        try:
            return RECORD_TYPES[resource], TABLES[resource]
        except KeyError:
            raise NotFound(f"unknown record type {resource!r}") from None

    def _decide(self, actor: Actor, rt: RecordType, action: str, purpose: str) -> AccessDecision:
        if purpose not in PURPOSES:
            raise InvalidInput(
                f"unknown purpose {purpose!r}; registered purposes: " + ", ".join(PURPOSES)
            )
        return self.policy.decide(
            actor.role,
            rt.resource,
            action,
            purpose,
            tuple(f.name for f in rt.fields),
            frozenset(f.name for f in rt.fields if purpose in f.purposes),
            actor.limits,
        )

    async def _audit(
        self,
        actor: Actor,
        rt: RecordType,
        action: str,
        outcome: Outcome,
        purpose: str,
        *,
        record_id: str | None = None,
        subject_ids: tuple[str, ...] = (),
        fields: tuple[str, ...] | frozenset[str] = (),
        reason: str = "allowed",
        detail: dict[str, int | str] | None = None,
    ) -> None:
        event = audit_event(
            actor_id=actor.id,
            actor_role=actor.role,
            action=action,
            resource_type=rt.resource,
            outcome=outcome,
            purpose=purpose,
            resource_id=record_id,
            subject_ids=subject_ids,
            fields=tuple(sorted(fields)),
            reason=reason,
            request_id=actor.request_id,
            detail=detail or {},
        )
        await self.audit.append_committed(event)  # grouped with this worker's others

    async def _deny(
        self,
        actor: Actor,
        rt: RecordType,
        action: str,
        purpose: str,
        reason: str,
        error: Exception,
        *,
        record_id: str | None = None,
        subject_ids: tuple[str, ...] = (),
        fields: tuple[str, ...] | frozenset[str] = (),
        detail: dict[str, int | str] | None = None,
    ) -> Exception:
        await self._audit(
            actor,
            rt,
            action,
            Outcome.DENIED,
            purpose,
            record_id=record_id,
            subject_ids=subject_ids,
            fields=fields,
            reason=reason,
            detail=detail,
        )
        return error

    # --- queries ----------------------------------------------------------------------------

    def _scoped(
        self,
        query: Any,
        table: type[Table],
        decision: AccessDecision,
        actor: Actor,
        *,
        include_merged: bool = False,
    ) -> Any:
        """The record scope in the WHERE; contacts merged into another (merge not undone)
        are left out too, except for a subject export (``include_merged``): the merged
        person's own row is still theirs until the merge is confirmed."""
        condition = scope_condition(
            decision, getattr(table, "owner_id"), getattr(table, "team"), actor.user_id, actor.team
        )
        query = query if condition is None else query.where(condition)
        private = _PRIVATE_UNTIL.get(table)
        if private is not None:
            mine = private_condition(
                decision, getattr(table, "owner_id"), getattr(table, private), actor.user_id
            )
            query = query if mine is None else query.where(mine)
        return query if include_merged else duplicates.visible(query, table)

    async def _find(
        self, table: type[Table], decision: AccessDecision, actor: Actor, record_id: str
    ) -> dict[str, Any] | None:
        try:
            rid = uuid.UUID(str(record_id))
        except ValueError:
            return None
        query = table.select().where(table._meta.primary_key == rid)
        row: dict[str, Any] | None = await self._scoped(query, table, decision, actor).first()
        return row

    async def _with_basis(self, query: Any, table: type[Table], purpose: str) -> Any:
        """Under a purpose that rests on each person's own consent (or that they may object
        to), reach only the people with a valid basis: compiled into the WHERE like the
        record scope, so counts and pages are right and a withdrawal counts at once."""
        query = await self._unrestricted(query, table, purpose)
        if not PURPOSES[purpose].per_subject:
            return query
        if self.subject_basis is None:
            raise Forbidden(f"no consent engine: nothing may be processed for {purpose}")
        audience = await self.subject_basis.subjects_with_basis(purpose)
        return query.where(audience.where(getattr(table, "subject_id")))

    async def _unrestricted(self, query: Any, table: type[Table], purpose: str) -> Any:
        """Leave out people whose processing is restricted (Art. 18), in the WHERE clause,
        unless the purpose is storage-and-legal (``STORAGE_PURPOSES``)."""
        if purpose in STORAGE_PURPOSES:
            return query
        if self.restrictions is None:
            raise Forbidden(f"no restriction register: nothing may be processed for {purpose}")
        condition = await self.restrictions.unrestricted_subjects()
        return query.where(condition.where(getattr(table, "subject_id")))

    async def _require_unrestricted(
        self, actor: Actor, rt: RecordType, action: str, purpose: str, row: Mapping[str, Any]
    ) -> None:
        """One record of a restricted person, outside the storage purposes: refused (403,
        reason ``restricted``) and audited."""
        if purpose in STORAGE_PURPOSES:
            return
        subject = str(row["subject_id"])
        if self.restrictions is not None and not await self.restrictions.is_restricted(subject):
            return
        raise await self._deny(
            actor,
            rt,
            action,
            purpose,
            "restricted",
            Forbidden(
                "this person's data is restricted (Art. 18): it may only be stored, or used "
                "for compliance and legal claims"
            ),
            record_id=str(row["id"]),
            subject_ids=(subject,),
        )

    async def _require_basis(
        self, actor: Actor, rt: RecordType, action: str, purpose: str, row: Mapping[str, Any]
    ) -> None:
        """One person's record under a per-person purpose: refused, audited, and explained
        when they gave no valid basis (no consent, withdrawn, expired, objected)."""
        await self._require_unrestricted(actor, rt, action, purpose, row)
        if not PURPOSES[purpose].per_subject:
            return
        subject = str(row["subject_id"])
        reason = "no_consent_engine"
        if self.subject_basis is not None:
            verdict = await self.subject_basis.has_basis(subject, purpose)
            if verdict.ok:
                return
            reason = verdict.reason
        raise await self._deny(
            actor,
            rt,
            action,
            purpose,
            "no_legal_basis",
            Forbidden(
                f"no legal basis to process this person's data for {purpose} "
                f"({reason.replace('_', ' ')})"
            ),
            record_id=str(row["id"]),
            subject_ids=(subject,),
            detail={"basis": reason},
        )

    async def _refuse_new_person(
        self, actor: Actor, rt: RecordType, action: str, purpose: str
    ) -> None:
        """Nobody new has consented to anything yet: records are created under a service
        purpose, and consent is recorded for them afterwards."""
        if PURPOSES[purpose].per_subject:
            raise await self._deny(
                actor,
                rt,
                action,
                purpose,
                "no_legal_basis",
                Forbidden(
                    f"records cannot be created for {purpose}: a new person has given no "
                    "basis yet; create them under a service purpose, then record consent"
                ),
                detail={"basis": "new_person"},
            )

    async def _subject_of(self, table: type[Table], record_id: str) -> tuple[str, ...]:
        """Unscoped subject lookup, for the audit trail of a denial only (never returned)."""
        try:
            rid = uuid.UUID(str(record_id))
        except ValueError:
            return ()
        row = (
            await table.select(getattr(table, "subject_id"))
            .where(table._meta.primary_key == rid)
            .first()
        )
        return (str(row["subject_id"]),) if row else ()

    def _materialize(
        self,
        rt: RecordType,
        row: Mapping[str, Any],
        key: DataKey | None,
        readable: frozenset[str],
    ) -> Record:
        values: dict[str, Any] = {}
        row_id = str(row["id"])
        for spec in rt.fields:
            if spec.name not in readable:
                continue
            raw = row.get(spec.name)
            if raw is None:
                values[spec.name] = None
            elif spec.encrypted:
                values[spec.name] = self._decrypt(rt, spec, row_id, key, raw)
            else:
                values[spec.name] = _plain_value(raw)
        restricted = tuple(f.name for f in rt.fields if f.name not in readable)
        return Record(
            resource=rt.resource,
            id=row_id,
            subject_id=str(row["subject_id"]),
            owner_id=int(row["owner_id"]),
            team=str(row["team"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            values=values,
            restricted=restricted,
            erased=key is None or erasure.is_tombstone(rt, row),
        )

    def _decrypt(
        self, rt: RecordType, spec: Field, row_id: str, key: DataKey | None, token: str
    ) -> Any:
        if key is None:  # the subject's key was shredded: the value is gone for good
            return None
        try:
            return self.vault.decrypt_value(rt, spec, row_id, key, token)
        except CiphertextError:
            return None

    async def _read_decision(self, actor: Actor, rt: RecordType, purpose: str) -> AccessDecision:
        return self._decide(actor, rt, "read", purpose)

    # --- operations -------------------------------------------------------------------------

    @audits_bad_input(Action.READ)
    async def read(
        self,
        actor: Actor,
        resource: str,
        record_id: str,
        *,
        purpose: str | None = None,
        fields: tuple[str, ...] | None = None,
    ) -> Record:
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        decision = self._decide(actor, rt, "read", purpose)
        if not decision.allowed:
            raise await self._deny(
                actor,
                rt,
                Action.READ,
                purpose,
                decision.reason,
                NotFound(f"{rt.resource} not found"),
                record_id=str(record_id),
                subject_ids=await self._subject_of(table, record_id),
            )
        if fields is not None:
            unknown = [f for f in fields if f not in rt.by_name]
            if unknown:
                raise InvalidInput(
                    "unknown field(s): " + ", ".join(unknown),
                    problems=dict.fromkeys(unknown, "unknown field"),
                )
        row = await self._find(table, decision, actor, record_id)
        if row is None:
            raise await self._deny(
                actor,
                rt,
                Action.READ,
                purpose,
                "not_found_or_out_of_scope",
                NotFound(f"{rt.resource} not found"),
                record_id=str(record_id),
                subject_ids=await self._subject_of(table, record_id),
            )
        await self._require_basis(actor, rt, Action.READ, purpose, row)
        subject = (str(row["subject_id"]),)
        if fields is not None:
            hidden = sorted(set(fields) - decision.fields)
            if hidden:
                raise await self._deny(
                    actor,
                    rt,
                    Action.READ,
                    purpose,
                    "field_not_readable",
                    Forbidden(
                        f"your role may not read {rt.resource} field(s): " + ", ".join(hidden)
                    ),
                    record_id=str(row["id"]),
                    subject_ids=subject,
                    fields=tuple(hidden),
                )
        readable = decision.fields if fields is None else frozenset(fields)
        keys = await self.vault.keys_for(subject)
        record = self._materialize(rt, row, keys.get(subject[0]), readable)
        await self._audit(
            actor,
            rt,
            Action.READ,
            Outcome.ALLOWED,
            purpose,
            record_id=record.id,
            subject_ids=subject,
            fields=readable,
        )
        return record

    @audits_bad_input(Action.LIST)
    async def list(
        self,
        actor: Actor,
        resource: str,
        *,
        purpose: str | None = None,
        filters: Mapping[str, Any] | None = None,
        page: int = 1,
        page_size: int = 25,
        sort: str = "",
        include_erased: bool = False,
    ) -> Page:
        """One page of the records the actor may list, newest first unless ``sort`` names
        a plaintext field (server.gateway.sorting): "stage", "-amount". Erased people
        (tombstones of contacts and leads) are left out unless ``include_erased``."""
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        if not 1 <= page <= MAX_PAGE or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(
                f"page must be between 1 and {MAX_PAGE} and page_size between 1 and {MAX_PAGE_SIZE}"
            )
        decision = self._decide(actor, rt, "list", purpose)
        if not decision.allowed:
            raise await self._deny(
                actor,
                rt,
                Action.LIST,
                purpose,
                decision.reason,
                Forbidden(f"your role may not list {rt.resource} records"),
            )
        conditions = self._filter_conditions(rt, table, decision, filters or {})
        order = sort_order(rt, table, decision.fields, sort)
        select = await self._with_basis(
            self._scoped(table.select(), table, decision, actor), table, purpose
        )
        count = await self._with_basis(
            self._scoped(table.count(), table, decision, actor), table, purpose
        )
        if not include_erased:
            select, count = erasure.living(select, rt, table), erasure.living(count, rt, table)
        for condition in conditions:
            select = select.where(condition)
            count = count.where(condition)
        total = int(await count)
        if order is not None:
            select = select.order_by(order.column, ascending=order.ascending)
        rows = await (
            select.order_by(getattr(table, "created_at"), ascending=False)
            .order_by(table._meta.primary_key)
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        keys = await self.vault.keys_for(str(r["subject_id"]) for r in rows)
        items = [
            self._materialize(rt, r, keys.get(str(r["subject_id"])), decision.fields) for r in rows
        ]
        await self._audit(
            actor,
            rt,
            Action.LIST,
            Outcome.ALLOWED,
            purpose,
            subject_ids=tuple(i.subject_id for i in items),
            fields=decision.fields,
            detail={
                "page": page,
                "page_size": page_size,
                "returned": len(items),
                "total": total,
                "filters": ",".join(sorted(filters or {})),
                **({"sort": sort} if sort else {}),
            },
        )
        return Page(items=items, total=total, page=page, page_size=page_size)

    @audits_bad_input("count")
    async def count(
        self,
        actor: Actor,
        resource: str,
        *,
        purpose: str | None = None,
        filters: Mapping[str, Any] | None = None,
        include_erased: bool = False,
    ) -> int:
        """How many records of ``resource`` the actor can reach, without reading any
        (erased people left out, as in ``list``).

        For dashboards: a one-row ``list`` would record the newest customer as accessed by
        everyone who opens the start page, which would drown that person's access report.
        And for audience sizes before a campaign is sent (``filters`` as for ``list``).
        Needs the ``list`` right; audited as a count, with no subject.
        """
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        decision = self._decide(actor, rt, "list", purpose)
        if not decision.allowed:
            raise await self._deny(
                actor,
                rt,
                "count",
                purpose,
                decision.reason,
                Forbidden(f"your role may not list {rt.resource} records"),
            )
        conditions = self._filter_conditions(rt, table, decision, filters or {})
        query = await self._with_basis(
            self._scoped(table.count(), table, decision, actor), table, purpose
        )
        if not include_erased:
            query = erasure.living(query, rt, table)
        for condition in conditions:
            query = query.where(condition)
        total = int(await query)
        detail: dict[str, int | str] = {"total": total}
        if filters:
            detail["filters"] = ",".join(sorted(filters))
        await self._audit(actor, rt, "count", Outcome.ALLOWED, purpose, detail=detail)
        return total

    async def aggregate(
        self,
        actor: Actor,
        resource: str,
        *,
        group_by: Sequence[str],
        sum_of: str | None = None,
        since: tuple[str, dt.datetime | dt.date] | None = None,
        before: tuple[str, dt.datetime | dt.date] | None = None,
        purpose: str | None = None,
        filters: Mapping[str, Any] | None = None,
        audit_detail: Mapping[str, int | str] | None = None,
        count_people: bool = False,
        team_totals: bool = False,
    ) -> builtins.list[Group]:
        """Counts (and a sum) per group over the records the actor can reach, in one GROUP BY.

        For reports: the scope, restriction and consent conditions are compiled into the
        WHERE exactly as for ``list``, so a rep's pipeline covers their own deals only, and
        no record is decrypted or returned. Needs the ``list`` right, and read rights on every
        column used (grouped, summed or windowed); only plaintext columns qualify. Audited as
        one ``aggregate`` event with the column names and counts, no subject. ``filters``
        as for ``list`` (their names are audited, never their values); ``audit_detail``
        adds release parameters to the event (a differential-privacy epsilon);
        ``count_people`` also counts the distinct data subjects per group (small-group
        suppression counts people, not records).

        ``team_totals``: over the actor's team's records instead of their own scope, for a
        role the policy grants ``<resource>, totals:team`` (a rep's team totals in the sales
        forecast). Never grouped by owner, so no colleague's own figures show.
        """
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        decision = self._decide(actor, rt, "list", purpose)
        if not decision.allowed:
            raise await self._deny(
                actor,
                rt,
                "aggregate",
                purpose,
                decision.reason,
                Forbidden(f"your role may not list {rt.resource} records"),
            )
        if team_totals and (
            not actor.team
            or "owner_id" in group_by
            or not self.policy.allows(actor.role, rt.resource, "totals:team")
        ):
            raise await self._deny(
                actor,
                rt,
                "aggregate",
                purpose,
                "no_team_totals",
                Forbidden(f"your role may not see team totals of {rt.resource} records"),
            )
        windows = [w for w in (since, before) if w is not None]
        used = [*group_by, *([sum_of] if sum_of else []), *(name for name, _ in windows)]
        metadata = {"owner_id", "team", "created_at", "updated_at"}
        unusable = sorted(
            {
                n
                for n in used
                if n not in metadata
                and (
                    n not in rt.by_name
                    or not rt.by_name[n].aggregatable
                    or n not in decision.fields
                )
            }
        )
        summable = sum_of is None or (sum_of in rt.by_name and rt.by_name[sum_of].summable)
        if unusable or not summable or not group_by:
            raise await self._deny(
                actor,
                rt,
                "aggregate",
                purpose,
                "field_not_readable" if unusable else "invalid_input",
                Forbidden(f"{rt.resource} cannot be aggregated by: " + ", ".join(unusable or used)),
                fields=tuple(n for n in used if n in rt.by_name),
            )
        columns = [getattr(table, n) for n in group_by]
        selected: builtins.list[Any] = [*columns, Count(alias="n")]
        if sum_of:
            selected.append(Sum(getattr(table, sum_of), alias="total"))
        if count_people:
            selected.append(Count(distinct=[getattr(table, "subject_id")], alias="people"))
        if team_totals:
            team = table.select(*selected).where(getattr(table, "team") == actor.team)
            scoped = duplicates.visible(team, table)
        else:
            scoped = self._scoped(table.select(*selected), table, decision, actor)
        query = await self._with_basis(scoped, table, purpose)
        if since is not None:
            query = query.where(getattr(table, since[0]) >= since[1])
        if before is not None:
            query = query.where(getattr(table, before[0]) < before[1])
        conditions = self._filter_conditions(
            rt, table, decision, filters or {}, any_aggregatable=True
        )
        for condition in conditions:
            query = query.where(condition)
        rows = await query.group_by(*columns)
        groups = [
            Group(
                key=tuple([_plain_value(r[n]) for n in group_by]),
                count=int(r["n"]),
                total=int(r["total"]) if sum_of and r["total"] is not None else None,
                people=int(r["people"]) if count_people else None,
            )
            for r in rows
        ]
        await self._audit(
            actor,
            rt,
            "aggregate",
            Outcome.ALLOWED,
            purpose,
            fields=tuple(dict.fromkeys(n for n in [*used, *(filters or {})] if n in rt.by_name)),
            detail={
                "group_by": ",".join(group_by),
                **({"scope": "team_totals"} if team_totals else {}),
                "groups": len(groups),
                "total": sum(g.count for g in groups),
                **({"filters": ",".join(sorted(filters))} if filters else {}),
                **(audit_detail or {}),
            },
        )
        return groups

    async def behaviour(
        self, actor: Actor, *, purpose: str = "profiling"
    ) -> dict[str, builtins.list[tuple[Any, ...]]]:
        """The plaintext facts a customer-value and churn model uses, per record type, for
        every person with a basis for ``purpose`` (server.analytics): deals as
        (subject, amount, currency, stage, pipeline, updated_at), interactions as
        (subject, occurred_at), cases as (subject, created_at). No field is decrypted.

        The purpose's basis (consent, objections, restriction) and the actor's record scope
        are compiled into each WHERE exactly as for ``list``; a column the purpose may not
        use (data map) refuses the whole call. One audited ``profile`` event per record type
        with the row count, no subject ids (they are many, and the scores are recorded per
        person by the caller's own events).
        """
        wanted = {
            "deal": ("amount", "currency", "stage", "pipeline_id", "updated_at"),
            "interaction": ("occurred_at",),
            "case": ("created_at",),
        }
        found: dict[str, builtins.list[tuple[Any, ...]]] = {}
        for resource, names in wanted.items():
            rt, table = self._record_type(resource)
            decision = self._decide(actor, rt, "list", purpose)
            fields = tuple(n for n in names if n in rt.by_name)
            if not decision.allowed or not set(fields) <= decision.fields:
                raise await self._deny(
                    actor,
                    rt,
                    "profile",
                    purpose,
                    decision.reason if not decision.allowed else "field_not_readable",
                    Forbidden(f"{rt.resource} may not be profiled under {purpose}"),
                    fields=fields,
                )
            columns = [getattr(table, "subject_id"), *(getattr(table, n) for n in names)]
            query = await self._with_basis(
                self._scoped(table.select(*columns), table, decision, actor), table, purpose
            )
            rows = await query
            found[resource] = [(str(r["subject_id"]), *(r[n] for n in names)) for r in rows]
            await self._audit(
                actor,
                rt,
                "profile",
                Outcome.ALLOWED,
                purpose,
                fields=fields,
                detail={"records": len(rows)},
            )
        return found

    async def export_subject(
        self, actor: Actor, subject_id: str, *, purpose: str | None = None
    ) -> builtins.list[Record]:
        """Every record about one data subject, with every field the actor may export:
        the gateway's side of a subject access / portability request (Art. 15, 20).

        One audited ``export`` event per record type that holds anything about them, with
        the field names and the record count - never the values.
        """
        try:
            subject = uuid.UUID(str(subject_id))
        except ValueError:
            raise InvalidInput("not a subject id", problems={"subject_id": "not a UUID"}) from None
        found: builtins.list[Record] = []
        for resource, table in TABLES.items():
            rt = RECORD_TYPES[resource]
            use = purpose or self.purpose_for(actor)
            decision = self._decide(actor, rt, "export", use)
            if not decision.allowed:
                raise await self._deny(
                    actor,
                    rt,
                    Action.EXPORT,
                    use,
                    decision.reason,
                    Forbidden(f"your role may not export {rt.resource} records"),
                    subject_ids=(str(subject),),
                )
            query = table.select().where(getattr(table, "subject_id") == subject)
            rows = await self._scoped(query, table, decision, actor, include_merged=True)
            if not rows:
                continue
            keys = await self.vault.keys_for([str(subject)])
            key = keys.get(str(subject))
            records = [self._materialize(rt, row, key, decision.fields) for row in rows]
            found.extend(records)
            await self._audit(
                actor,
                rt,
                Action.EXPORT,
                Outcome.ALLOWED,
                use,
                subject_ids=(str(subject),),
                fields=decision.fields,
                detail={"records": len(records), "for": "data_subject"},
            )
        return found

    # --- erasure and retention (server.gateway.erasure; orchestrated by server.dsr) --------

    async def subject_record_counts(self, subject_id: str) -> dict[str, int]:
        """Records per type carrying this subject id, tombstones included (ids only)."""
        return await erasure.record_counts(self, subject_id)

    async def erase_mentions(
        self,
        actor: Actor,
        subject_id: str,
        *,
        batch_size: int = 500,
        remembered: str = "",
        before_write: erasure.WriteHook | None = None,
    ) -> erasure.MentionScrub:
        """Scrub the person's names, addresses and numbers from other people's free text
        (``remembered``: what :meth:`remembered_identity` sealed while their records
        still held it)."""
        return await erasure.scrub_mentions(
            self,
            actor,
            subject_id,
            batch_size=batch_size,
            remembered=remembered,
            before_write=before_write,
        )

    async def remembered_identity(self, subject_id: str) -> str:
        """The person's identifying values sealed under their key (for a held erasure)."""
        return await erasure.remembered_identity(self, subject_id)

    async def subject_mentions(
        self, actor: Actor, subject_id: str, *, purpose: str
    ) -> builtins.list[mentions.Mention]:
        """Other people's records whose free text mentions the person: what erasing them
        scrubs, and what their export shows as excerpts (server.gateway.mentions)."""
        return await mentions.mentions_of(
            self, actor, erasure.subject_uuid(subject_id), purpose=purpose
        )

    async def withhold_others(
        self,
        actor: Actor,
        subject_id: str,
        texts: Sequence[str],
        *,
        purpose: str,
        also: Collection[str] = (),
    ) -> builtins.list[tuple[str, int]]:
        """``texts`` with every other known person replaced by "[another person]" (and
        how many were), for the person's export (Art. 15(4))."""
        return await mentions.redact_others(
            self, actor, erasure.subject_uuid(subject_id), texts, purpose=purpose, also=also
        )

    async def erase_subject(
        self, actor: Actor, subject_id: str, *, keep: Collection[str] = ()
    ) -> dict[str, int]:
        """Turn the person's records into tombstones, except the types in ``keep``."""
        return await erasure.tombstone_subject(self, actor, subject_id, keep=keep)

    async def shred_subject(self, actor: Actor, subject_id: str) -> None:
        """Destroy the person's data keys (after every record is a tombstone)."""
        await erasure.shred_subject_key(self, actor, subject_id)

    async def expired_records(
        self,
        actor: Actor,
        resource: str,
        *,
        older_than: dt.datetime,
        age_column: str,
        when: Mapping[str, Sequence[str]],
        free_text_only: bool,
    ) -> builtins.list[tuple[str, str]]:
        """(record id, subject id) of records past a retention period, not yet erased."""
        return await erasure.expired_records(
            self,
            actor,
            resource,
            older_than=older_than,
            age_column=age_column,
            when=when,
            free_text_only=free_text_only,
        )

    async def anonymise_records(
        self, actor: Actor, resource: str, record_ids: Sequence[str]
    ) -> int:
        """Clear the free text of these records; the records and their people stay."""
        return await erasure.anonymise_records(self, actor, resource, record_ids)

    async def convert_lead(
        self,
        actor: Actor,
        lead_id: str,
        *,
        purpose: str | None = None,
        create_organization: bool = False,
        organization_id: str | None = None,
        deal: Mapping[str, Any] | None = None,
    ) -> leads.Conversion:
        """Turn a lead into a contact (same subject), optionally with an organization and
        a deal, in one audited transaction (server.gateway.leads)."""
        return await leads.convert(
            self,
            actor,
            lead_id,
            purpose=purpose or self.purpose_for(actor),
            create_organization=create_organization,
            organization_id=organization_id,
            deal=deal,
        )

    # --- duplicates and merges (server.gateway.duplicates) ------------------------------

    async def find_duplicates(self, actor: Actor, *, purpose: str | None = None) -> duplicates.Scan:
        """Likely duplicate contact pairs in the actor's scope: ids and reasons only."""
        purpose = purpose or self.purpose_for(actor)
        return await duplicates.find_candidates(self, actor, purpose=purpose)

    async def merge_preview(
        self, actor: Actor, first_id: str, second_id: str, *, purpose: str | None = None
    ) -> duplicates.Preview:
        """Record counts of both contacts and why a merge would be refused (no values)."""
        purpose = purpose or self.purpose_for(actor)
        return await duplicates.preview(self, actor, first_id, second_id, purpose=purpose)

    async def merge_contacts(
        self,
        actor: Actor,
        survivor_id: str,
        merged_id: str,
        *,
        keep: Mapping[str, str] | None = None,
        purpose: str | None = None,
    ) -> duplicates.Merge:
        """Merge one contact into another in one audited transaction; undoable until
        confirmed. ``keep``: field -> "survivor" | "merged"."""
        purpose = purpose or self.purpose_for(actor)
        return await duplicates.merge(
            self, actor, survivor_id, merged_id, keep=keep, purpose=purpose
        )

    async def list_merges(
        self, actor: Actor, *, state: str | None = None, purpose: str | None = None
    ) -> builtins.list[duplicates.Merge]:
        """Merges of contacts in the actor's scope, newest first."""
        purpose = purpose or self.purpose_for(actor)
        return await duplicates.list_merges(self, actor, purpose=purpose, state=state)

    async def read_merge(
        self, actor: Actor, merge_id: str, *, purpose: str | None = None
    ) -> duplicates.Merge:
        purpose = purpose or self.purpose_for(actor)
        return await duplicates.read_merge(self, actor, merge_id, purpose=purpose)

    async def undo_merge(
        self, actor: Actor, merge_id: str, *, purpose: str | None = None
    ) -> duplicates.Merge:
        """Move back what a pending merge moved and show the merged contact again."""
        purpose = purpose or self.purpose_for(actor)
        return await duplicates.undo(self, actor, merge_id, purpose=purpose)

    async def confirm_merge(
        self, actor: Actor, merge_id: str, *, purpose: str | None = None
    ) -> duplicates.Merge:
        """Make a merge final: erase the merged contact (tombstone + shredded key)."""
        purpose = purpose or self.purpose_for(actor)
        return await duplicates.confirm(self, actor, merge_id, purpose=purpose)

    # --- CSV import and export (server.gateway.bulk; driven by server.csvio) ------------

    async def existing_values(
        self,
        actor: Actor,
        resource: str,
        field_name: str,
        values: Collection[str],
        *,
        purpose: str | None = None,
    ) -> dict[str, str]:
        """{canonical value: record id} of the values records in scope already hold: how an
        import recognises rows it has imported before, without reading the records."""
        return await bulk.existing_values(
            self,
            actor,
            resource,
            field_name,
            values,
            purpose=purpose or self.purpose_for(actor),
        )

    async def start_export(
        self,
        actor: Actor,
        resource: str,
        *,
        reason: str,
        purpose: str | None = None,
        filters: Mapping[str, Any] | None = None,
        page_size: int = bulk.EXPORT_PAGE_SIZE,
    ) -> bulk.Export:
        """Decide an export of the records in scope (a reason code is required); its
        ``pages()`` stream them, one audit event per page."""
        return await bulk.start_export(
            self,
            actor,
            resource,
            reason=reason,
            purpose=purpose or self.purpose_for(actor),
            filters=filters or {},
            page_size=page_size,
        )

    def _filter_conditions(
        self,
        rt: RecordType,
        table: type[Table],
        decision: AccessDecision,
        filters: Mapping[str, Any],
        *,
        any_aggregatable: bool = False,
    ) -> builtins.list[Any]:
        """SQL conditions for list filters (``filterable`` fields); ``any_aggregatable``
        widens them to every field stored in clear, for reports (``aggregate``)."""
        conditions: builtins.list[Any] = []
        problems: dict[str, str] = {}
        for name, value in filters.items():
            if value is None or value == "":
                continue
            if name in {"owner_id", "team"}:
                column = getattr(table, name)
                conditions.append(column == value)
                continue
            if name == "id":  # these records only (names for the ids on a page, in one list)
                try:
                    ids = [
                        uuid.UUID(str(v))
                        for v in (value if isinstance(value, list | tuple) else (value,))
                    ]
                except ValueError:
                    ids = []
                if ids:
                    conditions.append(table._meta.primary_key.is_in(ids))
                else:
                    problems["id"] = "must be one or more record ids"
                continue
            if name == "subject_id":  # one person's records, or a segment's people (ids only)
                try:
                    people = [
                        uuid.UUID(str(v))
                        for v in (value if isinstance(value, list | tuple) else (value,))
                    ]
                except ValueError:
                    problems["subject_id"] = "must be one or more subject ids"
                    continue
                column = getattr(table, "subject_id")
                # Nobody matches an empty list (IN () is not valid SQL).
                conditions.append(column.is_in(people) if people else column.is_null())
                continue
            bound = rt.by_name.get(name.removesuffix("_before"))
            if name.endswith("_before") and bound is not None and bound.kind in _MOMENTS:
                # "<field>_before": a date or time strictly earlier (tasks due by a moment).
                condition = self._before_condition(rt, table, decision, bound, value, problems)
                if condition is not None:
                    conditions.append(condition)
                continue
            spec = rt.by_name.get(name)
            if spec is None or not (spec.aggregatable if any_aggregatable else spec.filterable):
                problems[shown_name(name)] = "not a filterable field"
            elif name not in decision.fields:
                problems[name] = "your role may not read this field"
            else:
                # One value (``==``) or several (a list or tuple: SQL ``IN``, e.g. a
                # segment's lifecycle_stage in {prospect, customer}); each one is checked.
                many = isinstance(value, list | tuple)
                wanted: builtins.list[Any] = []
                for one in value if many else (value,):
                    try:
                        cleaned = clean_values(
                            rt, {name: one}, partial=True, default_region=self.default_region
                        )
                    except InvalidValues as exc:
                        problems.update(exc.problems)
                        break
                    cond_value = cleaned[name]
                    wanted.append(uuid.UUID(cond_value) if spec.kind == "reference" else cond_value)
                else:
                    if not wanted:
                        problems[name] = "give at least one value"
                    elif many:
                        conditions.append(getattr(table, name).is_in(wanted))
                    else:
                        conditions.append(getattr(table, name) == wanted[0])
        if problems:
            raise InvalidInput(
                "invalid filter: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
                problems=problems,
            )
        return conditions

    def _before_condition(
        self,
        rt: RecordType,
        table: type[Table],
        decision: AccessDecision,
        spec: Field,
        value: Any,
        problems: dict[str, str],
    ) -> Any:
        name = f"{spec.name}_before"
        if not spec.filterable or spec.encrypted:
            problems[name] = "not a filterable field"
        elif spec.name not in decision.fields:
            problems[name] = "your role may not read this field"
        else:
            try:
                cleaned = clean_values(
                    rt, {spec.name: value}, partial=True, default_region=self.default_region
                )
            except InvalidValues as exc:
                problems[name] = exc.problems[spec.name]
                return None
            moment = self._to_db(rt, cleaned)[spec.name]
            return getattr(table, spec.name) < moment
        return None

    @audits_bad_input(Action.SEARCH)
    async def search(
        self,
        actor: Actor,
        resource: str,
        field_name: str,
        value: str,
        *,
        purpose: str | None = None,
        limit: int = 20,
    ) -> builtins.list[Record]:
        """Exact lookup on a blind-indexed field; candidates are decrypted and re-checked."""
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        # Searching by a field you may not read would turn the index into an oracle.
        spec, decision, wanted = await self._exact_lookup(
            actor, rt, Action.SEARCH, purpose, field_name, value, "field_not_readable"
        )
        rows, keys, candidates = await self._exact_candidates(
            rt, table, spec, value, wanted, decision, actor
        )
        matches = [
            self._materialize(rt, row, keys.get(str(row["subject_id"])), decision.fields)
            for row in rows[:limit]
        ]
        await self._audit(
            actor,
            rt,
            Action.SEARCH,
            Outcome.ALLOWED,
            purpose,
            subject_ids=tuple(m.subject_id for m in matches),
            fields=decision.fields,
            detail={"by": field_name, "candidates": candidates, "returned": len(matches)},
        )
        return matches

    @audits_bad_input(Action.SEARCH)
    async def search_names(
        self,
        actor: Actor,
        resource: str,
        term: str,
        *,
        purpose: str | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> name_search.NameHits:
        """Name search over one record type (server.gateway.search): ranked, scoped,
        audited with the ids returned, never with the term."""
        return await name_search.search_names(
            self,
            actor,
            resource,
            term,
            purpose=purpose or self.purpose_for(actor),
            page=page,
            page_size=page_size,
        )

    async def search_everything(
        self,
        actor: Actor,
        term: str,
        *,
        purpose: str | None = None,
        types: Sequence[str] = name_search.SEARCH_TYPES,
        per_type: int = 5,
    ) -> builtins.list[name_search.NameHits]:
        """The first name-search matches of every type this actor may search."""
        return await name_search.search_everything(
            self,
            actor,
            term,
            purpose=purpose or self.purpose_for(actor),
            types=types,
            per_type=per_type,
        )

    async def reindex_names(
        self,
        actor: Actor,
        *,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, int]:
        """Recompute every name-search token (``consentry search reindex``): after a
        restore or an index-key change, and to back-fill records written before name
        search existed. Audited per record type with the count."""
        return await name_index.rebuild_all(self, actor, batch_size=batch_size, progress=progress)

    async def name_index_missing(self) -> bool:
        """Records exist but have no name-search tokens yet (see ``reindex_names``)."""
        return await name_index.missing()

    async def name_index_size(self) -> int:
        """Records a full reindex reads (for its progress bar)."""
        return await name_index.count_records()

    async def _exact_lookup(
        self,
        actor: Actor,
        rt: RecordType,
        action: str,
        purpose: str,
        field_name: str,
        value: str,
        field_refused: str,
    ) -> tuple[Field, AccessDecision, str]:
        """Check an exact lookup by ``field_name``: the field has a blind index, the role may
        take ``action`` with that field (else an audited denial), and the value is valid."""
        spec = rt.by_name.get(field_name)
        if spec is None or not spec.blind_index:
            searchable = [f.name for f in rt.fields if f.blind_index]
            raise InvalidInput(
                f"{rt.resource} can be looked up by: " + ", ".join(searchable),
                problems={field_name: "not searchable"},
            )
        decision = self._decide(actor, rt, action, purpose)
        if not decision.allowed or field_name not in decision.fields:
            raise await self._deny(
                actor,
                rt,
                action,
                purpose,
                decision.reason if not decision.allowed else field_refused,
                Forbidden(f"your role may not {action} {rt.resource} records by {field_name}"),
                fields=(field_name,),
            )
        try:
            wanted = self.vault.normalize(spec, value)
        except (ValueError, InvalidValues):
            raise InvalidInput(
                f"{field_name}: not a valid {spec.label.lower()}",
                problems={field_name: "invalid value"},
            ) from None
        return spec, decision, wanted

    async def _exact_candidates(
        self,
        rt: RecordType,
        table: type[Table],
        spec: Field,
        value: str,
        wanted: str,
        decision: AccessDecision,
        actor: Actor,
    ) -> tuple[builtins.list[dict[str, Any]], dict[str, DataKey], int]:
        """Rows in scope whose blind index matches, re-checked after decryption (the index
        is truncated, so some candidates are false positives and must be dropped)."""
        token = self.vault.index_token(rt, spec, value)
        query = table.select().where(getattr(table, spec.index_column) == token)
        scoped = self._scoped(query, table, decision, actor)
        rows = await (await self._with_basis(scoped, table, decision.purpose)).limit(1000)
        keys = await self.vault.keys_for(str(r["subject_id"]) for r in rows)
        matches = []
        for row in rows:
            key = keys.get(str(row["subject_id"]))
            plain = row[spec.name] and self._decrypt(rt, spec, str(row["id"]), key, row[spec.name])
            if plain and self.vault.normalize(spec, plain) == wanted:
                matches.append(row)
        return matches, keys, len(rows)

    async def locate(
        self,
        actor: Actor,
        resource: str,
        field_name: str,
        value: str,
        *,
        purpose: str | None = None,
    ) -> builtins.list[tuple[str, str]]:
        """(record id, subject id) of the records whose e-mail or phone is exactly ``value``.

        For compliance officers, who must find the person a request is about without
        reading any record: nothing is decrypted for them but the field being matched, and
        nothing but ids is returned. Allowed by the policy action ``locate`` on the record
        and on the field; audited with the subjects found.
        """
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        spec, decision, wanted = await self._exact_lookup(
            actor, rt, "locate", purpose, field_name, value, "field_not_locatable"
        )
        rows, _, _ = await self._exact_candidates(rt, table, spec, value, wanted, decision, actor)
        found = [(str(row["id"]), str(row["subject_id"])) for row in rows]
        await self._audit(
            actor,
            rt,
            "locate",
            Outcome.ALLOWED,
            purpose,
            subject_ids=tuple(subject for _, subject in found),
            fields=(field_name,),
            detail={"by": field_name, "returned": len(found)},
        )
        return found

    async def locate_people(
        self, actor: Actor, field_name: str, value: str, *, purpose: str | None = None
    ) -> builtins.list[tuple[str, str, str]]:
        """(record type, record id, subject id) of every person (each of the data map's
        ``PERSON_TYPES``: contacts, leads) whose e-mail or phone is exactly ``value``; one
        audited ``locate`` per type. How a request by e-mail or phone finds its person,
        whether they became a customer or only filled in a form."""
        return [
            (rt.resource, record_id, subject_id)
            for rt in PERSON_TYPES
            for record_id, subject_id in await self.locate(
                actor, rt.resource, field_name, value, purpose=purpose
            )
        ]

    async def subject_records(
        self, actor: Actor, resource: str, subject_id: str, *, purpose: str | None = None
    ) -> builtins.list[str]:
        """Ids of the living records of ``resource`` that carry this subject id, oldest
        first; nothing is decrypted. How the portal and the request workflow find a
        person's own record from the subject id they signed in with. Allowed by the
        policy action ``locate``; audited with the subject."""
        rt, table = self._record_type(resource)
        purpose = purpose or self.default_purpose(actor.role)
        try:
            subject = uuid.UUID(str(subject_id))
        except ValueError:
            raise InvalidInput("not a subject id", problems={"subject_id": "not a UUID"}) from None
        decision = self._decide(actor, rt, "locate", purpose)
        if not decision.allowed:
            raise await self._deny(
                actor,
                rt,
                "locate",
                purpose,
                decision.reason,
                Forbidden(f"your role may not locate {rt.resource} records"),
                subject_ids=(str(subject),),
            )
        query = table.select(table._meta.primary_key).where(getattr(table, "subject_id") == subject)
        query = erasure.living(self._scoped(query, table, decision, actor), rt, table)
        rows = await query.order_by(getattr(table, "created_at")).limit(100)
        found = [str(row["id"]) for row in rows]
        await self._audit(
            actor,
            rt,
            "locate",
            Outcome.ALLOWED,
            purpose,
            subject_ids=(str(subject),),
            detail={"by": "subject_id", "returned": len(found)},
        )
        return found

    @audits_bad_input(Action.CREATE)
    async def create(
        self,
        actor: Actor,
        resource: str,
        values: Mapping[str, Any],
        *,
        purpose: str | None = None,
        owner_id: int | None = None,
        team: str | None = None,
    ) -> Record:
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        decision = self._decide(actor, rt, "create", purpose)
        if not decision.allowed:
            raise await self._deny(
                actor,
                rt,
                Action.CREATE,
                purpose,
                decision.reason,
                Forbidden(f"your role may not create {rt.resource} records"),
            )
        await self._refuse_new_person(actor, rt, Action.CREATE, purpose)
        cleaned = await self._clean(actor, rt, Action.CREATE, purpose, values, partial=False)
        await self._check_writable(actor, rt, Action.CREATE, purpose, decision, cleaned)
        ownership = await self._settle_ownership(
            actor, rt, Action.CREATE, purpose, decision, None, owner_id, team
        )
        owner, record_team = ownership.owner_id, ownership.team
        referenced = await self._check_references(actor, rt, cleaned, purpose)
        subject_of_source = self._source_subject(rt, cleaned, referenced)
        self._require_same_subject(rt, cleaned, referenced, subject_of_source)
        now = dt.datetime.now(dt.UTC)
        row_id = str(uuid.uuid4())
        try:
            async with db.write_transaction():
                if rt.subject_from is None or cleaned.get(rt.subject_from) is None:
                    key = await self.vault.new_subject(rt.resource)  # its own subject
                else:
                    source = referenced[(rt.subject_from, str(cleaned[rt.subject_from]))]
                    key = (await self._subject_keys(rt, [str(source["subject_id"])]))[0]
                columns = self.vault.encrypt_values(rt, row_id, key, cleaned)
                await table.insert(
                    table(
                        id=uuid.UUID(row_id),
                        subject_id=uuid.UUID(key.subject_id),
                        owner_id=owner,
                        team=record_team,
                        created_at=now,
                        updated_at=now,
                        **self._to_db(rt, columns),
                    )
                ).run()
                await name_index.write_new(self.vault, rt, [(row_id, cleaned)])
                await mention_index.write_new(self.vault, rt, [(row_id, cleaned)])
                await self._recheck(actor, rt, table, row_id, purpose)
                event = self._event(
                    actor, rt, Action.CREATE, purpose, row_id, (key.subject_id,), tuple(cleaned)
                )
                await self.audit.append(
                    self._with_ownership(event, starting_ownership(actor), ownership)
                )
        except OutsideScope as exc:  # rolled back; the refusal is audited like any denial
            raise await self._deny(
                actor, rt, Action.CREATE, purpose, exc.reason, exc, fields=tuple(cleaned)
            ) from None
        row = {
            "id": row_id,
            "subject_id": key.subject_id,
            "owner_id": owner,
            "team": record_team,
            "created_at": now,
            "updated_at": now,
            **cleaned,
        }
        readable = (await self._read_decision(actor, rt, purpose)).fields
        return self._materialize_plain(rt, row, readable)

    @audits_bad_input(Action.CREATE)
    async def create_many(
        self,
        actor: Actor,
        resource: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        purpose: str | None = None,
        owner_id: int | None = None,
        team: str | None = None,
    ) -> BulkResult:
        """Create many records in one transaction: the bulk path for imports and loaders.

        Rows that fail validation are reported by index and skipped; the valid rows are
        written together with a single audit event naming every subject created. Either
        all valid rows and their audit event are committed, or nothing is.
        """
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        decision = self._decide(actor, rt, "create", purpose)
        if not decision.allowed:
            raise await self._deny(
                actor,
                rt,
                Action.CREATE,
                purpose,
                decision.reason,
                Forbidden(f"your role may not create {rt.resource} records"),
                detail={"rows": len(rows)},
            )
        await self._refuse_new_person(actor, rt, Action.CREATE, purpose)
        ownership = await self._settle_ownership(
            actor, rt, Action.CREATE, purpose, decision, None, owner_id, team
        )
        good: list[dict[str, Any]] = []
        good_rows: list[int] = []  # the input index of each good row
        rejected: dict[int, dict[str, str]] = {}
        for index, values in enumerate(rows):
            try:
                cleaned = await self._cleaned(rt, values, partial=False)
            except InvalidValues as exc:
                rejected[index] = exc.problems
                continue
            hidden = sorted(set(cleaned) - decision.fields)
            if hidden:
                rejected[index] = dict.fromkeys(hidden, "your role may not set this field")
                continue
            good.append(cleaned)
            good_rows.append(index)
        referenced: dict[tuple[str, str], Mapping[str, Any]] = {}
        for cleaned in good:
            wanted = {
                name: value
                for name, value in cleaned.items()
                if (rt.by_name[name].references or rt.by_name[name].references_from)
                and value
                and (name, str(value)) not in referenced
            }
            for name in list(wanted):  # a typed reference needs its type field alongside
                type_field = rt.by_name[name].references_from
                if type_field is not None:
                    wanted[type_field] = cleaned.get(type_field)
            referenced |= await self._check_references(actor, rt, wanted, purpose)
        if rt.same_subject:
            kept: list[dict[str, Any]] = []
            for index, cleaned in zip(good_rows, good, strict=True):
                subject = self._source_subject(rt, cleaned, referenced)
                problems = self._same_subject_problems(rt, cleaned, referenced, subject)
                if problems:
                    rejected[index] = problems
                else:
                    kept.append(cleaned)
            good = kept
        owner, record_team = ownership.owner_id, ownership.team
        now = dt.datetime.now(dt.UTC)
        ids: builtins.list[str] = []
        if good:
            try:
                async with db.write_transaction():
                    sources = [self._source_subject(rt, v, referenced) for v in good]
                    known = [s for s in sources if s is not None]
                    held = iter(await self._subject_keys(rt, known) if known else [])
                    fresh = iter(
                        await self.vault.new_subjects(rt.resource, len(sources) - len(known))
                    )
                    keys = [next(fresh) if s is None else next(held) for s in sources]
                    instances = []
                    for cleaned, key in zip(good, keys, strict=True):
                        row_id = str(uuid.uuid4())
                        ids.append(row_id)
                        columns = self.vault.encrypt_values(rt, row_id, key, cleaned)
                        instances.append(
                            table(
                                id=uuid.UUID(row_id),
                                subject_id=uuid.UUID(key.subject_id),
                                owner_id=owner,
                                team=record_team,
                                created_at=now,
                                updated_at=now,
                                **self._to_db(rt, columns),
                            )
                        )
                    await db.insert_all(table, instances)
                    await name_index.write_new(self.vault, rt, zip(ids, good, strict=True))
                    await mention_index.write_new(self.vault, rt, zip(ids, good, strict=True))
                    if ids:
                        await self._recheck(actor, rt, table, ids[0], purpose)
                    fields = sorted({name for cleaned in good for name in cleaned})
                    await self.audit.append(
                        audit_event(
                            actor_id=actor.id,
                            actor_role=actor.role,
                            action=Action.CREATE,
                            resource_type=rt.resource,
                            outcome=Outcome.ALLOWED,
                            purpose=purpose,
                            subject_ids=tuple(dict.fromkeys(k.subject_id for k in keys)),
                            fields=tuple(fields),
                            reason="allowed",
                            request_id=actor.request_id,
                            detail={
                                "rows": len(ids),
                                "rejected": len(rejected),
                                **change_detail(starting_ownership(actor), ownership),
                            },
                        )
                    )
            except OutsideScope as exc:  # rolled back; the refusal is audited like any denial
                raise await self._deny(
                    actor,
                    rt,
                    Action.CREATE,
                    purpose,
                    exc.reason,
                    exc,
                    detail={"rows": len(good)},
                ) from None
        return BulkResult(created=ids, rejected=rejected)

    @audits_bad_input(Action.UPDATE)
    async def update(
        self,
        actor: Actor,
        resource: str,
        record_id: str,
        values: Mapping[str, Any],
        *,
        purpose: str | None = None,
        owner_id: int | None = None,
        team: str | None = None,
    ) -> Record:
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        decision = self._decide(actor, rt, "update", purpose)
        if not decision.allowed:
            raise await self._deny(
                actor,
                rt,
                Action.UPDATE,
                purpose,
                decision.reason,
                NotFound(f"{rt.resource} not found"),
                record_id=str(record_id),
                subject_ids=await self._subject_of(table, record_id),
            )
        row = await self._find(table, decision, actor, record_id)
        if row is None:
            raise await self._deny(
                actor,
                rt,
                Action.UPDATE,
                purpose,
                "not_found_or_out_of_scope",
                NotFound(f"{rt.resource} not found"),
                record_id=str(record_id),
                subject_ids=await self._subject_of(table, record_id),
            )
        await self._require_basis(actor, rt, Action.UPDATE, purpose, row)
        if erasure.is_tombstone(rt, row):
            raise Conflict(f"this {rt.resource} has been erased and cannot be changed")
        subject = (str(row["subject_id"]),)
        cleaned = await self._clean(
            actor,
            rt,
            Action.UPDATE,
            purpose,
            values,
            partial=True,
            record_id=str(row["id"]),
            subject_ids=subject,
            current=row,
        )
        await self._check_writable(
            actor,
            rt,
            Action.UPDATE,
            purpose,
            decision,
            cleaned,
            record_id=str(row["id"]),
            subject_ids=subject,
        )
        source = rt.subject_from
        # The fields that say whose record this is; a note's type field with its id.
        fixed = [] if source is None else [source, rt.by_name[source].references_from]
        for name in (n for n in fixed if n is not None):
            if name in cleaned and str(cleaned[name]) != str(row[name]):
                raise InvalidInput(
                    f"{name}: cannot be changed; a {rt.resource} stays with the person it is "
                    f"about (create a new {rt.resource} for someone else)",
                    problems={name: "cannot be changed"},
                )
        references = dict(cleaned)
        for spec in rt.fields:  # a typed reference is checked against its stored type
            if spec.references_from and spec.name in references:
                references.setdefault(spec.references_from, row[spec.references_from])
        found = await self._check_references(actor, rt, references, purpose)
        self._require_same_subject(rt, cleaned, found, subject[0])
        row_id = str(row["id"])
        before = Ownership(int(row["owner_id"]), str(row["team"]))
        after = await self._settle_ownership(
            actor, rt, Action.UPDATE, purpose, decision, before, owner_id, team,
            record_id=row_id, subject_ids=subject,
        )  # fmt: skip
        try:
            async with db.write_transaction():
                keys = await self.vault.keys_for(subject)
                if subject[0] not in keys:
                    raise Conflict(f"this {rt.resource} has been erased and cannot be changed")
                columns = self.vault.encrypt_values(rt, row_id, keys[subject[0]], cleaned)
                changes: dict[Any, Any] = {
                    getattr(table, k): v for k, v in self._to_db(rt, columns).items()
                }
                changes[getattr(table, "updated_at")] = dt.datetime.now(dt.UTC)
                if after != before:
                    changes[getattr(table, "owner_id")] = after.owner_id
                    changes[getattr(table, "team")] = after.team
                await table.update(changes).where(table._meta.primary_key == uuid.UUID(row_id))
                await name_index.write(self.vault, rt, [(row_id, cleaned)])
                await mention_index.write(self.vault, rt, [(row_id, cleaned)])
                await self._recheck(actor, rt, table, row_id, purpose)
                event = self._event(
                    actor, rt, Action.UPDATE, purpose, row_id, subject, tuple(cleaned)
                )
                await self.audit.append(self._with_ownership(event, before, after))
        except OutsideScope as exc:  # rolled back; the refusal is audited like any denial
            raise await self._deny(
                actor,
                rt,
                Action.UPDATE,
                purpose,
                exc.reason,
                exc,
                record_id=row_id,
                subject_ids=subject,
                fields=tuple(cleaned),
            ) from None
        return await self._reload(actor, rt, table, row_id, purpose)

    @audits_bad_input(Action.DELETE)
    async def delete(
        self, actor: Actor, resource: str, record_id: str, *, purpose: str | None = None
    ) -> None:
        """Delete a record; a record that is its own subject (a contact, an organization)
        also has its data key shredded, so no copy stays readable. A record about someone
        else (a deal, an interaction, a case) is sealed under that person's key, which
        must survive: only deleting or erasing the person shreds it."""
        rt, table = self._record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        decision = self._decide(actor, rt, "delete", purpose)
        found = await self._find(table, decision, actor, record_id) if decision.allowed else None
        if found is None:
            raise await self._deny(
                actor,
                rt,
                Action.DELETE,
                purpose,
                decision.reason if not decision.allowed else "not_found_or_out_of_scope",
                NotFound(f"{rt.resource} not found"),
                record_id=str(record_id),
                subject_ids=await self._subject_of(table, record_id),
            )
        await self._require_basis(actor, rt, Action.DELETE, purpose, found)
        row_id = str(found["id"])
        subject = (str(found["subject_id"]),)
        dependants = await self._referencing(rt, row_id)
        if dependants:
            raise Conflict(
                f"this {rt.resource} still has "
                + ", ".join(f"{n} {name}(s)" for name, n in dependants.items())
                + "; move or delete them first"
            )
        async with db.write_transaction():
            await table.delete().where(table._meta.primary_key == uuid.UUID(row_id))
            await name_index.clear(rt, [row_id])
            await mention_index.clear(rt, [row_id])
            # A converted lead and its contact share one key: shred it with the last. A
            # record with an empty subject source (a task about nobody) has its own key.
            own_subject = rt.subject_from is None or found[rt.subject_from] is None
            if own_subject and not await leads.subject_still_held(subject[0]):
                await self.vault.shred_subject(subject[0])
            await self.audit.append(
                self._event(actor, rt, Action.DELETE, purpose, row_id, subject, ())
            )

    # --- write helpers ------------------------------------------------------------------------

    async def _settle_ownership(
        self,
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
                self.staff,
                current or starting_ownership(actor),
                owner_id=owner_id,
                team=team,
            )
        except OwnershipRefused as exc:
            asked: dict[str, int | str] = {} if owner_id is None else {"owner_asked": owner_id}
            raise await self._deny(
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

    @staticmethod
    def _with_ownership(event: AuditEvent, before: Ownership, after: Ownership) -> AuditEvent:
        """An allowed write's event, naming the change of hands if there was one."""
        moved = change_detail(before, after)
        if not moved:
            return event
        fields = {*event.fields, "owner_id", "team"}
        return dataclasses.replace(
            event, fields=tuple(sorted(fields)), detail={**event.detail, **moved}
        )

    def _event(
        self,
        actor: Actor,
        rt: RecordType,
        action: str,
        purpose: str,
        record_id: str,
        subject_ids: tuple[str, ...],
        fields: tuple[str, ...],
    ) -> AuditEvent:
        return allowed_event(
            actor, action, rt.resource, purpose, subject_ids, record_id=record_id, fields=fields
        )

    async def _clean(
        self,
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
        try:
            return await self._cleaned(rt, values, partial=partial, current=current)
        except InvalidValues as exc:
            await self._audit(
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

    async def _cleaned(
        self,
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
            cleaned = clean_values(rt, values, partial=partial, default_region=self.default_region)
        except InvalidValues as exc:
            problems = dict(exc.problems)
            cleaned = {k: v for k, v in values.items() if k in rt.by_name and k not in problems}
        rule = self.record_rules.get(rt.resource)
        if rule is not None:
            for name, problem in (await rule(cleaned, current)).items():
                problems.setdefault(name, problem)
        if problems:
            raise InvalidValues(problems)
        return cleaned

    async def _check_writable(
        self,
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
        forbidden = sorted(set(cleaned) - decision.fields)
        if forbidden:
            raise await self._deny(
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

    async def _check_references(
        self, actor: Actor, rt: RecordType, cleaned: Mapping[str, Any], purpose: str
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
            target_rt, target_table = self._record_type(target)
            decision = self._decide(actor, target_rt, "read", purpose)
            row = (
                await self._find(target_table, decision, actor, str(value))
                if decision.allowed
                else None
            )
            if row is None:
                raise InvalidInput(
                    f"{spec.name}: no such {target}", problems={spec.name: f"no such {target}"}
                )
            found[(spec.name, str(value))] = row
        return found

    @staticmethod
    def _same_subject_problems(
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

    def _require_same_subject(
        self,
        rt: RecordType,
        cleaned: Mapping[str, Any],
        found: Mapping[tuple[str, str], Mapping[str, Any]],
        subject: str | None,
    ) -> None:
        problems = self._same_subject_problems(rt, cleaned, found, subject)
        if problems:
            raise InvalidInput(
                "invalid input: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
                problems=problems,
            )

    def _source_subject(
        self,
        rt: RecordType,
        cleaned: Mapping[str, Any],
        found: Mapping[tuple[str, str], Mapping[str, Any]],
    ) -> str | None:
        """The subject a new record takes from its source reference; None: its own."""
        if rt.subject_from is None or cleaned.get(rt.subject_from) is None:
            return None
        return str(found[(rt.subject_from, str(cleaned[rt.subject_from]))]["subject_id"])

    async def _subject_keys(
        self, rt: RecordType, subjects: Sequence[str]
    ) -> builtins.list[DataKey]:
        """The data keys of the people these new records are about (inside the write
        transaction, so a concurrent erasure either happened before or waits)."""
        keys = await self.vault.keys_for(subjects)
        missing = [s for s in subjects if s not in keys]
        if missing:
            raise Conflict(
                f"the person this {rt.resource} is about has been erased; "
                f"no {rt.resource} can be added for them"
            )
        return [keys[s] for s in subjects]

    async def _referencing(self, rt: RecordType, row_id: str) -> dict[str, int]:
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

    async def _recheck(
        self, actor: Actor, rt: RecordType, table: type[Table], row_id: str, purpose: str
    ) -> None:
        """After a write, the actor must still be able to see the record; else roll back."""
        decision = self._decide(actor, rt, "read", purpose)
        if not decision.allowed or await self._find(table, decision, actor, row_id) is None:
            raise OutsideScope(
                f"this change would move the {rt.resource} outside the records you can see"
            )

    async def _reload(
        self, actor: Actor, rt: RecordType, table: type[Table], row_id: str, purpose: str
    ) -> Record:
        decision = await self._read_decision(actor, rt, purpose)
        row = await table.select().where(table._meta.primary_key == uuid.UUID(row_id)).first()
        if row is None:
            raise NotFound(f"{rt.resource} not found")
        keys = await self.vault.keys_for([str(row["subject_id"])])
        return self._materialize(rt, row, keys.get(str(row["subject_id"])), decision.fields)

    def _to_db(self, rt: RecordType, columns: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(columns)
        for spec in rt.fields:
            if spec.encrypted or not out.get(spec.name):
                continue
            if spec.kind is FieldKind.REFERENCE:
                out[spec.name] = uuid.UUID(out[spec.name])
            elif spec.kind is FieldKind.DATE:  # plaintext dates and times are typed columns
                out[spec.name] = dt.date.fromisoformat(out[spec.name])
            elif spec.kind is FieldKind.DATETIME:
                out[spec.name] = dt.datetime.fromisoformat(out[spec.name])
        return out

    def _materialize_plain(
        self, rt: RecordType, row: Mapping[str, Any], readable: frozenset[str]
    ) -> Record:
        values = {f.name: row.get(f.name) for f in rt.fields if f.name in readable}
        return Record(
            resource=rt.resource,
            id=str(row["id"]),
            subject_id=str(row["subject_id"]),
            owner_id=int(row["owner_id"]),
            team=str(row["team"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            values=values,
            restricted=tuple(f.name for f in rt.fields if f.name not in readable),
        )
