"""The gateway's write operations: create, create_many, update and delete.

Each starts with the core's preamble (:meth:`GatewayCore.authorize`), passes the checks
of :mod:`server.gateway.write_checks` before anything is stored, and then, in one write
transaction: encrypts the values under the person's key, writes the row and its search
tokens, checks the actor can still see the result (else everything rolls back and the
refusal is audited) and appends the audit event. Either the change and its event are
committed together, or neither is.
"""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from piccolo.table import Table

from audit.events import Action, Outcome, audit_event
from server import db
from server.datamap import InvalidValues, RecordType
from server.gateway import mention_index, name_index
from server.gateway import write_checks as checks
from server.gateway.actor import Actor
from server.gateway.core import GatewayCore, Operation, audits_bad_input
from server.gateway.errors import Conflict, InvalidInput, NotFound
from server.gateway.events import allowed_event
from server.gateway.filters import to_db
from server.gateway.lifecycle import is_tombstone, subject_still_held
from server.gateway.ownership import Ownership, change_detail, starting_ownership
from server.gateway.results import BulkResult, OutsideScope, Record
from server.vault import DataKey

# One good row of a ``create_many``: its index in the input and its cleaned values.
_Row = tuple[int, dict[str, Any]]
_Found = dict[tuple[str, str], Mapping[str, Any]]  # referenced rows by (field, id)


