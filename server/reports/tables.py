"""The report builder's own tables: saved report definitions and the differential-privacy
budget each role spends per month. Neither holds customer data: a definition names record
types, fields and filter values chosen by staff; the budget is a number per role."""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class SavedReport(Table, tablename="saved_report"):
    """A report definition (``server.reports.builder.ReportDefinition`` as JSON) kept by
    its owner, shared with nobody, the owner's team or all staff, and optionally e-mailed
    on a schedule (counts only)."""

    id = UUID(primary_key=True)
    name = Varchar(length=120)
    owner_id = Integer(index=True)  # the staff user who saved it
    team = Varchar(length=64)  # the owner's team when saved (for sharing with the team)
    shared_with = Varchar(length=8, default="none")  # none | team | all
    definition = Text(default="{}")
    schedule = Varchar(length=8, default="none")  # none | daily | weekly | monthly
    last_sent_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class PrivacyBudget(Table, tablename="privacy_budget"):
    """Epsilon spent by one role in one calendar month ("2026-12") on noisy releases."""

    id = UUID(primary_key=True)
    role = Varchar(length=32)
    period = Varchar(length=7)
    spent_micro = BigInt(default=0)  # epsilon spent, in millionths (exact sums)
    releases = Integer(default=0)
    updated_at = Timestamptz()
