"""The mail outbox: one row per message that must reach someone, until it has.

No readable personal data: the envelope (recipients, subject line, body) is sealed - under
the data subject's key when the message is to or about a customer (``subject_id``; erasing
them makes a queued message unreadable, and it is dropped), else under a key derived from
the master key for staff messages (alerts). The rest is codes, ids, counts and times.
Only :class:`server.outbox.service.MailOutbox` writes this table.
"""

from __future__ import annotations

from piccolo.columns import UUID, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class QueuedMail(Table, tablename="mail_outbox"):
    id = UUID(primary_key=True)
    purpose = Varchar(length=32)  # alert | dsr_notice: who is told when it is delivered
    reference = Text(default="")  # ids the purpose's owner needs (alert ids), never values
    subject_id = UUID(null=True, default=None)  # sealed under this person's key
    envelope = Text()  # sealed JSON {"to": [...], "subject": ..., "text": ...}
    state = Varchar(length=16, index=True)  # queued | sent | dead
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz(index=True)
    last_error = Varchar(length=32, default="")
    created_at = Timestamptz()
    updated_at = Timestamptz()
    sent_at = Timestamptz(null=True, default=None)
