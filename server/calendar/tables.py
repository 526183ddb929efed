"""Which imported calendar event became which record, so that importing the same
calendar again updates the meeting instead of adding a second one.

No UID is stored: a UID can hold an e-mail address or a name ("jane.doe-1234@host"), so
the row keeps a keyed hash (HMAC-SHA-256 under a subkey of the master key) of the UID
and the record it became. Without the key the hash links to nothing; erasing the person
erases the record, and the row then points at nothing readable (it is removed on the
next import that meets it). Only :mod:`server.calendar.service` uses this table.
"""

from __future__ import annotations

from piccolo.columns import UUID, Timestamptz, Varchar
from piccolo.table import Table


class CalendarMeeting(Table, tablename="calendar_meeting"):
    id = UUID(primary_key=True)
    uid_hash = Varchar(length=64, unique=True)  # hex HMAC of (UID, person record)
    record_type = Varchar(length=16)  # interaction | note (a meeting with a lead)
    record_id = UUID(index=True)
    imported_at = Timestamptz()
