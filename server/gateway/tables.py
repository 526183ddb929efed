"""Customer-data tables. Only ``server.gateway`` may import this module (import-linter).

Encrypted fields are ``Text`` columns holding ``cs1.*`` envelopes; blind indexes are
integer ``<field>_bidx`` columns. Every column here must be declared in the data map
(``server/datamap.py``); ``tests/server/test_datamap.py`` fails otherwise. A declared field the
class does not write out gets the column its declaration calls for (``DeclaredColumns``),
so adding a field is its declaration and a generated migration.
"""

from __future__ import annotations

from typing import Any

from piccolo.columns import (
    UUID,
    Boolean,
    Column,
    Date,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table

from server.datamap import (
    CASE,
    CASE_MESSAGE,
    CONTACT,
    DEAL,
    FEEDBACK,
    INTERACTION,
    LEAD,
    MAIL,
    NOTE,
    ORGANIZATION,
    TASK,
    Field,
    FieldKind,
    RecordType,
)

_PLAIN: dict[FieldKind, type[Column]] = {
    FieldKind.INTEGER: Integer,
    FieldKind.DATE: Date,
    FieldKind.DATETIME: Timestamptz,
    FieldKind.REFERENCE: UUID,
}


def declared_columns(spec: Field) -> dict[str, Column]:
    """The columns a field's declaration calls for: ciphertext as ``Text`` (and its blind
    index), a plaintext value in the column of its kind; NOT NULL exactly when required."""
    optional: dict[str, Any] = {} if spec.required else {"null": True, "default": None}
    columns: dict[str, Column] = {}
    if spec.encrypted:
        columns[spec.name] = Text(**optional)
    elif spec.kind in _PLAIN:
        indexed = spec.kind is FieldKind.REFERENCE or spec.filterable
        columns[spec.name] = _PLAIN[spec.kind](index=indexed, **optional)
    else:
        longest = max((len(c) for c in spec.choices), default=spec.max_length)
        columns[spec.name] = Varchar(length=longest, index=spec.filterable, **optional)
    if spec.blind_index:
        columns[spec.index_column] = Integer(null=True, default=None, index=True)
    return columns


class DeclaredColumns:
    """Gives a customer table the columns of its record type's fields that the class body
    does not spell out (``class Contact(DeclaredColumns, Table, record_type=CONTACT)``).
    The columns written out keep their own types and indexes, as their migrations made
    them; ``tests/server/test_datamap_declarations.py`` holds both kinds to the data map."""

    def __init_subclass__(cls, record_type: RecordType | None = None, **kwargs: Any) -> None:
        if record_type is not None:
            for spec in record_type.fields:
                for name, column in declared_columns(spec).items():
                    if name not in cls.__dict__:
                        setattr(cls, name, column)
        super().__init_subclass__(**kwargs)


class Contact(DeclaredColumns, Table, tablename="contact", record_type=CONTACT):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)  # lists are newest first
    updated_at = Timestamptz()
    first_name = Text()
    last_name = Text()
    email = Text(null=True, default=None)
    email_bidx = Integer(null=True, default=None, index=True)
    phone = Text(null=True, default=None)
    phone_bidx = Integer(null=True, default=None, index=True)
    job_title = Text(null=True, default=None)
    birth_date = Text(null=True, default=None)
    address_line = Text(null=True, default=None)
    city = Text(null=True, default=None)
    postcode = Text(null=True, default=None)
    country = Text(null=True, default=None)
    notes = Text(null=True, default=None)
    lifecycle_stage = Varchar(length=32, null=True, default=None, index=True)
    source = Varchar(length=32, null=True, default=None)
    organization_id = UUID(null=True, default=None, index=True)
    # The contact this one was merged into while the merge is not undone (set and cleared
    # in the merge's transaction, server.gateway.duplicates): reads leave such rows out
    # by this column (lifecycle.visible), not by a sub-select over contact_merge.
    merged_into = UUID(null=True, default=None)
    # Set by erasure in the statement that clears the row (erasure.clear_rows): lists and
    # counts leave tombstones out by this column (lifecycle.living), which an index
    # (merged_into, erased, subject_id) answers, instead of reading every row's ciphertext.
    erased = Boolean(default=False)


