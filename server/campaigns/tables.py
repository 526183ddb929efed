"""Segment, campaign and delivery tables. Configuration and bookkeeping, not customer data.

A segment stores filters, never a list of people: its members are re-evaluated through the
gateway every time. A delivery row holds only the pseudonymous subject id a gateway record
carries (like the consent tables do) - no address, no name. The unique index on
(campaign_id, subject_id), created by the migration, is what makes sending idempotent:
a person is claimed for a campaign once, before the message goes out.
Only :class:`server.campaigns.service.Campaigns` writes to these tables.
"""

from __future__ import annotations

from piccolo.columns import UUID, BigInt, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class Segment(Table, tablename="segment"):
    id = UUID(primary_key=True)
    name = Varchar(length=100)
    description = Varchar(length=500, default="")
    filters = Text(default="{}")  # JSON: contact field -> list of values (OR within, AND across)
    owner_id = Integer()  # the staff user who created it
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Campaign(Table, tablename="campaign"):
    id = UUID(primary_key=True)
    name = Varchar(length=100)
    purpose = Varchar(length=32)  # marketing_email | marketing_phone
    channel = Varchar(length=8)  # email | phone
    segment_id = UUID(index=True)
    subject_line = Varchar(length=200, default="")
    body = Text(default="")
    status = Varchar(length=12, default="draft")  # draft | sending | sent | cancelled
    created_by = Integer()
    created_at = Timestamptz()
    updated_at = Timestamptz()
    sent_by = Integer(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None)
    sent_count = Integer(default=0)
    cost = BigInt(default=0)  # minor units of cost_currency: the funnel's cost per won deal
    cost_currency = Varchar(length=3, default="")


class CampaignDelivery(Table, tablename="campaign_delivery"):
    id = UUID(primary_key=True)
    campaign_id = UUID(index=True)
    subject_id = UUID()
    # sending (claimed; if a run died here the message may have gone: never retried)
    # | sent | failed (the mail server refused: retried on the next run) | skipped
    status = Varchar(length=12, default="sending")
    error = Varchar(length=40, default="")  # a short code, never a server message
    attempted_at = Timestamptz()
