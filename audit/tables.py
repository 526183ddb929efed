"""The audit table. UPDATE and DELETE are rejected by database triggers (see migrations)."""

from __future__ import annotations

from piccolo.columns import Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class AuditRecord(Table, tablename="audit"):
    seq = Integer(unique=True)
    ts = Timestamptz()
    actor_id = Varchar(length=64)
    actor_role = Varchar(length=32)
    action = Varchar(length=32)
    resource_type = Varchar(length=32)
    resource_id = Varchar(length=64, null=True, default=None)
    subject_ids = Text()  # JSON array
    fields = Text()  # JSON array
    purpose = Varchar(length=64)
    outcome = Varchar(length=16)
    reason = Varchar(length=64)
    request_id = Varchar(length=64)
    detail = Text()  # JSON object
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64)
