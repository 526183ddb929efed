"""Staff accounts and sessions (not customer data: the gateway does not guard these)."""

from __future__ import annotations

from piccolo.columns import Boolean, Integer, Serial, Timestamptz, Varchar
from piccolo.table import Table


class StaffUser(Table, tablename="staff_user"):
    id = Serial(primary_key=True)
    email = Varchar(length=254, unique=True)
    display_name = Varchar(length=120)
    password_hash = Varchar(length=255)
    role = Varchar(length=32)
    team = Varchar(length=64)
    is_active = Boolean(default=True)
    created_at = Timestamptz()
    password_changed_at = Timestamptz()
    last_login_at = Timestamptz(null=True, default=None)


class StaffSession(Table, tablename="staff_session"):
    """One row per login. Only a keyed hash of the cookie token is stored."""

    id = Serial(primary_key=True)
    token_hash = Varchar(length=64, unique=True)
    user_id = Integer(index=True)
    created_at = Timestamptz()
    last_seen_at = Timestamptz()
    expires_at = Timestamptz()
