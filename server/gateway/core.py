"""The gateway core: the only path by which customer personal data is read or written.

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

:class:`GatewayCore` holds steps 1-4 as a small public interface - :meth:`authorize`
(the preamble every operation starts with), :meth:`deny`, :meth:`audit_access`, the
scope, basis and restriction conditions, :meth:`materialize` and :meth:`decrypt_field` -
that the operations (``server.gateway.reading``, ``server.gateway.writing``) and the
features beside them (duplicates, erasure, lead conversion, bulk import and export, name
search) are written in. Nothing outside this module reaches the core's private members
(tests/test_code_shape.py), and this module imports none of those features
(``lint-imports``).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from piccolo.table import Table

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import AccessDecision, Assign, PolicyEngine, Scope
from policy.scope import private_condition, scope_condition
from server.datamap import DEFAULT_PURPOSE, PURPOSES, RECORD_TYPES, Field, RecordType
from server.gateway.actor import Actor
from server.gateway.errors import Forbidden, GatewayError, InvalidInput, NotFound
from server.gateway.filters import filter_conditions
from server.gateway.hooks import (
    ExclusionCondition,
    MergeBlockers,
    RecordRule,
    SubjectBasis,
    SubjectRestrictions,
)
from server.gateway.lifecycle import is_tombstone, left_out, living, visible
from server.gateway.ownership import StaffDirectory
from server.gateway.results import OutsideScope, Record, plain_value
from server.gateway.tables import TABLES
from server.vault import DataKey, Vault
from server.vault.envelope import CiphertextError

P = ParamSpec("P")
T = TypeVar("T")
MAX_PAGE_SIZE = 100
# Deeper pages than this are never useful to a person and their OFFSET, page x page_size,
# must stay far inside a 64-bit integer (9223372036854775807 was a 500 on both engines).
MAX_PAGE = 1_000_000
# Record types private to their owner until shared (captured mail): table -> the field.
_PRIVATE_UNTIL = {TABLES[r]: rt.private_until for r, rt in RECORD_TYPES.items() if rt.private_until}
# The purposes a restricted person's data may still serve (Art. 18(2)): storage and the
# controller's legal obligations (requests, audits, legal holds).
STORAGE_PURPOSES = frozenset({"compliance"})
# What :meth:`GatewayCore.with_subject_state` adds to a row beside its columns: the
# person's wrapped data key and whether their processing is restricted.
KEY_COLUMN = "_subject_key"
RESTRICTED_COLUMN = "_subject_restricted"


def audits_bad_input(
    action: str,
) -> Callable[
    [Callable[Concatenate[Any, Actor, str, P], Awaitable[T]]],
    Callable[Concatenate[Any, Actor, str, P], Awaitable[T]],
]:
    """Audit every refused input (bad purpose, field list, filter, page, search value).

    Errors raised after the audit was already written (validation in ``clean``) are not
    logged twice. The audit row names fields only, never the rejected value.
    """

    def wrap(
        operation: Callable[Concatenate[Any, Actor, str, P], Awaitable[T]],
    ) -> Callable[Concatenate[Any, Actor, str, P], Awaitable[T]]:
        @functools.wraps(operation)
        async def guarded(
            self: GatewayCore, actor: Actor, resource: str, /, *args: P.args, **kwargs: P.kwargs
        ) -> T:
            try:
                return await operation(self, actor, resource, *args, **kwargs)
            except InvalidInput as exc:
                rt = RECORD_TYPES.get(resource)
                if rt is not None and not exc.audited:
                    purpose = kwargs.get("purpose")
                    await self.audit_access(
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


@dataclass(frozen=True)
class Operation:
    """What the preamble of an operation settled (:meth:`GatewayCore.authorize`): the
    record type and its table, the purpose it runs under and the policy's decision, which
    allowed it. Only ``authorize`` makes one, so holding one means the check was made."""

    rt: RecordType
    table: type[Table]
    purpose: str
    decision: AccessDecision


class GatewayCore:
    def __init__(
        self,
        vault: Vault,
        policy: PolicyEngine,
        audit: AuditLog,
        staff: StaffDirectory,
        *,
        default_region: str = "GB",
        subject_basis: SubjectBasis | None = None,
        restrictions: SubjectRestrictions | None = None,
        merge_blockers: MergeBlockers | None = None,
        record_rules: Mapping[str, RecordRule] | None = None,
    ) -> None:
        """The features the gateway asks before it touches a record come in here, from
        ``build_services``; one left out makes the gateway refuse what needs it (fail
        closed): without ``subject_basis`` (the consent engine) every purpose resting on a
        person's consent, without ``restrictions`` (server.dsr.restriction) everything but
        the storage purposes, without ``merge_blockers`` (server.dsr.registers) every merge.
        ``record_rules`` check a record type's values against configuration (deals:
        server.pipelines)."""
        self.vault = vault
        self.policy = policy
        self.audit = audit
        self.staff = staff  # who records may be handed to (server.gateway.ownership)
        self.default_region = default_region  # for phone numbers written without +country
        self.subject_basis = subject_basis
        self.restrictions = restrictions
        self.merge_blockers = merge_blockers
        self.record_rules: Mapping[str, RecordRule] = dict(record_rules or {})

    # --- policy questions (nothing touched, nothing audited) --------------------------------

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
        rt, _ = self.record_type(resource)
        decision = self.decide(actor, rt, action, purpose or self.purpose_for(actor))
        return decision.fields if decision.allowed else None

    def list_scope(self, actor: Actor, resource: str, *, purpose: str | None = None) -> Scope:
        """The record scope ``actor`` lists ``resource`` under (``Scope.NONE`` if refused): a
        policy question, e.g. whether an aggregate covers only the actor's own records
        (server.reports.small_groups). Nothing is touched, so nothing is audited."""
        rt, _ = self.record_type(resource)
        decision = self.decide(actor, rt, "list", purpose or self.purpose_for(actor))
        return decision.scope if decision.allowed else Scope.NONE

    def assignment(
        self, actor: Actor, resource: str, action: str, *, purpose: str | None = None
    ) -> Assign:
        """Whom ``actor`` may hand a record to on ``action`` (create or update): a policy
        question for building forms (an owner select only where it can be used)."""
        rt, _ = self.record_type(resource)
        decision = self.decide(actor, rt, action, purpose or self.purpose_for(actor))
        return decision.assign if decision.allowed else Assign.NONE

    def record_type(self, resource: str) -> tuple[RecordType, type[Table]]:
        """The data map's record type and its table; an unknown name is a 404, like a record
        that does not exist."""
        try:
            return RECORD_TYPES[resource], TABLES[resource]
        except KeyError:
            raise NotFound(f"unknown record type {resource!r}") from None

    def decide(self, actor: Actor, rt: RecordType, action: str, purpose: str) -> AccessDecision:
        """The policy's decision, asked exactly one way: every field of the record type, and
        the ones the data map lets this purpose use. An unregistered purpose is invalid
        input, never a silent default. Nothing is audited: callers that act on a refusal
        audit it (:meth:`deny`)."""
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

    # --- the preamble and the audit of outcomes ---------------------------------------------

    async def authorize(
        self,
        actor: Actor,
        resource: str,
        action: str,
        *,
        purpose: str | None = None,
        audited_as: str | None = None,
        record_id: str | None = None,
        subject_ids: tuple[str, ...] = (),
        fields: tuple[str, ...] = (),
        detail: dict[str, int | str] | None = None,
        refusal: GatewayError | None = None,
    ) -> Operation:
        """The preamble every operation starts with, written once: the record type, the
        purpose (the caller's, else the actor's default) and the policy's decision on
        ``action``.

        A refusal is audited (as ``audited_as``, default ``action``) and committed before
        the error is raised, so probing leaves a trace. About one record (``record_id``) it
        is a 404, the same answer as a missing record (404 before 403), and the audit trail
        still names the person the record is about; otherwise a 403 naming the action.
        ``refusal`` replaces that error where a feature words it its own way.
        """
        rt, table = self.record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        decision = self.decide(actor, rt, action, purpose)
        if not decision.allowed:
            if record_id is not None:
                error = refusal or NotFound(f"{rt.resource} not found")
                subject_ids = await self.subject_for_audit(table, record_id)
            else:
                error = refusal or Forbidden(f"your role may not {action} {rt.resource} records")
            raise await self.deny(
                actor,
                rt,
                audited_as or action,
                purpose,
                decision.reason,
                error,
                record_id=None if record_id is None else str(record_id),
                subject_ids=subject_ids,
                fields=fields,
                detail=detail,
            )
        return Operation(rt, table, purpose, decision)

    async def audit_access(
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
        """Audit an operation that has no write transaction of its own (a read, a refusal,
        bad input): committed, grouped with this worker's other events, before the caller
        returns anything (fail closed). Writes append their event inside their own
        transaction instead (``self.audit.append``)."""
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

    async def deny(
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
        """Audit a refusal and hand back ``error`` for the caller to raise (``raise await
        gw.deny(...)``), so no refusal reaches the caller unaudited."""
        await self.audit_access(
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

    # --- scope, restriction and basis: conditions in the WHERE ------------------------------

    def in_scope(
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
        return query if include_merged else visible(query, table)

    def with_subject_state(self, table: type[Table], *, restriction: bool = True) -> Any:
        """A SELECT of every column of ``table`` plus, per row, its person's wrapped data
        key (``KEY_COLUMN``, unwrapped by :meth:`key_of`) and restriction flag
        (``RESTRICTED_COLUMN``, read by :meth:`require_basis`), as correlated sub-selects:
        a record, its key and its person's restriction in one statement. Nothing is cached
        between requests, so a shredded key or a new restriction counts on the very next
        request in every worker. Without a restriction register there is no flag and
        :meth:`require_basis` fails closed as before; nor with ``restriction=False``, for
        a query whose WHERE leaves the restricted out already (:meth:`with_basis`)."""
        subject = getattr(table, "subject_id")
        selected: list[Any] = [
            *table._meta.columns,
            self.vault.key_column(subject).as_alias(KEY_COLUMN),
        ]
        if restriction and self.restrictions is not None:
            restricted = self.restrictions.restricted_column(subject)
            selected.append(restricted.as_alias(RESTRICTED_COLUMN))
        return table.select(*selected)

    def key_of(self, row: Mapping[str, Any]) -> DataKey | None:
        """The data key of a row read by :meth:`with_subject_state` (None: shredded)."""
        return self.vault.key_from_column(str(row["subject_id"]), row[KEY_COLUMN])

    async def find_in_scope(
        self,
        table: type[Table],
        decision: AccessDecision,
        actor: Actor,
        record_id: str,
        *,
        subject_state: bool = False,
    ) -> dict[str, Any] | None:
        """One row by id, looked up through the actor's scope: None whether it is missing
        or out of scope, so the two cannot be told apart. ``subject_state``: with its
        person's key and restriction in the same statement (:meth:`with_subject_state`)."""
        try:
            rid = uuid.UUID(str(record_id))
        except ValueError:
            return None
        select = self.with_subject_state(table) if subject_state else table.select()
        query = select.where(table._meta.primary_key == rid)
        row: dict[str, Any] | None = await self.in_scope(query, table, decision, actor).first()
        return row

    async def find_or_deny(
        self,
        actor: Actor,
        op: Operation,
        record_id: str,
        action: str,
        *,
        subject_state: bool = False,
    ) -> dict[str, Any]:
        """The row an authorized operation on one record acts on: in the actor's scope
        (else an audited 404, as if it did not exist) and about a person the purpose may
        still reach (else an audited 403: restricted, or no legal basis).
        ``subject_state``: as for :meth:`find_in_scope`."""
        row = await self.find_in_scope(
            op.table, op.decision, actor, record_id, subject_state=subject_state
        )
        if row is None:
            raise await self.deny(
                actor,
                op.rt,
                action,
                op.purpose,
                "not_found_or_out_of_scope",
                NotFound(f"{op.rt.resource} not found"),
                record_id=str(record_id),
                subject_ids=await self.subject_for_audit(op.table, record_id),
            )
        await self.require_basis(actor, op.rt, action, op.purpose, row)
        return row

    async def with_basis(self, query: Any, table: type[Table], purpose: str) -> Any:
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
        condition = await self._restriction(purpose)
        if condition is None:
            return query
        return query.where(condition.where(getattr(table, "subject_id")))

    async def _restriction(self, purpose: str) -> ExclusionCondition | None:
        """Who the restriction register leaves out under ``purpose``: no one under the
        storage-and-legal purposes; refused when there is no register to ask."""
        if purpose in STORAGE_PURPOSES:
            return None
        if self.restrictions is None:
            raise Forbidden(f"no restriction register: nothing may be processed for {purpose}")
        return await self.restrictions.unrestricted_subjects()

    async def count_reachable(
        self,
        rt: RecordType,
        table: type[Table],
        decision: AccessDecision,
        actor: Actor,
        purpose: str,
        conditions: Sequence[Any],
        *,
        include_erased: bool,
    ) -> int:
        """How many rows of ``table`` a list or count under ``purpose`` reaches: in the
        actor's scope and ``conditions``, not merged away, not erased (unless
        ``include_erased``), not restricted.

        Counted as all the rows in scope minus the few left out (merged, erased,
        restricted), each part disjoint from those before it, in one statement: a count
        that tests every row for those conditions walked a whole index (13 ms at 100,000
        contacts on SQLite), where a plain ``COUNT(*)`` reads no row (1.7 ms) and the few
        are found through their indexes. A purpose resting on each person's own consent
        reaches no "all but a few": it is counted with its audience in the WHERE."""
        if PURPOSES[purpose].per_subject:
            query = await self.with_basis(
                self.in_scope(table.count(), table, decision, actor), table, purpose
            )
            if not include_erased:
                query = living(query, rt, table)
            for condition in conditions:
                query = query.where(condition)
            return int(await query)

        def counted(*extra: Any) -> Any:
            query = self.in_scope(table.count(), table, decision, actor, include_merged=True)
            for condition in (*conditions, *extra):
                query = query.where(condition)
            return query

        kept: list[Any] = []
        parts: list[Any] = []
        for leaving, keeping in left_out(rt, table, include_erased=include_erased):
            parts.append(counted(*kept, leaving))
            kept.append(keeping)
        restriction = await self._restriction(purpose)
        if restriction is not None:
            parts.append(counted(*kept, restriction.excluded(getattr(table, "subject_id"))))
        queries = [counted(), *parts]
        total = " - ".join("({})" for _ in queries)
        rows = await table.raw(f'SELECT {total} AS "total"', *(q.querystrings[0] for q in queries))
        return int(rows[0]["total"])

    async def _require_unrestricted(
        self, actor: Actor, rt: RecordType, action: str, purpose: str, row: Mapping[str, Any]
    ) -> None:
        """One record of a restricted person, outside the storage purposes: refused (403,
        reason ``restricted``) and audited."""
        if purpose in STORAGE_PURPOSES:
            return
        subject = str(row["subject_id"])
        if RESTRICTED_COLUMN in row:  # read with the row (with_subject_state)
            restricted = bool(row[RESTRICTED_COLUMN])
        else:
            restricted = self.restrictions is None or await self.restrictions.is_restricted(subject)
        if not restricted:
            return
        raise await self.deny(
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

    async def require_basis(
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
        raise await self.deny(
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

    async def refuse_new_person(
        self, actor: Actor, rt: RecordType, action: str, purpose: str
    ) -> None:
        """Nobody new has consented to anything yet: records are created under a service
        purpose, and consent is recorded for them afterwards."""
        if PURPOSES[purpose].per_subject:
            raise await self.deny(
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

    async def subject_for_audit(self, table: type[Table], record_id: str) -> tuple[str, ...]:
        """Unscoped subject lookup, for the audit trail of a denial only (never returned):
        the person learns from their access report that someone tried."""
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

    async def recheck(
        self, actor: Actor, rt: RecordType, table: type[Table], row_id: str, purpose: str
    ) -> None:
        """After a write, inside its transaction: the actor must still be able to see the
        record, else ``OutsideScope`` rolls the write back (no write moves a record out of
        the writer's own reach)."""
        decision = self.decide(actor, rt, "read", purpose)
        if not decision.allowed or await self.find_in_scope(table, decision, actor, row_id) is None:
            raise OutsideScope(
                f"this change would move the {rt.resource} outside the records you can see"
            )

    def filter_conditions(
        self,
        rt: RecordType,
        table: type[Table],
        decision: AccessDecision,
        filters: Mapping[str, Any],
        *,
        any_aggregatable: bool = False,
    ) -> list[Any]:
        """SQL conditions for a caller's filters, each checked like a written value and
        refused for a field the actor may not read (server.gateway.filters)."""
        return filter_conditions(
            rt,
            table,
            decision,
            filters,
            default_region=self.default_region,
            any_aggregatable=any_aggregatable,
        )

    # --- decryption: only the permitted fields ----------------------------------------------

    def materialize(
        self,
        rt: RecordType,
        row: Mapping[str, Any],
        key: DataKey | None,
        readable: frozenset[str],
    ) -> Record:
        """A stored row as the actor may see it: the ``readable`` fields decrypted, the rest
        named as restricted and never decrypted; no key (shredded) or a tombstone row is an
        erased record."""
        values: dict[str, Any] = {}
        row_id = str(row["id"])
        for spec in rt.fields:
            if spec.name not in readable:
                continue
            raw = row.get(spec.name)
            if raw is None:
                values[spec.name] = None
            elif spec.encrypted:
                values[spec.name] = self.decrypt_field(rt, spec, row_id, key, raw)
            else:
                values[spec.name] = plain_value(raw)
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
            erased=key is None or is_tombstone(rt, row),
        )

    def decrypt_field(
        self, rt: RecordType, spec: Field, row_id: str, key: DataKey | None, token: str
    ) -> Any:
        """One stored value in clear, or None when it cannot be any more (the key was
        shredded, the ciphertext does not verify): erasure is final, never an error."""
        if key is None:  # the subject's key was shredded: the value is gone for good
            return None
        try:
            return self.vault.decrypt_value(rt, spec, row_id, key, token)
        except CiphertextError:
            return None
