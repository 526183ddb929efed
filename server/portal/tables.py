"""Portal tables: one-time links and signed-in sessions of data subjects.

Nothing here identifies a person by a value: a link or session names the pseudonymous
``subject_id`` and the id of the person's record it was issued for (``contact_id``: a
contact or, for someone who is only a lead, the lead), and the link or cookie
itself is stored only as an HMAC, so a copy of these tables signs nobody in. The e-mail
address a link was sent to is never stored. Only :class:`server.portal.service.Portal`
writes to these tables.
"""

from __future__ import annotations

from piccolo.columns import UUID, Serial, Timestamptz, Varchar
from piccolo.table import Table


class PortalToken(Table, tablename="portal_token"):
    """A link e-mailed to a person: a sign-in link (15 minutes, single use) or a download
    link for a fulfilled access or portability request (7 days)."""

    id: Serial

    token_hash = Varchar(length=64, unique=True)  # HMAC-SHA256 hex, never the token
    kind = Varchar(length=16)  # sign_in | download
    subject_id = UUID(index=True)
    contact_id = Varchar(length=64)
    request_id = UUID(null=True, default=None)  # download links: the request they answer
    created_at = Timestamptz()
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)  # sign-in links: when consumed


class PortalSession(Table, tablename="portal_session"):
    """A person signed in to the portal; the cookie value is stored only as an HMAC."""

    id: Serial

    token_hash = Varchar(length=64, unique=True)
    subject_id = UUID(index=True)
    contact_id = Varchar(length=64)
    created_at = Timestamptz()
    last_seen_at = Timestamptz()
    expires_at = Timestamptz()  # absolute end, whatever the activity
