"""Customer-data tables. Only ``server.gateway`` may import this module (import-linter).

Encrypted fields are ``Text`` columns holding ``cs1.*`` envelopes; blind indexes are
integer ``<field>_bidx`` columns. Every column here must be declared in the data map
(``server/datamap.py``); ``tests/test_datamap.py`` fails otherwise.
"""

from __future__ import annotations

from piccolo.columns import UUID, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class Contact(Table, tablename="contact"):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)  # lists are newest first
    updated_at = Timestamptz()
    first_name = Text()
    last_name = Text()
    email = Text(null=True, default=None)
    email_bidx = Integer(null=True, default=None, index=True)
    phone = Text(null=True, default=None)
    phone_bidx = Integer(null=True, default=None, index=True)
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


class Organization(Table, tablename="organization"):
    id = UUID(primary_key=True)
    subject_id = UUID(index=True)
    owner_id = Integer(index=True)
    team = Varchar(length=64, index=True)
    created_at = Timestamptz(index=True)  # lists are newest first
    updated_at = Timestamptz()
    name = Varchar(length=200)
    domain = Varchar(length=253, null=True, default=None)
    industry = Varchar(length=100, null=True, default=None)
    employee_count = Integer(null=True, default=None)
    annual_revenue = Text(null=True, default=None)
    email = Text(null=True, default=None)
    email_bidx = Integer(null=True, default=None, index=True)
    phone = Text(null=True, default=None)
    phone_bidx = Integer(null=True, default=None, index=True)
    address_line = Text(null=True, default=None)
    city = Text(null=True, default=None)
    postcode = Text(null=True, default=None)
    country = Text(null=True, default=None)
    notes = Text(null=True, default=None)


TABLES: dict[str, type[Table]] = {"contact": Contact, "organization": Organization}
