"""Staff mailboxes connected for capture (configuration, not customer data).

The login (user name and password) is sealed by the vault under a key derived from the
master key and bound to the mailbox id; the rest is where to connect, the sync watermark
(UIDVALIDITY and the last UID done), counters and the last error as a short code.
Only :class:`server.mailcapture.service.Mailboxes` writes this table.
"""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class Mailbox(Table, tablename="mailbox"):
    id = UUID(primary_key=True)
    owner_id = Integer(index=True)  # the staff user whose mail this is
    team = Varchar(length=64)
    label = Varchar(length=100)
    host = Varchar(length=253)
    port = Integer()
    security = Varchar(length=16)  # ssl | starttls | none (loopback and tests only)
    folder = Varchar(length=200, default="INBOX")
    address = Varchar(length=254)  # the mailbox's own address: decides the direction
    purpose = Varchar(length=32)  # what the captured mail is processed for
    login = Text()  # sealed JSON {"username", "password"}; never shown back
    enabled = Boolean(default=True)
    uid_validity = BigInt(default=0)
    last_uid = BigInt(default=0)  # the watermark: every UID up to it is done
    seen = Integer(default=0)  # the last run's counters
    captured = Integer(default=0)
    skipped = Integer(default=0)
    total_captured = Integer(default=0)
    state = Varchar(length=16, default="idle")  # idle | running
    lease_until = Timestamptz(null=True, default=None)  # a worker's claim on a sync
    last_run_at = Timestamptz(null=True, default=None)
    last_error = Varchar(length=200, default="")  # a short reason, never a value
    created_at = Timestamptz()
    updated_at = Timestamptz()
