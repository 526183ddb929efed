"""What the public lead form remembers: which form tokens have been spent.

A token is good for one submission. Workers share the answer through this table (not
process memory), as they share sessions and rate limits. A row holds a keyed hash of the
token and the moment the token expires anyway; nothing about the visitor or the lead.
Rows are removed by the daily housekeeping once their token could no longer be used.
"""

from __future__ import annotations

from piccolo.columns import Serial, Timestamptz, Varchar
from piccolo.table import Table


class SpentFormToken(Table, tablename="spent_form_token"):
    """A form token that has created a lead (HMAC-SHA256 hex of the token, never the token)."""

    id: Serial

    token_hash = Varchar(length=64, unique=True)
    expires_at = Timestamptz(index=True)  # after this the token is refused as expired
