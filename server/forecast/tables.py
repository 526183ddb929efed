"""Sales quotas: configuration, not customer data (a target per staff member or team and
month). Only :class:`server.forecast.service.Quotas` writes here; the table belongs to the
``pipelines`` migrations app, beside the stages whose probabilities the forecast uses."""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, Integer, Timestamptz, Varchar
from piccolo.table import Table


class SalesQuota(Table, tablename="sales_quota"):
    id = UUID(primary_key=True)
    # A staff member's quota (owner_id set, team ""), or a team's (owner_id 0, team set).
    owner_id = Integer(default=0, index=True)
    team = Varchar(length=64, default="")
    month = Varchar(length=7)  # "2026-12"
    currency = Varchar(length=3)
    amount = BigInt(default=0)  # minor units
    set_by = Integer(default=0)
    updated_at = Timestamptz()
