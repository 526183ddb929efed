"""The gateway's read operations: read, list, count, aggregate, behaviour, subject export,
exact search and locate.

Each starts with the core's preamble (:meth:`GatewayCore.authorize`), runs one query with
the record scope, restriction and consent compiled into its WHERE, decrypts only the
permitted fields and audits what it returned (ids, field names and counts; never a value)
before returning it.
"""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from piccolo.query.functions.aggregate import Count, Sum

from audit.events import Action, Outcome
from server.datamap import PERSON_TYPES, RECORD_TYPES, Field, InvalidValues
from server.gateway.actor import Actor
from server.gateway.core import (
    MAX_PAGE,
    MAX_PAGE_SIZE,
    GatewayCore,
    Operation,
    audits_bad_input,
)
from server.gateway.errors import Forbidden, InvalidInput
from server.gateway.lifecycle import living, visible
from server.gateway.results import Group, Page, Record, plain_value
from server.gateway.sorting import sort_order
from server.gateway.tables import TABLES
from server.vault import DataKey


class ReadOperations(GatewayCore):
    """Reads of customer data, each audited before it returns."""

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
        op = await self.authorize(
            actor, resource, Action.READ, purpose=purpose, record_id=record_id
        )
        rt, decision, purpose = op.rt, op.decision, op.purpose
        if fields is not None:
            unknown = [f for f in fields if f not in rt.by_name]
            if unknown:
                raise InvalidInput(
                    "unknown field(s): " + ", ".join(unknown),
                    problems=dict.fromkeys(unknown, "unknown field"),
                )
        row = await self.find_or_deny(actor, op, record_id, Action.READ, subject_state=True)
        subject = (str(row["subject_id"]),)
        if fields is not None:
            hidden = sorted(set(fields) - decision.fields)
            if hidden:
                raise await self.deny(
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
        record = self.materialize(rt, row, self.key_of(row), readable)
        await self.audit_access(
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
        self.record_type(resource)  # an unknown type is a 404 before any other answer
        purpose = purpose or self.purpose_for(actor)  # an unknown one: after the page check
        if not 1 <= page <= MAX_PAGE or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(
                f"page must be between 1 and {MAX_PAGE} and page_size between 1 and {MAX_PAGE_SIZE}"
            )
        op = await self.authorize(actor, resource, Action.LIST, purpose=purpose)
        rt, table, decision = op.rt, op.table, op.decision
        conditions = self.filter_conditions(rt, table, decision, filters or {})
        order = sort_order(rt, table, decision.fields, sort)
        key = table._meta.primary_key
        select = await self.with_basis(
            self.in_scope(table.select(key), table, decision, actor), table, purpose
        )
        if not include_erased:
            select = living(select, rt, table)
        for condition in conditions:
            select = select.where(condition)
        total = await self.count_reachable(
            rt, table, decision, actor, purpose, conditions, include_erased=include_erased
        )

        # The page's ids in a sub-select and its rows, keys included, around it: one
        # statement, and the keys' sub-selects run for the page's rows only (in the same
        # SELECT as the OFFSET they would run for every row skipped too).
        def ordered(query: Any) -> Any:
            if order is not None:
                query = query.order_by(order.column, ascending=order.ascending)
            return query.order_by(getattr(table, "created_at"), ascending=False).order_by(key)

        page_ids = ordered(select).limit(page_size).offset((page - 1) * page_size)
        rows = await ordered(
            self.with_subject_state(table, restriction=False).where(key.is_in(page_ids))
        )
        keys: dict[str, DataKey | None] = {}  # this page's people, unwrapped once each
        for r in rows:
            if str(r["subject_id"]) not in keys:
                keys[str(r["subject_id"])] = self.key_of(r)
        items = [self.materialize(rt, r, keys[str(r["subject_id"])], decision.fields) for r in rows]
        await self.audit_access(
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
        op = await self.authorize(actor, resource, "list", purpose=purpose, audited_as="count")
        rt, table, decision, purpose = op.rt, op.table, op.decision, op.purpose
        conditions = self.filter_conditions(rt, table, decision, filters or {})
        total = await self.count_reachable(
            rt, table, decision, actor, purpose, conditions, include_erased=include_erased
        )
        detail: dict[str, int | str] = {"total": total}
        if filters:
            detail["filters"] = ",".join(sorted(filters))
        await self.audit_access(actor, rt, "count", Outcome.ALLOWED, purpose, detail=detail)
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
        op = await self.authorize(actor, resource, "list", purpose=purpose, audited_as="aggregate")
        rt, table, decision, purpose = op.rt, op.table, op.decision, op.purpose
        used = await self._aggregated_columns(
            actor, op, group_by, sum_of, since, before, team_totals
        )
        columns = [getattr(table, n) for n in group_by]
        query = await self._grouped_select(actor, op, columns, sum_of, count_people, team_totals)
        if since is not None:
            query = query.where(getattr(table, since[0]) >= since[1])
        if before is not None:
            query = query.where(getattr(table, before[0]) < before[1])
        conditions = self.filter_conditions(
            rt, table, decision, filters or {}, any_aggregatable=True
        )
        for condition in conditions:
            query = query.where(condition)
        rows = await query.group_by(*columns)
        groups = [
            Group(
                key=tuple([plain_value(r[n]) for n in group_by]),
                count=int(r["n"]),
                total=int(r["total"]) if sum_of and r["total"] is not None else None,
                people=int(r["people"]) if count_people else None,
            )
            for r in rows
        ]
        await self.audit_access(
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

    async def _aggregated_columns(
        self,
        actor: Actor,
        op: Operation,
        group_by: Sequence[str],
        sum_of: str | None,
        since: tuple[str, dt.datetime | dt.date] | None,
        before: tuple[str, dt.datetime | dt.date] | None,
        team_totals: bool,
    ) -> builtins.list[str]:
        """The columns an aggregate uses (grouped, summed, windowed), each one the actor may
        read and the data map lets reports use; team totals only where the policy grants
        them. A refusal is audited; a column hidden from the actor must not be counted by."""
        rt, decision, purpose = op.rt, op.decision, op.purpose
        if team_totals and (
            not actor.team
            or "owner_id" in group_by
            or not self.policy.allows(actor.role, rt.resource, "totals:team")
        ):
            raise await self.deny(
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
            raise await self.deny(
                actor,
                rt,
                "aggregate",
                purpose,
                "field_not_readable" if unusable else "invalid_input",
                Forbidden(f"{rt.resource} cannot be aggregated by: " + ", ".join(unusable or used)),
                fields=tuple(n for n in used if n in rt.by_name),
            )
        return used

    async def _grouped_select(
        self,
        actor: Actor,
        op: Operation,
        columns: builtins.list[Any],
        sum_of: str | None,
        count_people: bool,
        team_totals: bool,
    ) -> Any:
        """The GROUP BY's select, with the actor's scope (or their team's, for team totals),
        restriction and consent in its WHERE."""
        table, decision, purpose = op.table, op.decision, op.purpose
        selected: builtins.list[Any] = [*columns, Count(alias="n")]
        if sum_of:
            selected.append(Sum(getattr(table, sum_of), alias="total"))
        if count_people:
            selected.append(Count(distinct=[getattr(table, "subject_id")], alias="people"))
        if team_totals:
            team = table.select(*selected).where(getattr(table, "team") == actor.team)
            scoped = visible(team, table)
        else:
            scoped = self.in_scope(table.select(*selected), table, decision, actor)
        return await self.with_basis(scoped, table, purpose)

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
            refusal = Forbidden(f"{resource} may not be profiled under {purpose}")
            fields = tuple(n for n in names if n in RECORD_TYPES[resource].by_name)
            op = await self.authorize(
                actor,
                resource,
                "list",
                purpose=purpose,
                audited_as="profile",
                fields=fields,
                refusal=refusal,
            )
            rt, table, decision = op.rt, op.table, op.decision
            if not set(fields) <= decision.fields:
                raise await self.deny(
                    actor, rt, "profile", purpose, "field_not_readable", refusal, fields=fields
                )
            columns = [getattr(table, "subject_id"), *(getattr(table, n) for n in names)]
            query = await self.with_basis(
                self.in_scope(table.select(*columns), table, decision, actor), table, purpose
            )
            rows = await query
            found[resource] = [(str(r["subject_id"]), *(r[n] for n in names)) for r in rows]
            await self.audit_access(
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
        for resource in TABLES:
            op = await self.authorize(
                actor, resource, Action.EXPORT, purpose=purpose, subject_ids=(str(subject),)
            )
            rt, table, decision, use = op.rt, op.table, op.decision, op.purpose
            query = table.select().where(getattr(table, "subject_id") == subject)
            rows = await self.in_scope(query, table, decision, actor, include_merged=True)
            if not rows:
                continue
            keys = await self.vault.keys_for([str(subject)])
            key = keys.get(str(subject))
            records = [self.materialize(rt, row, key, decision.fields) for row in rows]
            found.extend(records)
            await self.audit_access(
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
        # Searching by a field you may not read would turn the index into an oracle.
        op, spec, wanted = await self._exact_lookup(
            actor, resource, Action.SEARCH, purpose, field_name, value, "field_not_readable"
        )
        rt, decision, purpose = op.rt, op.decision, op.purpose
        rows, keys, candidates = await self._exact_candidates(op, actor, spec, value, wanted)
        matches = [
            self.materialize(rt, row, keys.get(str(row["subject_id"])), decision.fields)
            for row in rows[:limit]
        ]
        await self.audit_access(
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

    async def _exact_lookup(
        self,
        actor: Actor,
        resource: str,
        action: str,
        purpose: str | None,
        field_name: str,
        value: str,
        field_refused: str,
    ) -> tuple[Operation, Field, str]:
        """Check an exact lookup by ``field_name``: the field has a blind index, the role may
        take ``action`` with that field (else an audited denial), and the value is valid."""
        rt, _ = self.record_type(resource)
        purpose = purpose or self.purpose_for(actor)
        spec = rt.by_name.get(field_name)
        if spec is None or not spec.blind_index:
            searchable = [f.name for f in rt.fields if f.blind_index]
            raise InvalidInput(
                f"{rt.resource} can be looked up by: " + ", ".join(searchable),
                problems={field_name: "not searchable"},
            )
        refusal = Forbidden(f"your role may not {action} {rt.resource} records by {field_name}")
        op = await self.authorize(
            actor, resource, action, purpose=purpose, fields=(field_name,), refusal=refusal
        )
        if field_name not in op.decision.fields:
            raise await self.deny(
                actor, rt, action, purpose, field_refused, refusal, fields=(field_name,)
            )
        try:
            wanted = self.vault.normalize(spec, value)
        except (ValueError, InvalidValues):
            raise InvalidInput(
                f"{field_name}: not a valid {spec.label.lower()}",
                problems={field_name: "invalid value"},
            ) from None
        return op, spec, wanted

    async def _exact_candidates(
        self, op: Operation, actor: Actor, spec: Field, value: str, wanted: str
    ) -> tuple[builtins.list[dict[str, Any]], dict[str, DataKey], int]:
        """Rows in scope whose blind index matches, re-checked after decryption (the index
        is truncated, so some candidates are false positives and must be dropped)."""
        rt, table, decision = op.rt, op.table, op.decision
        token = self.vault.index_token(rt, spec, value)
        # The candidates and their people's keys in one statement (the WHERE already
        # leaves the restricted out).
        select = self.with_subject_state(table, restriction=False)
        query = select.where(getattr(table, spec.index_column) == token)
        scoped = self.in_scope(query, table, decision, actor)
        rows = await (await self.with_basis(scoped, table, decision.purpose)).limit(1000)
        keys: dict[str, DataKey] = {}
        for r in rows:
            key = self.key_of(r)
            if key is not None:  # None: shredded, nothing of theirs can match
                keys[str(r["subject_id"])] = key
        matches = []
        for row in rows:
            key = keys.get(str(row["subject_id"]))
            plain = row[spec.name] and self.decrypt_field(
                rt, spec, str(row["id"]), key, row[spec.name]
            )
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
        op, spec, wanted = await self._exact_lookup(
            actor, resource, "locate", purpose, field_name, value, "field_not_locatable"
        )
        rt, purpose = op.rt, op.purpose
        rows, _, _ = await self._exact_candidates(op, actor, spec, value, wanted)
        found = [(str(row["id"]), str(row["subject_id"])) for row in rows]
        await self.audit_access(
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
        self.record_type(resource)  # an unknown type is a 404 before any other answer
        purpose = purpose or self.default_purpose(actor.role)
        try:
            subject = uuid.UUID(str(subject_id))
        except ValueError:
            raise InvalidInput("not a subject id", problems={"subject_id": "not a UUID"}) from None
        op = await self.authorize(
            actor, resource, "locate", purpose=purpose, subject_ids=(str(subject),)
        )
        rt, table, decision = op.rt, op.table, op.decision
        query = table.select(table._meta.primary_key).where(getattr(table, "subject_id") == subject)
        query = living(self.in_scope(query, table, decision, actor), rt, table)
        rows = await query.order_by(getattr(table, "created_at")).limit(100)
        found = [str(row["id"]) for row in rows]
        await self.audit_access(
            actor,
            rt,
            "locate",
            Outcome.ALLOWED,
            purpose,
            subject_ids=(str(subject),),
            detail={"by": "subject_id", "returned": len(found)},
        )
        return found
