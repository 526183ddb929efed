"""Staff accounts and sessions (not customer data: the gateway does not guard these).

The ``id: Serial`` annotations name the primary key Piccolo adds to a table that declares
none, for mypy. Assigning ``Serial(primary_key=True)`` instead makes the same column a
declared one, which ``piccolo migrations new staff --auto`` then tries to add again (the
migrations never recorded it): tests/server/test_migrations_auto.py keeps the diff empty.
"""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class StaffUser(Table, tablename="staff_user"):
    id: Serial  # Piccolo's own primary key (declared for mypy; see the module docstring)
    email = Varchar(length=254, unique=True)
    display_name = Varchar(length=120)
    password_hash = Varchar(length=255)
    role = Varchar(length=32)
    team = Varchar(length=64)
    is_active = Boolean(default=True)
    created_at = Timestamptz()
    password_changed_at = Timestamptz()
    last_login_at = Timestamptz(null=True, default=None)
    # TOTP secret sealed with a key derived from the master key; never stored in clear.
    totp_secret = Text(null=True, default=None)
    totp_last_step = Integer(null=True, default=None)  # replay guard: last accepted time step
    # IANA zone name: pages show times in it; everything is stored in UTC. Empty: never
    # chosen (shown as UTC; the browser's zone is taken at the next sign-in).
    time_zone = Varchar(length=64, default="")


class StaffSession(Table, tablename="staff_session"):
    """One row per login. Only a keyed hash of the cookie token is stored."""

    id: Serial  # Piccolo's own primary key (declared for mypy; see the module docstring)
    token_hash = Varchar(length=64, unique=True)
    user_id = Integer(index=True)
    created_at = Timestamptz()
    last_seen_at = Timestamptz()
    expires_at = Timestamptz()
    authenticated_at = Timestamptz(null=True, default=None)  # last password (+ code) entry
    mfa_passed = Boolean(default=False)
    client = Varchar(length=120, default="")  # coarse user-agent label for "my sessions"
    flash = Text(default="[]")  # JSON list of one-shot messages for the next page


class StaffRecoveryCode(Table, tablename="staff_recovery_code"):
    id: Serial  # Piccolo's own primary key (declared for mypy; see the module docstring)
    user_id = Integer(index=True)
    code_hash = Varchar(length=64, unique=True)
    used_at = Timestamptz(null=True, default=None)


class PasswordResetToken(Table, tablename="password_reset_token"):
    id: Serial  # Piccolo's own primary key (declared for mypy; see the module docstring)
    token_hash = Varchar(length=64, unique=True)
    user_id = Integer(index=True)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)


class LoginThrottle(Table, tablename="login_throttle"):
    """Failed-login counters per account and per client address (both keyed hashes)."""

    id: Serial  # Piccolo's own primary key (declared for mypy; see the module docstring)

    key = Varchar(length=64, unique=True)
    failures = Integer(default=0)
    last_failure_at = Timestamptz(null=True, default=None)
    locked_until = Timestamptz(null=True, default=None)


class ApiToken(Table, tablename="api_token"):
    """A personal token or a service account (server.auth.tokens). Only a keyed hash of
    the secret is stored; the secret is shown once, when it is made."""

    id = UUID(primary_key=True)
    kind = Varchar(length=16)  # personal | service
    name = Varchar(length=80)
    role = Varchar(length=32)
    purposes = Text(default="[]")  # JSON list of purpose names
    fields = Text(null=True, default=None)  # JSON list, or NULL: every field the role may use
    created_by = Integer(index=True)  # the staff user who made it (a personal token's owner)
    team = Varchar(length=64)
    secret_hash = Varchar(length=64, unique=True)
    hint = Varchar(length=12)  # the secret's first characters, to tell tokens apart
    created_at = Timestamptz()
    expires_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)
    window_start = Timestamptz(null=True, default=None)  # the rate limit's current minute
    window_calls = Integer(default=0)