class Organization(DeclaredColumns, Table, tablename="organization", record_type=ORGANIZATION):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)  # lists are newest first
    updated_at = Timestamptz()
    name = Varchar(length=200)
    domain = Varchar(length=253, null=True, default=None)
    industry = Varchar(length=100, null=True, default=None)
    employee_count = Integer(null=True, default=None)
    annual_revenue = Text(null=True, default=None)
    email = Text(null=True, default=None)
    email_bidx = Integer(null=True, default=None, index=True)
    phone = Text(null=True, default=None)
    phone_bidx = Integer(null=True, default=None, index=True)
    address_line = Text(null=True, default=None)
    city = Text(null=True, default=None)
    postcode = Text(null=True, default=None)
    country = Text(null=True, default=None)
    notes = Text(null=True, default=None)


class Deal(DeclaredColumns, Table, tablename="deal", record_type=DEAL):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)  # the contact's: the deal is about that person
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    title = Text()
    amount = Integer(null=True, default=None)
    currency = Varchar(length=3, null=True, default=None)
    stage = Varchar(length=32, null=True, default=None, index=True)
    probability = Integer(null=True, default=None)
    expected_close = Date(null=True, default=None)
    lost_reason = Varchar(length=32, null=True, default=None)
    contact_id = UUID(index=True)
    organization_id = UUID(null=True, default=None, index=True)
    notes = Text(null=True, default=None)
    pipeline_id = UUID(null=True, default=None, index=True)  # server.pipelines
    stage_entered_at = Timestamptz(null=True, default=None)  # set by the pipelines' deal rule
    campaign_id = UUID(null=True, default=None, index=True)  # attribution (issue 20)
    # commit | best_case | pipeline, or None: the probability decides (server.forecast)
    forecast_category = Varchar(length=16, null=True, default=None)


class Interaction(DeclaredColumns, Table, tablename="interaction", record_type=INTERACTION):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    channel = Varchar(length=32, index=True)
    direction = Varchar(length=16, null=True, default=None)
    occurred_at = Timestamptz(index=True)
    summary = Text(null=True, default=None)
    participants = Text(null=True, default=None)  # encrypted free text
    contact_id = UUID(index=True)
    deal_id = UUID(null=True, default=None, index=True)


# "case" is an SQL keyword
class Case(DeclaredColumns, Table, tablename="support_case", record_type=CASE):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    title = Text()
    description = Text(null=True, default=None)
    kind = Varchar(length=32)
    priority = Varchar(length=16, null=True, default=None)
    status = Varchar(length=16, null=True, default=None, index=True)
    due_at = Timestamptz(null=True, default=None, index=True)
    contact_id = UUID(index=True)


class Lead(DeclaredColumns, Table, tablename="lead", record_type=LEAD):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)  # its own; handed on to the contact at conversion
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    first_name = Text()
    last_name = Text()
    email = Text(null=True, default=None)
    email_bidx = Integer(null=True, default=None, index=True)
    phone = Text(null=True, default=None)
    phone_bidx = Integer(null=True, default=None, index=True)
    company_name = Text(null=True, default=None)
    message = Text(null=True, default=None)
    source = Varchar(length=32, null=True, default=None, index=True)
    status = Varchar(length=16, null=True, default=None, index=True)
    disqualified_reason = Varchar(length=32, null=True, default=None)
    converted_contact_id = UUID(null=True, default=None, index=True)
    converted_deal_id = UUID(null=True, default=None, index=True)
    campaign_id = UUID(null=True, default=None, index=True)  # attribution (issue 20)
    erased = Boolean(default=False)  # as Contact.erased


class Task(DeclaredColumns, Table, tablename="task", record_type=TASK):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)  # the contact's, or its own for a task about nobody
    owner_id = Integer(index=True)  # who must do it ("my day")
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    title = Text()
    due_at = Timestamptz(index=True)
    status = Varchar(length=16, null=True, default=None, index=True)
    priority = Varchar(length=16, null=True, default=None)
    remind_at = Timestamptz(null=True, default=None, index=True)
    contact_id = UUID(null=True, default=None, index=True)
    deal_id = UUID(null=True, default=None, index=True)
    case_id = UUID(null=True, default=None, index=True)


class Note(DeclaredColumns, Table, tablename="note", record_type=NOTE):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)  # the subject of the record it is attached to
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)  # newest first on a record's page
    updated_at = Timestamptz()
    body = Text()
    record_type = Varchar(length=32)
    record_id = UUID(index=True)


