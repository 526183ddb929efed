"""Data-subject request tables: the requests and their append-only history.

No personal value lives here: a person appears only by the pseudonymous ``subject_id``
(and ``contact_id``, the id of the contact record through which they are reached), and
every reason or verification method is a short machine code, never free text - so an
erasure never has to look inside these tables. ``dsr_request_event`` is the evidence that
the deadlines were kept: append-only (database triggers, and on PostgreSQL the application
role's grants: ``server.dbroles``). Only :class:`server.dsr.requests.DataSubjectRequests`
writes to these tables.
"""

from __future__ import annotations

from piccolo.columns import UUID, Date, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class DsrRequest(Table, tablename="dsr_request"):
    """One request (Art. 15-21) and where it stands; ``due_at`` is one month from receipt."""

    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    contact_id = Varchar(length=64, null=True, default=None)  # record id, for notifications
    kind = Varchar(length=16)  # access | portability | rectification | erasure | ...
    state = Varchar(length=16, index=True)  # received | verified | in_review | ...
    channel = Varchar(length=16)  # portal | phone | letter | email
    received_at = Timestamptz()
    due_at = Timestamptz(index=True)
    extended_until = Timestamptz(null=True, default=None)
    extension_reason = Varchar(length=32, default="")
    rejection_reason = Varchar(length=32, default="")
    verified_at = Timestamptz(null=True, default=None)
    verification = Varchar(length=32, default="")  # email_link | phone_callback | id_document
    updated_at = Timestamptz()
    # Opened by the system, not by the person: why (``last_consent_withdrawn`` ...).
    opened_because = Varchar(length=32, default="")


class DsrRequestEvent(Table, tablename="dsr_request_event"):
    """One change of a request: created, a state change or an extension. Append-only."""

    id: Serial

    request_id = UUID(index=True)
    from_state = Varchar(length=16, default="")  # "" when the request was created
    to_state = Varchar(length=16)
    actor_id = Varchar(length=64)  # "user:12", "subject", "system:..."
    at = Timestamptz()
    reason = Varchar(length=32, default="")  # a code: rejection or extension reason


class LegalHold(Table, tablename="legal_hold"):
    """Records of one person that must be kept despite an erasure request (Art. 17(3)):
    ``scope`` is a record type or ``all``, ``reason`` a code, never free text. A hold ends
    when ``held_until`` has passed or it is released; the retention run then finishes the
    erasure it held back."""

    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    scope = Varchar(length=32)
    reason = Varchar(length=32)
    held_until = Date()
    created_by = Varchar(length=64)
    created_at = Timestamptz()
    released_at = Timestamptz(null=True, default=None)
    released_by = Varchar(length=64, default="")


class ProcessingRestriction(Table, tablename="processing_restriction"):
    """A restriction of processing (Art. 18): while ``lifted_at`` is empty the gateway keeps
    the person's records out of every purpose but storage and legal ones."""

    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    reason = Varchar(length=32)
    request_id = Varchar(length=64, null=True, default=None)
    since = Timestamptz()
    created_by = Varchar(length=64)
    lifted_at = Timestamptz(null=True, default=None, index=True)
    lifted_by = Varchar(length=64, default="")


class ErasureJob(Table, tablename="erasure_job"):
    """Progress of one person's erasure, so a crash at any step can be resumed: the steps
    done (``mentions,records,keys``) and counts per record type as JSON - ids and numbers
    only. One job per subject: erasing an erased person again is a no-op."""

    id = UUID(primary_key=True)
    subject_id = UUID(unique=True)
    request_id = Varchar(length=64, null=True, default=None, index=True)
    state = Varchar(length=16)  # running | held | done | failed
    steps = Varchar(length=64, default="")
    counts = Text(default="{}")
    started_by = Varchar(length=64)
    started_at = Timestamptz()
    updated_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
    # While held: the person's identifying values sealed under their own key, so mentions
    # typed during the hold are scrubbed when it ends ("" otherwise; cleared when done).
    identity = Text(default="")
    error = Varchar(length=32, default="")  # why a background run stopped (a code)


class RetentionRun(Table, tablename="retention_run"):
    """One row per day the scheduled retention run was claimed: the unique ``day`` is the
    lock that lets exactly one server worker run it."""

    id = UUID(primary_key=True)
    day = Varchar(length=10, unique=True)
    started_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