class WriteOperations(GatewayCore):
    """Writes of customer data, each audited in its own transaction."""

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
        op = await self.authorize(actor, resource, Action.CREATE, purpose=purpose)
        rt, table, purpose = op.rt, op.table, op.purpose
        await self.refuse_new_person(actor, rt, Action.CREATE, purpose)
        cleaned = await checks.clean(self, actor, rt, Action.CREATE, purpose, values, partial=False)
        await checks.check_writable(self, actor, rt, Action.CREATE, purpose, op.decision, cleaned)
        ownership = await checks.settle_ownership(
            self, actor, rt, Action.CREATE, purpose, op.decision, None, owner_id, team
        )
        referenced = await checks.check_references(self, actor, rt, cleaned, purpose)
        source = checks.source_subject(rt, cleaned, referenced)
        checks.require_same_subject(rt, cleaned, referenced, source)
        now = dt.datetime.now(dt.UTC)
        row_id = str(uuid.uuid4())
        try:
            async with db.write_transaction():
                if source is None:
                    key = await self.vault.new_subject(rt.resource)  # its own subject
                else:
                    key = (await checks.subject_keys(self, rt, [source]))[0]
                await table.insert(self._new_row(op, row_id, key, cleaned, ownership, now)).run()
                await name_index.write_new(self.vault, rt, [(row_id, cleaned)])
                await mention_index.write_new(self.vault, rt, [(row_id, cleaned)])
                await self.recheck(actor, rt, table, row_id, purpose)
                event = allowed_event(
                    actor,
                    Action.CREATE,
                    rt.resource,
                    purpose,
                    (key.subject_id,),
                    record_id=row_id,
                    fields=tuple(cleaned),
                )
                await self.audit.append(
                    checks.with_ownership(event, starting_ownership(actor), ownership)
                )
        except OutsideScope as exc:  # rolled back; the refusal is audited like any denial
            raise await self.deny(
                actor, rt, Action.CREATE, purpose, exc.reason, exc, fields=tuple(cleaned)
            ) from None
        row = {
            "id": row_id,
            "subject_id": key.subject_id,
            "owner_id": ownership.owner_id,
            "team": ownership.team,
            "created_at": now,
            "updated_at": now,
            **cleaned,
        }
        readable = self.decide(actor, rt, "read", purpose).fields
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
        op = await self.authorize(
            actor, resource, Action.CREATE, purpose=purpose, detail={"rows": len(rows)}
        )
        await self.refuse_new_person(actor, op.rt, Action.CREATE, op.purpose)
        ownership = await checks.settle_ownership(
            self, actor, op.rt, Action.CREATE, op.purpose, op.decision, None, owner_id, team
        )
        rejected: dict[int, dict[str, str]] = {}
        good = await self._valid_rows(op, rows, rejected)
        referenced = await self._rows_references(actor, op, good)
        if op.rt.same_subject:
            good = self._same_subject_rows(op.rt, good, referenced, rejected)
        ids: builtins.list[str] = []
        if good:
            ids = await self._insert_rows(actor, op, good, referenced, ownership, len(rejected))
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
        op = await self.authorize(
            actor, resource, Action.UPDATE, purpose=purpose, record_id=record_id
        )
        rt, purpose = op.rt, op.purpose
        row = await self.find_or_deny(actor, op, record_id, Action.UPDATE, subject_state=True)
        if is_tombstone(rt, row):
            raise Conflict(f"this {rt.resource} has been erased and cannot be changed")
        cleaned = await self._checked_changes(actor, op, row, values)
        row_id = str(row["id"])
        subject = (str(row["subject_id"]),)
        before = Ownership(int(row["owner_id"]), str(row["team"]))
        after = await checks.settle_ownership(
            self, actor, rt, Action.UPDATE, purpose, op.decision, before, owner_id, team,
            record_id=row_id, subject_ids=subject,
        )  # fmt: skip
        try:
            async with db.write_transaction():
                await self._write_changes(actor, op, row_id, subject[0], cleaned, before, after)
        except OutsideScope as exc:  # rolled back; the refusal is audited like any denial
            raise await self.deny(
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
        return await self._reload(actor, rt, op.table, row_id, purpose)

    @audits_bad_input(Action.DELETE)
    async def delete(
        self, actor: Actor, resource: str, record_id: str, *, purpose: str | None = None
    ) -> None:
        """Delete a record; a record that is its own subject (a contact, an organization)
        also has its data key shredded, so no copy stays readable. A record about someone
        else (a deal, an interaction, a case) is sealed under that person's key, which
        must survive: only deleting or erasing the person shreds it."""
        op = await self.authorize(
            actor, resource, Action.DELETE, purpose=purpose, record_id=record_id
        )
        rt, table, purpose = op.rt, op.table, op.purpose
        found = await self.find_or_deny(actor, op, record_id, Action.DELETE, subject_state=True)
        row_id = str(found["id"])
        subject = (str(found["subject_id"]),)
        dependants = await checks.referencing(rt, row_id)
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
            if own_subject and not await subject_still_held(subject[0]):
                await self.vault.shred_subject(subject[0])
            await self.audit.append(
                allowed_event(actor, Action.DELETE, rt.resource, purpose, subject, record_id=row_id)
            )

    # --- steps of create_many -----------------------------------------------------------------

    async def _valid_rows(
        self,
        op: Operation,
        rows: Sequence[Mapping[str, Any]],
        rejected: dict[int, dict[str, str]],
    ) -> builtins.list[_Row]:
        """The rows the data map, the record rule and the role's writable fields accept;
        the others go to ``rejected`` by input index, with reasons and no values."""
        good: builtins.list[_Row] = []
        for index, values in enumerate(rows):
            try:
                cleaned = await checks.cleaned_values(self, op.rt, values, partial=False)
            except InvalidValues as exc:
                rejected[index] = exc.problems
                continue
            hidden = sorted(set(cleaned) - op.decision.fields)
            if hidden:
                rejected[index] = dict.fromkeys(hidden, "your role may not set this field")
                continue
            good.append((index, cleaned))
        return good

    async def _rows_references(self, actor: Actor, op: Operation, good: Sequence[_Row]) -> _Found:
        """Every record the good rows point at, each looked up once (one bad reference
        refuses the whole call, as for a single create)."""
        rt = op.rt
        referenced: _Found = {}
        for _, cleaned in good:
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
            referenced |= await checks.check_references(self, actor, rt, wanted, op.purpose)
        return referenced

    @staticmethod
    def _same_subject_rows(
        rt: RecordType,
        good: Sequence[_Row],
        referenced: _Found,
        rejected: dict[int, dict[str, str]],
    ) -> builtins.list[_Row]:
        """The rows whose references are about their own person; the others rejected."""
        kept: builtins.list[_Row] = []
        for index, cleaned in good:
            subject = checks.source_subject(rt, cleaned, referenced)
            problems = checks.same_subject_problems(rt, cleaned, referenced, subject)
            if problems:
                rejected[index] = problems
            else:
                kept.append((index, cleaned))
        return kept

    async def _insert_rows(
        self,
        actor: Actor,
        op: Operation,
        good: Sequence[_Row],
        referenced: _Found,
        ownership: Ownership,
        rejected: int,
    ) -> builtins.list[str]:
        """Write the good rows and one audit event naming every person, in one transaction;
        a row outside the actor's scope afterwards rolls back all of them (audited)."""
        rt, table, purpose = op.rt, op.table, op.purpose
        values = [cleaned for _, cleaned in good]
        now = dt.datetime.now(dt.UTC)
        ids: builtins.list[str] = []
        try:
            async with db.write_transaction():
                sources = [checks.source_subject(rt, v, referenced) for v in values]
                known = [s for s in sources if s is not None]
                held = iter(await checks.subject_keys(self, rt, known) if known else [])
                fresh = iter(await self.vault.new_subjects(rt.resource, len(sources) - len(known)))
                keys = [next(fresh) if s is None else next(held) for s in sources]
                instances = []
                for cleaned, key in zip(values, keys, strict=True):
                    row_id = str(uuid.uuid4())
                    ids.append(row_id)
                    instances.append(self._new_row(op, row_id, key, cleaned, ownership, now))
                await db.insert_all(table, instances)
                await name_index.write_new(self.vault, rt, zip(ids, values, strict=True))
                await mention_index.write_new(self.vault, rt, zip(ids, values, strict=True))
                if ids:
                    await self.recheck(actor, rt, table, ids[0], purpose)
                fields = sorted({name for cleaned in values for name in cleaned})
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
                            "rejected": rejected,
                            **change_detail(starting_ownership(actor), ownership),
                        },
                    )
                )
        except OutsideScope as exc:  # rolled back; the refusal is audited like any denial
            raise await self.deny(
                actor, rt, Action.CREATE, purpose, exc.reason, exc, detail={"rows": len(good)}
            ) from None
        return ids

    # --- steps of update ----------------------------------------------------------------------

    async def _checked_changes(
        self, actor: Actor, op: Operation, row: Mapping[str, Any], values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The changes as they will be stored, after every check a single write passes: valid,
        writable by the role, not moving the record to another person, and referring only
        to records the actor can read that are about the same person."""
        rt, purpose = op.rt, op.purpose
        subject = (str(row["subject_id"]),)
        cleaned = await checks.clean(
            self,
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
        await checks.check_writable(
            self,
            actor,
            rt,
            Action.UPDATE,
            purpose,
            op.decision,
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
        found = await checks.check_references(self, actor, rt, references, purpose)
        checks.require_same_subject(rt, cleaned, found, subject[0])
        return cleaned

    async def _write_changes(
        self,
        actor: Actor,
        op: Operation,
        row_id: str,
        subject: str,
        cleaned: Mapping[str, Any],
        before: Ownership,
        after: Ownership,
    ) -> None:
        """Inside the update's transaction: seal the changes under the person's key (gone:
        the person was erased meanwhile), write them and their search tokens, re-check the
        scope and append the event."""
        rt, table, purpose = op.rt, op.table, op.purpose
        keys = await self.vault.keys_for((subject,))
        if subject not in keys:
            raise Conflict(f"this {rt.resource} has been erased and cannot be changed")
        columns = self.vault.encrypt_values(rt, row_id, keys[subject], cleaned)
        changes: dict[Any, Any] = {getattr(table, k): v for k, v in to_db(rt, columns).items()}
        changes[getattr(table, "updated_at")] = dt.datetime.now(dt.UTC)
        if after != before:
            changes[getattr(table, "owner_id")] = after.owner_id
            changes[getattr(table, "team")] = after.team
        await table.update(changes).where(table._meta.primary_key == uuid.UUID(row_id))
        await name_index.write(self.vault, rt, [(row_id, cleaned)])
        await mention_index.write(self.vault, rt, [(row_id, cleaned)])
        await self.recheck(actor, rt, table, row_id, purpose)
        event = allowed_event(
            actor,
            Action.UPDATE,
            rt.resource,
            purpose,
            (subject,),
            record_id=row_id,
            fields=tuple(cleaned),
        )
        await self.audit.append(checks.with_ownership(event, before, after))

    # --- shared -------------------------------------------------------------------------------

    def _new_row(
        self,
        op: Operation,
        row_id: str,
        key: DataKey,
        cleaned: Mapping[str, Any],
        ownership: Ownership,
        now: dt.datetime,
    ) -> Table:
        """A new row with its personal fields sealed under the person's key, each bound to
        this table, column and row."""
        columns = self.vault.encrypt_values(op.rt, row_id, key, cleaned)
        return op.table(
            id=uuid.UUID(row_id),
            subject_id=uuid.UUID(key.subject_id),
            owner_id=ownership.owner_id,
            team=ownership.team,
            created_at=now,
            updated_at=now,
            **to_db(op.rt, columns),
        )

    async def _reload(
        self, actor: Actor, rt: RecordType, table: type[Table], row_id: str, purpose: str
    ) -> Record:
        decision = self.decide(actor, rt, "read", purpose)
        select = self.with_subject_state(table, restriction=False)  # the row and its key at once
        row = await select.where(table._meta.primary_key == uuid.UUID(row_id)).first()
        if row is None:
            raise NotFound(f"{rt.resource} not found")
        return self.materialize(rt, row, self.key_of(row), decision.fields)

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
