"""The gateway's side of CSV import and export: which of many key values already exist,
and a record list streamed page by page for an export file.

Import idempotency needs "which of these 500 e-mail addresses are already on file?"
answered without reading the records: :func:`existing_values` compares blind-index tokens
in SQL, decrypts only the matched field of the candidates to drop the index's false
positives, and returns record ids. It looks only inside the actor's record scope, like
every other lookup: a value held by a record the actor cannot see must not turn the
import report into an oracle for it.

An export is a list that is too big for one page. :class:`Export` decides once (the
``export`` action and its fields), then walks the records by keyset - ``(created_at, id)``
- so memory holds one page, and appends one audit event per page naming the subjects it
is about to hand out (fail closed: no event, no page), then a closing event with the
total. The reason is a code from :data:`EXPORT_REASONS`, never staff-typed text, so the
audit trail cannot end up carrying a customer's name typed into a reason box.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from audit.events import Action, Outcome
from policy.enforcer import AccessDecision
from server.datamap import RecordType
from server.gateway.actor import Actor
from server.gateway.errors import Forbidden, InvalidInput
from server.gateway.lifecycle import living
from server.gateway.tables import TABLES

if TYPE_CHECKING:
    from piccolo.table import Table

    from server.gateway.core import GatewayCore
    from server.gateway.results import Record

MATCH = "match"  # the audit action of an existence check by key values
LOOKUP_CHUNK = 500  # values per IN (...) list: well inside every engine's parameter limit
EXPORT_PAGE_SIZE = 500
# Why a file of customer data leaves the system. A choice, so the audit event carries a
# code a reviewer can count, and nothing anyone typed.
EXPORT_REASONS: Mapping[str, str] = {
    "reporting": "Internal reporting or analysis",
    "campaign_planning": "Planning a campaign",
    "data_migration": "Moving the data to another system",
    "backup": "An offline backup",
    "account_handover": "Handing accounts over to a colleague",
    "audit_request": "An auditor's or authority's request",
}
# Columns an export has besides the record's own fields (never personal values).
EXPORT_META_COLUMNS = ("id", "owner_id", "team", "created_at", "updated_at")


async def existing_values(
    gateway: GatewayCore,
    actor: Actor,
    resource: str,
    field_name: str,
    values: Collection[str],
    *,
    purpose: str,
) -> dict[str, str]:
    """{value: record id} for the given values of ``field_name`` that records in the
    actor's scope already hold. Values are compared in their canonical form (an e-mail
    lower-cased, a phone number in E.164), and are returned in that form.

    Needs the right to read the field; audited as one ``match`` event with the field name,
    how many values were asked and how many matched, and the matched subjects.
    """
    rt, table = gateway.record_type(resource)
    spec = rt.by_name.get(field_name)
    if spec is None or not (spec.blind_index or not spec.encrypted):
        raise InvalidInput(
            f"{rt.resource} records cannot be matched by {field_name}",
            problems={field_name: "not matchable"},
        )
    refusal = Forbidden(f"your role may not look up {rt.resource} records by {field_name}")
    op = await gateway.authorize(
        actor,
        resource,
        "read",
        purpose=purpose,
        audited_as=MATCH,
        fields=(field_name,),
        refusal=refusal,
    )
    decision = op.decision
    if field_name not in decision.fields:
        raise await gateway.deny(
            actor, rt, MATCH, purpose, "field_not_readable", refusal, fields=(field_name,)
        )
    found: dict[str, str] = {}
    subjects: list[str] = []
    wanted = list(dict.fromkeys(v for v in values if v))
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        if spec.encrypted:
            matches = await _encrypted_matches(gateway, rt, table, decision, actor, spec, chunk)
        else:
            column = getattr(table, field_name)
            query = table.select(table._meta.primary_key, getattr(table, "subject_id"), column)
            rows = await gateway.in_scope(query.where(column.is_in(chunk)), table, decision, actor)
            matches = [(str(r[field_name]), str(r["id"]), str(r["subject_id"])) for r in rows]
        for value, record_id, subject in matches:
            if value not in found:
                found[value] = record_id
                subjects.append(subject)
    await gateway.audit_access(
        actor,
        rt,
        MATCH,
        Outcome.ALLOWED,
        purpose,
        subject_ids=tuple(dict.fromkeys(subjects)),
        fields=(field_name,),
        detail={"by": field_name, "values": len(wanted), "matched": len(found)},
    )
    return found


async def _encrypted_matches(
    gateway: GatewayCore,
    rt: RecordType,
    table: type[Table],
    decision: AccessDecision,
    actor: Actor,
    spec: Any,
    chunk: builtins.list[str],
) -> builtins.list[tuple[str, str, str]]:
    """(canonical value, record id, subject id) for blind-index matches, re-checked after
    decrypting the one field (the index is truncated: some candidates are false)."""
    vault = gateway.vault
    canonical: set[str] = set()
    tokens: set[int] = set()
    for value in chunk:
        try:
            canonical.add(vault.normalize(spec, value))
        except ValueError:
            continue  # not a valid value cannot be on file
        tokens.add(vault.index_token(rt, spec, value))
    if not tokens:
        return []
    index = getattr(table, spec.index_column)
    query = table.select(
        table._meta.primary_key, getattr(table, "subject_id"), getattr(table, spec.name)
    ).where(index.is_in(sorted(tokens)))
    rows = await gateway.in_scope(query, table, decision, actor)
    keys = await vault.keys_for(str(r["subject_id"]) for r in rows)
    out: builtins.list[tuple[str, str, str]] = []
    for row in rows:
        key = keys.get(str(row["subject_id"]))
        token = row[spec.name]
        plain = token and gateway.decrypt_field(rt, spec, str(row["id"]), key, token)
        if not plain:
            continue
        value = vault.normalize(spec, plain)
        if value in canonical:
            out.append((value, str(row["id"]), str(row["subject_id"])))
    return out


@dataclass
class Export:
    """One export run: the decision taken, the columns it will have, and its pages.

    Made by :meth:`Gateway.start_export`; ``pages()`` may be iterated once.
    """

    gateway: GatewayCore
    actor: Actor
    rt: RecordType
    decision: AccessDecision
    purpose: str
    reason: str
    conditions: builtins.list[Any]
    filter_names: str
    page_size: int = EXPORT_PAGE_SIZE
    export_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    rows: int = 0

    @property
    def fields(self) -> tuple[str, ...]:
        """The record fields the file carries, in data-map order: only those the actor may
        read. A field they may not read has no column at all (not an empty one)."""
        return tuple(f.name for f in self.rt.fields if f.name in self.decision.fields)

    @property
    def columns(self) -> tuple[str, ...]:
        return (EXPORT_META_COLUMNS[0], *self.fields, *EXPORT_META_COLUMNS[1:])

    async def pages(self) -> AsyncIterator[builtins.list[Record]]:
        gateway, rt = self.gateway, self.rt
        table = TABLES[rt.resource]
        created, pk = getattr(table, "created_at"), table._meta.primary_key
        after: tuple[Any, uuid.UUID] | None = None
        number = 0
        while True:
            query = gateway.in_scope(table.select(), table, self.decision, self.actor)
            query = await gateway.with_basis(query, table, self.purpose)
            query = living(query, self.rt, table)
            for condition in self.conditions:
                query = query.where(condition)
            if after is not None:
                query = query.where(
                    (created > after[0]) | ((created == after[0]) & (pk > after[1]))
                )
            rows = await query.order_by(created, pk).limit(self.page_size)
            if not rows:
                break
            last = rows[-1]
            after = (last["created_at"], last["id"])
            keys = await gateway.vault.keys_for(str(r["subject_id"]) for r in rows)
            records = [
                gateway.materialize(rt, r, keys.get(str(r["subject_id"])), self.decision.fields)
                for r in rows
            ]
            records = [r for r in records if not r.erased]  # a tombstone has nothing to give
            number += 1
            await self._audit(
                tuple(dict.fromkeys(r.subject_id for r in records)),
                {"page": number, "rows": len(records)},
            )
            self.rows += len(records)
            yield records
            if len(rows) < self.page_size:
                break
        await self._audit((), {"pages": number, "rows": self.rows, "complete": "yes"})

    async def _audit(self, subjects: tuple[str, ...], detail: dict[str, int | str]) -> None:
        await self.gateway.audit_access(
            self.actor,
            self.rt,
            Action.EXPORT,
            Outcome.ALLOWED,
            self.purpose,
            subject_ids=subjects,
            fields=self.fields,
            detail={
                "export": self.export_id,
                "reason": self.reason,
                "filters": self.filter_names,
                **detail,
            },
        )


async def start_export(
    gateway: GatewayCore,
    actor: Actor,
    resource: str,
    *,
    reason: str,
    purpose: str,
    filters: Mapping[str, Any],
    page_size: int = EXPORT_PAGE_SIZE,
) -> Export:
    """Check everything an export needs before a byte is written: a reason from the list,
    the ``export`` right, valid filters. Refusals are audited."""
    rt, table = gateway.record_type(resource)
    if reason not in EXPORT_REASONS:
        raise InvalidInput(
            "an export needs a reason, one of: " + ", ".join(EXPORT_REASONS),
            problems={"reason": "missing" if not reason else "not one of the listed reasons"},
        )
    op = await gateway.authorize(
        actor, resource, Action.EXPORT, purpose=purpose, detail={"reason": reason}
    )
    decision = op.decision
    # "id": the records picked on a list page (export selected), within the scope as ever.
    picked = filters.get("id")
    filters = {k: v for k, v in filters.items() if k != "id"}
    conditions = gateway.filter_conditions(rt, table, decision, filters)
    if picked:
        try:
            ids = [
                uuid.UUID(str(i))
                for i in (picked if isinstance(picked, list | tuple) else [picked])
            ]
        except ValueError:
            raise InvalidInput("id: not a record id", problems={"id": "not a record id"}) from None
        conditions.append(table._meta.primary_key.is_in(ids))
        filters = {**filters, "id": "picked"}
    return Export(
        gateway=gateway,
        actor=actor,
        rt=rt,
        decision=decision,
        purpose=purpose,
        reason=reason,
        conditions=conditions,
        filter_names=",".join(sorted(k for k, v in filters.items() if v not in (None, ""))),
        page_size=page_size,
    )
