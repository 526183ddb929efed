"""The service desk's own tables. None holds personal data: ids, pseudonymous subject ids,
times, codes and configuration. What people wrote lives in ``case_message`` records
(server.gateway, sealed under the person's key); canned responses are checked on save to
carry no e-mail address or phone number (server.servicedesk.canned)."""

from __future__ import annotations

from piccolo.columns import UUID, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class SlaPolicy(Table, tablename="desk_sla_policy"):
    """Business hours in a time zone, holidays, and targets per priority (minutes of
    business time). ``hours``: JSON {"0": ["09:00", "17:00"], ...} by ISO weekday - 1
    (Monday 0); ``holidays``: JSON list of ISO dates; ``targets``: JSON {priority:
    {"first_response": minutes, "resolution": minutes}}."""

    id = Serial(primary_key=True)
    name = Varchar(length=80)
    time_zone = Varchar(length=64, default="UTC")
    hours = Text(default="{}")
    holidays = Text(default="[]")
    targets = Text(default="{}")
    warn_percent = Integer(default=80)  # a warning when this share of a target has passed
    updated_at = Timestamptz()


class DeskQueue(Table, tablename="desk_queue"):
    """One queue per team: how new cases are routed, the SLA policy, and the team lead
    who is told when a case breaches its SLA."""

    id = Serial(primary_key=True)
    name = Varchar(length=80)
    team = Varchar(length=64, unique=True)
    routing = Varchar(length=16, default="round_robin")  # round_robin | least_loaded
    sla_policy_id = Integer(null=True, default=None)
    lead_id = Integer(null=True, default=None)  # staff user id of the team lead
    last_assigned_id = Integer(null=True, default=None)  # the round-robin cursor
    updated_at = Timestamptz()


class DeskCase(Table, tablename="desk_case"):
    """The desk's state of one case: its reference, queue, assignee, SLA clock and the
    data-subject-request flag. Deleted once the case is erased or deleted."""

    case_id = UUID(primary_key=True)
    case_ref = Varchar(length=16, unique=True)  # "C-7KQ2M9XD": random, says nothing about order
    subject_id = UUID(index=True)  # the case's person (pseudonymous, as in the audit trail)
    contact_id = UUID(index=True)
    queue_id = Integer(null=True, default=None, index=True)
    team = Varchar(length=64, index=True)
    assignee_id = Integer(null=True, default=None, index=True)
    channel = Varchar(length=16)  # email | portal | staff
    priority = Varchar(length=16, default="normal")
    state = Varchar(length=16, default="open", index=True)  # open | pending | resolved | closed
    opened_at = Timestamptz()
    first_response_due = Timestamptz(null=True, default=None, index=True)
    resolution_due = Timestamptz(null=True, default=None, index=True)
    # The deadline running now (first response until there is one, then resolution);
    # NO_DEADLINE when none runs, so queues sort the same on both engines.
    next_due = Timestamptz(index=True)
    first_response_at = Timestamptz(null=True, default=None)
    resolved_at = Timestamptz(null=True, default=None)
    sla = Varchar(length=16, default="ok", index=True)  # ok | warning | breached | met | none
    warned_at = Timestamptz(null=True, default=None)
    breached_at = Timestamptz(null=True, default=None)
    escalated_to = Integer(null=True, default=None)
    last_customer_at = Timestamptz(null=True, default=None)
    # A message read like a data-subject request: its kind (access, erasure ...), which
    # message, and the request compliance opened from it. Codes and ids only.
    dsr_kind = Varchar(length=16, default="", index=True)
    dsr_message_id = UUID(null=True, default=None)
    dsr_flagged_at = Timestamptz(null=True, default=None)
    dsr_request_id = Varchar(length=64, default="")
    updated_at = Timestamptz()


class MailThread(Table, tablename="desk_mail_thread"):
    """Message-IDs of a case's mail (our replies and the person's messages), as keyed
    hashes: how a reply's ``In-Reply-To`` or ``References`` finds its case."""

    id = Serial(primary_key=True)
    digest = Varchar(length=64, unique=True)
    case_id = UUID(index=True)
    created_at = Timestamptz()


class CannedResponse(Table, tablename="desk_canned_response"):
    """A team's reusable reply text. No personal data (checked on save)."""

    id = Serial(primary_key=True)
    team = Varchar(length=64, index=True)
    title = Varchar(length=120)
    body = Text()
    updated_by = Integer()
    updated_at = Timestamptz()


class PortalPost(Table, tablename="desk_portal_post"):
    """When a person opened a case or wrote in the portal: the rate limit counts these.
    Rows older than a day are removed by the SLA sweep."""

    id = Serial(primary_key=True)
    subject_id = UUID(index=True)
    at = Timestamptz(index=True)
