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

from piccolo.columns import UUID, Serial, Timestamptz, Varchar
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


class DsrRequestEvent(Table, tablename="dsr_request_event"):
    """One change of a request: created, a state change or an extension. Append-only."""

    id: Serial

    request_id = UUID(index=True)
    from_state = Varchar(length=16, default="")  # "" when the request was created
    to_state = Varchar(length=16)
    actor_id = Varchar(length=64)  # "user:12", "subject", "system:..."
    at = Timestamptz()
    reason = Varchar(length=32, default="")  # a code: rejection or extension reason
