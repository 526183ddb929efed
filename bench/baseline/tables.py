"""Baseline tables: Consentry's customer columns as plaintext, plus users and sessions.

Indexes mirror Consentry's migrations (owner, team, created_at, lifecycle stage,
organization; for deals and interactions stage, channel, occurred_at and the
references), with plain ``email`` and ``phone`` indexes standing in for Consentry's
blind-index columns. Keep them in step: an index only one side has would show up as a
"cost of privacy" (or a saving) that has nothing to do with privacy.
There is no ``subject_id``: data subjects and their keys are Consentry machinery.
The tables are created with ``create_table`` (see :func:`create_schema`), not with
Consentry's migrations, so the baseline stays an ordinary Piccolo application.
"""

from __future__ import annotations

from typing import Any

from piccolo.columns import UUID, Boolean, Date, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.engine.base import Engine
from piccolo.table import Table


class BaselineUser(Table, tablename="baseline_user"):
    id = Serial(primary_key=True)
    email = Varchar(length=254, unique=True)
    role = Varchar(length=32)
    team = Varchar(length=64)
    is_active = Boolean(default=True)


class BaselineSession(Table, tablename="baseline_session"):
    """One row per login; only a keyed hash of the cookie token is stored (as Consentry)."""

    id = Serial(primary_key=True)
    token_hash = Varchar(length=64, unique=True)
    user_id = Integer(index=True)
    created_at = Timestamptz()
    last_seen_at = Timestamptz()
    expires_at = Timestamptz()


class BaselineOrganization(Table, tablename="baseline_organization"):
    id = UUID(primary_key=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    name = Varchar(length=200)
    domain = Varchar(length=253, null=True, default=None)
    industry = Varchar(length=100, null=True, default=None)
    employee_count = Integer(null=True, default=None)
    annual_revenue = Integer(null=True, default=None)
    email = Text(null=True, default=None, index=True)
    phone = Text(null=True, default=None, index=True)
    address_line = Text(null=True, default=None)
    city = Text(null=True, default=None)
    postcode = Text(null=True, default=None)
    country = Text(null=True, default=None)
    notes = Text(null=True, default=None)


class BaselineContact(Table, tablename="baseline_contact"):
    id = UUID(primary_key=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    first_name = Text()
    last_name = Text()
    email = Text(null=True, default=None, index=True)
    phone = Text(null=True, default=None, index=True)
    job_title = Text(null=True, default=None)
    birth_date = Text(null=True, default=None)
    address_line = Text(null=True, default=None)
    city = Text(null=True, default=None)
    postcode = Text(null=True, default=None)
    country = Text(null=True, default=None)
    notes = Text(null=True, default=None)
    lifecycle_stage = Varchar(length=32, null=True, default=None, index=True)
    source = Varchar(length=32, null=True, default=None)
    organization_id = UUID(null=True, default=None, index=True)


class BaselineDeal(Table, tablename="baseline_deal"):
    id = UUID(primary_key=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    title = Text()
    amount = Integer(null=True, default=None)
    currency = Varchar(length=3, null=True, default=None)
    stage = Varchar(length=32, null=True, default=None, index=True)
    probability = Integer(null=True, default=None)
    expected_close = Date(null=True, default=None)
    lost_reason = Varchar(length=32, null=True, default=None)
    contact_id = UUID(index=True)
    organization_id = UUID(null=True, default=None, index=True)
    notes = Text(null=True, default=None)


class BaselineInteraction(Table, tablename="baseline_interaction"):
    id = UUID(primary_key=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)
    updated_at = Timestamptz()
    channel = Varchar(length=32, index=True)
    direction = Varchar(length=16, null=True, default=None)
    occurred_at = Timestamptz(index=True)
    summary = Text(null=True, default=None)
    contact_id = UUID(index=True)
    deal_id = UUID(null=True, default=None, index=True)


BASELINE_TABLES: tuple[type[Table], ...] = (
    BaselineUser,
    BaselineSession,
    BaselineOrganization,
    BaselineContact,
    BaselineDeal,
    BaselineInteraction,
)


def bind(engine: Engine[Any]) -> None:
    """Point the baseline tables (and only them) at ``engine``."""
    for table in BASELINE_TABLES:
        table._meta.db = engine


async def create_schema() -> None:
    for table in BASELINE_TABLES:
        await table.create_table(if_not_exists=True)
