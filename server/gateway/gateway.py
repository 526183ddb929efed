"""The gateway: the only path by which customer personal data is read or written.

:class:`Gateway` is what the rest of the application holds. It is the core
(``server.gateway.core``: the preamble, audit, scope and decryption every operation is
written in) with its operations (``reading``: read, list, search, count, aggregate,
export_subject ...; ``writing``: create, create_many, update, delete) and the features
built beside it on the core's public interface only: erasure and retention
(``erasure``, ``mentions``), lead conversion (``leads``), duplicate contacts and merges
(``duplicates``), bulk import and export (``bulk``) and name search (``search``). The
methods below hand each feature the gateway and the caller's purpose (or the actor's
default); the rules are in the feature's module.

The core imports none of the features and no feature reaches a private member of the
core (``lint-imports``, tests/test_code_shape.py), so each can be read on its own.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from audit.events import Action
from server.gateway import (
    bulk,
    duplicate_scan,
    duplicates,
    erasure,
    leads,
    mention_scan,
    mentions,
    name_index,
)
from server.gateway import search as name_search
from server.gateway.actor import Actor
from server.gateway.core import MAX_PAGE, MAX_PAGE_SIZE, STORAGE_PURPOSES, audits_bad_input
from server.gateway.hooks import (
    AudienceCondition,
    BasisVerdict,
    MergeBlockers,
    RecordRule,
    SubjectBasis,
    SubjectRestrictions,
)
from server.gateway.reading import ReadOperations
from server.gateway.results import BulkResult, Group, OutsideScope, Page, Record
from server.gateway.sealing import Sealing
from server.gateway.writing import WriteOperations

__all__ = [
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "STORAGE_PURPOSES",
    "AudienceCondition",
    "BasisVerdict",
    "BulkResult",
    "Gateway",
    "Group",
    "MergeBlockers",
    "OutsideScope",
    "Page",
    "Record",
    "RecordRule",
    "SubjectBasis",
    "SubjectRestrictions",
]


class Gateway(ReadOperations, WriteOperations, Sealing):
    """The core's operations and the features built on it, as one object."""

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
        return await mention_scan.mentions_of(
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

    # --- duplicates (server.gateway.duplicate_scan) and merges (.duplicates) ------------

    async def find_duplicates(
        self, actor: Actor, *, purpose: str | None = None
    ) -> duplicate_scan.Scan:
        """Likely duplicate contact pairs in the actor's scope: ids and reasons only."""
        purpose = purpose or self.purpose_for(actor)
        return await duplicate_scan.find_candidates(self, actor, purpose=purpose)

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

    # --- name search (server.gateway.search) --------------------------------------------

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