class CapturedMail(DeclaredColumns, Table, tablename="captured_mail", record_type=MAIL):
    """Captured e-mail (server.mailcapture): one row per person a message matched."""

    id = UUID(primary_key=True)
    subject_id = UUID(index=True)  # the contact's or lead's: sealed under their key
    owner_id = Integer(index=True)  # the mailbox owner: private to them until shared
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    record_type = Varchar(length=32)
    record_id = UUID(index=True)
    direction = Varchar(length=16, null=True, default=None)
    occurred_at = Timestamptz(index=True)
    subject = Text(null=True, default=None)
    body = Text(null=True, default=None)
    correspondents = Text(null=True, default=None)
    attachments = Text(null=True, default=None)
    visibility = Varchar(length=16, null=True, default=None, index=True)
    thread_key = Varchar(length=64, null=True, default=None, index=True)
    message_key = Varchar(length=64, null=True, default=None, index=True)
    mailbox_id = UUID(null=True, default=None, index=True)


class FeedbackAnswer(DeclaredColumns, Table, tablename="feedback_answer", record_type=FEEDBACK):
    """An answer to a survey that is not anonymous (server.feedback): about the person."""

    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    survey_id = UUID(index=True)
    kind = Varchar(length=8, index=True)
    score = Text()  # encrypted: an answer is the person's
    comment = Text(null=True, default=None)
    case_id = UUID(null=True, default=None, index=True)
    contact_id = UUID(index=True)


# server.servicedesk
class CaseMessage(DeclaredColumns, Table, tablename="case_message", record_type=CASE_MESSAGE):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)  # the case's person
    owner_id = Integer(index=True)  # who wrote it (staff), or the desk's system actor
    team = Varchar(length=64, index=True)  # the case's team
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    body = Text()
    kind = Varchar(length=16)
    case_id = UUID(index=True)


TABLES: dict[str, type[Table]] = {
    "contact": Contact,
    "organization": Organization,
    "deal": Deal,
    "interaction": Interaction,
    "case": Case,
    "lead": Lead,
    "task": Task,
    "note": Note,
    "mail": CapturedMail,
    "feedback": FeedbackAnswer,
    "case_message": CaseMessage,
}


class ContactMerge(Table, tablename="contact_merge"):
    """One merge of two contacts (server.gateway.duplicates): who survived, who was merged,
    and what moved, so the merge can be undone until it is confirmed. Not a record type:
    only ids, field names and the survivor's overwritten columns as they were stored
    (ciphertext under the survivor's own key), never a plaintext value. A merged contact
    whose merge is not undone is hidden from every list, search, count and report."""

    id = UUID(primary_key=True)
    survivor_id = UUID(index=True)
    merged_id = UUID(index=True)
    survivor_subject_id = UUID(index=True)
    merged_subject_id = UUID(index=True)
    state = Varchar(length=16, index=True)  # pending | undone | confirmed
    merged_by = Varchar(length=64)  # the actor's audit id
    created_at = Timestamptz(index=True)
    decided_at = Timestamptz(null=True, default=None)
    decided_by = Varchar(length=64, default="")
    fields = Text(default="[]")  # JSON: the contact fields taken from the merged contact
    moved = Text(default="[]")  # JSON: [{"type", "id", "subject", "refs"}] of moved records
    previous = Text(default="{}")  # JSON: the survivor's overwritten columns (ciphertext)


class SearchToken(Table, tablename="search_token"):
    """Name-search tokens (server.gateway.name_index): one row per record, field and
    truncated word or prefix token. Not a record type: no value, only keyed, truncated
    HMACs that many records share (docs/search.md says what they reveal). Written with the
    record, removed when it is erased, tombstoned or deleted."""

    id = Serial(primary_key=True)
    record_type = Varchar(length=16)
    record_id = UUID(index=True)
    field = Varchar(length=32)
    token = Integer()  # indexed by the migration: (token, record_type, record_id)


class MentionToken(Table, tablename="mention_token"):
    """Mention tokens (server.gateway.mention_index): one row per record, free-text field and
    truncated keyed token of a word, an e-mail address's "local@domain" pair or six
    consecutive digits that the text holds. Not a record type: no value, only keyed,
    truncated HMACs (docs/dsr.md says what they reveal). Written with the record, replaced
    when its text changes, removed when it is deleted, erased, scrubbed or anonymised."""

    id = Serial(primary_key=True)
    record_type = Varchar(length=16)
    record_id = UUID(index=True)
    field = Varchar(length=32)
    token = Integer()  # indexed by the migration: (token, record_type, record_id)


class MentionIndexState(Table, tablename="mention_index_state"):
    """One row: whether every record's free text is in the mention index (the watermark
    erasure and exports check before trusting it), and a probe token that changes with
    the index key. Until ``complete``, mentions are found by reading every free text."""

    id = Integer(primary_key=True)
    complete = Boolean(default=False)
    probe = Integer(null=True, default=None)
    updated_at = Timestamptz()
