# Over 800 lines: the data map is one declaration by design - every record type, field and
# purpose read top to bottom in one place; forms, exports, schemas, redaction and the drift
# tests are generated from it, and a split would scatter what they compare.
"""The data map: one declaration classifies every field of every customer-data table.

Encryption, blind indexes, policy resource names (``contact.email``), input validation,
subject exports and (later) erasure and retention are all derived from this file. Adding
a customer field means one ``Field`` line here plus a migration; a test fails if a column
of a customer table is not declared here.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email


class Category(enum.StrEnum):
    IDENTIFIER = "identifier"  # names
    CONTACT = "contact"  # e-mail, phone
    ADDRESS = "address"
    DEMOGRAPHIC = "demographic"  # birth date
    PROFESSIONAL = "professional"  # job title
    FINANCIAL = "financial"
    FREE_TEXT = "free_text"  # may mention anyone: always encrypted
    BUSINESS = "business"  # facts about a company, not a person
    CLASSIFICATION = "classification"  # CRM workflow values (stage, source)
    REFERENCE = "reference"  # ids of other records


class FieldKind(enum.StrEnum):
    TEXT = "text"
    EMAIL = "email"
    PHONE = "phone"
    DATE = "date"
    DATETIME = "datetime"  # ISO 8601 with a time; stored in UTC
    INTEGER = "integer"
    CHOICE = "choice"
    COUNTRY = "country"
    REFERENCE = "reference"


class LegalBasis(enum.StrEnum):
    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


@dataclass(frozen=True)
class Purpose:
    name: str
    legal_basis: LegalBasis
    description: str
    # Who receives the data for this purpose (Art. 30(1)(d)): categories, not names.
    recipients: tuple[str, ...] = ()
    # The person's own consent or objection decides, person by person (the consent engine,
    # server.consent): the gateway reaches only people with a valid basis for the purpose.
    per_subject: bool = False
    # May people be selected by their customer scores (server.analytics) for this purpose?
    # Direct marketing only; never a purpose whose outcome has legal or similar effect.
    uses_scores: bool = False
    # What the purpose derives about each person (profiling, Art. 4(4)): listed in the
    # record of processing (server.processing_record) beside the data it uses.
    derives: str = ""


PURPOSES: Mapping[str, Purpose] = {
    p.name: p
    for p in (
        Purpose(
            "customer_relationship",
            LegalBasis.CONTRACT,
            "Managing the relationship with customers and prospects: sales, accounts, orders.",
            recipients=("Sales, support and administrative staff of the controller",),
        ),
        Purpose(
            "customer_support",
            LegalBasis.CONTRACT,
            "Answering customer questions, complaints and service requests.",
            recipients=("Customer support staff of the controller",),
        ),
        Purpose(
            "marketing",
            LegalBasis.LEGITIMATE_INTERESTS,
            "Planning campaigns: segments and audience sizes over the few fields marketing "
            "may see; never for anyone who objected to direct marketing.",
            recipients=("Marketing staff of the controller",),
            per_subject=True,
            uses_scores=True,
        ),
        Purpose(
            "marketing_email",
            LegalBasis.CONSENT,
            "Sending newsletters and offers by e-mail, to people who confirmed by double opt-in.",
            recipients=(
                "Marketing staff of the controller",
                "E-mail delivery provider (processor, Art. 28)",
            ),
            per_subject=True,
            uses_scores=True,
        ),
        Purpose(
            "marketing_phone",
            LegalBasis.CONSENT,
            "Offers by telephone call or text message, to people who agreed to it.",
            recipients=("Marketing staff of the controller",),
            per_subject=True,
            uses_scores=True,
        ),
        Purpose(
            "profiling",
            LegalBasis.CONSENT,
            "Analysing interests to tailor offers (never for automated decisions).",
            recipients=("Marketing staff of the controller",),
            per_subject=True,
            derives="Customer scores per person, computed daily from deals, interactions "
            "and cases: RFM ranks and segment, churn risk with the three factors behind it "
            "(a gradient-boosted classifier), historical and predicted value, product-line "
            "suggestions. Sealed under the person's key, deleted when consent ends or they "
            "object; no decision with legal or similar effect is taken on them "
            "(docs/analytics-scores.md).",
        ),
        Purpose(
            "third_party_sharing",
            LegalBasis.CONSENT,
            "Passing contact details to named partners for their own offers.",
            recipients=("Partners named in the privacy notice (independent controllers)",),
            per_subject=True,
        ),
        Purpose(
            "service_communication",
            LegalBasis.CONTRACT,
            "Messages needed to deliver what the customer ordered: invoices, changes of service.",
            recipients=(
                "Customer support staff of the controller",
                "E-mail delivery provider (processor, Art. 28)",
            ),
            per_subject=True,
        ),
        Purpose(
            "compliance",
            LegalBasis.LEGAL_OBLIGATION,
            "Accountability: audits, data-subject requests, record of processing.",
            recipients=(
                "Compliance officers and the data protection officer of the controller",
                "Supervisory authorities, on request",
            ),
        ),
    )
}
DEFAULT_PURPOSE = "customer_relationship"
_ALL_PURPOSES = frozenset(PURPOSES)
_SERVICE = frozenset({"customer_relationship", "customer_support", "compliance"})


@dataclass(frozen=True)
class Field:
    """One customer-data column and everything the product needs to know about it."""

    name: str
    category: Category
    kind: FieldKind
    label: str  # how the field is named in subject exports and the admin
    encrypted: bool
    blind_index: bool = False  # exact-match lookup via a keyed, truncated HMAC
    # Name search: a keyed, truncated token per word and per word prefix (server.vault.words)
    word_index: bool = False
    required: bool = False
    max_length: int = 200
    choices: tuple[str, ...] = ()
    purposes: frozenset[str] = _SERVICE
    filterable: bool = False  # list filter on plaintext columns only
    retention: str = "for the duration of the customer relationship, then 3 years"
    # A reference names the record type it points to: the gateway checks that the target
    # exists and that the actor may read it, so an id cannot probe for hidden records.
    references: str | None = None
    minimum: int | None = None  # integer bounds, checked on input
    maximum: int | None = None
    default: str | None = None  # a choice filled in on create when the field is left out
    # A reference to a record of whichever type the named choice field says (a note's
    # ``record_id`` points at the type in its ``record_type``); checked like ``references``.
    references_from: str | None = None
    # An amount of money in minor units, in the currency held by the named field: forms,
    # lists, exports and subject exports show it in major units (server.money).
    currency_from: str | None = None
    # Filled in by the record type's rule (``Gateway.record_rules``), never taken from
    # input: a client that sends it is refused, and forms have no input for it.
    set_by_rule: bool = False
    # A CSV import matches a row to an existing record on its natural keys, the first one
    # the row has in this order (1, 2, ...); 0: not a natural key (server.csvio.importer).
    natural_key: int = 0
    # A lead's field that its contact takes over when the lead is converted (same name on
    # the contact; server.gateway.leads).
    to_contact: bool = False
    # Two contacts with the same value here are likely one person (server.gateway.duplicate_scan
    # groups by the blind index: only a blind-indexed field can be one).
    duplicate_match: bool = False
    # Bookkeeping a person gains nothing from seeing (a keyed hash, the mailbox a captured
    # mail came from): left off the record's page in the admin; the API still returns it.
    bookkeeping: bool = False

    @property
    def aggregatable(self) -> bool:
        """Stored in clear, so a report may group, filter or bucket on it in SQL (an
        encrypted value is ciphertext under one person's key: nothing to group on)."""
        return not self.encrypted and self.category is not Category.FREE_TEXT

    @property
    def summable(self) -> bool:
        """A clear whole number: a report may sum, average or take the median of it."""
        return self.aggregatable and self.kind is FieldKind.INTEGER

    @property
    def index_column(self) -> str:
        return f"{self.name}_bidx"


# Columns every customer table has that are not customer content: keys, ownership, times.
SYSTEM_COLUMNS: tuple[str, ...] = (
    "id",
    "subject_id",
    "owner_id",
    "team",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class RecordType:
    resource: str  # policy resource name and API noun
    table: str  # database table name
    label: str
    fields: tuple[Field, ...]
    expected_rows: int = 1_000_000  # sizing input for blind-index widths
    # The reference field naming the person this record is about: the record carries that
    # person's subject id and is sealed under their data key, so erasing the person
    # reaches it. None: the record is its own subject (contacts, organizations).
    subject_from: str | None = None
    # References that must be about the same person as the record itself (a task's deal
    # must be its contact's deal): otherwise erasing that person would miss the record.
    same_subject: tuple[str, ...] = ()
    # A person who holds the data-subject rights on their own: found by e-mail address or
    # phone number for a request, signed in to the portal, shown their record there.
    # Contacts and leads (a lead converted keeps its subject id, so it stays one person).
    person: bool = False
    # A choice field whose value "shared" opens the record to the rest of the actor's
    # record scope; otherwise only its owner reads it (captured mail, private to the
    # mailbox owner until the thread is shared). The gateway compiles it into the WHERE.
    private_until: str | None = None
    # The fields that name a record in the admin (its page heading, links to it) and the
    # columns of its list page and search results, in order (admin_ui.pages.records*).
    heading: tuple[str, ...] = ()
    summary: tuple[str, ...] = ()
    # The admin's name for a list of these records (the list page's title, the menu entry,
    # a table on a person's page), and where the record type's pages live: its list at
    # ``page_path``, a record at ``page_path/<id>``; reference fields link there. None: no
    # pages of its own (shown where it belongs, and never linked to as a record).
    plural: str = ""
    page_path: str | None = None
    # Columns the gateway keeps about a record's life cycle, not fields: never a value
    # anyone reads, writes or exports (a contact's ``merged_into``, a person's ``erased``:
    # server.gateway.lifecycle).
    lifecycle_columns: tuple[str, ...] = ()
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    @property
    def columns(self) -> frozenset[str]:
        """Every column the table is allowed to have."""
        names = set(SYSTEM_COLUMNS) | {f.name for f in self.fields}
        names |= {f.index_column for f in self.fields if f.blind_index}
        return frozenset(names | set(self.lifecycle_columns))

    def field(self, name: str) -> Field:
        return self.by_name[name]


_MARKETING = _ALL_PURPOSES
_POSTAL = _SERVICE | {"service_communication"}  # letters about the customer's own orders
_STAGES = ("lead", "prospect", "customer", "former_customer")
_SOURCES = ("web", "event", "referral", "import", "phone", "partner", "manual", "email")

CONTACT = RecordType(
    resource="contact",
    table="contact",
    label="Contact",
    plural="Contacts",
    page_path="/contacts",
    heading=("first_name", "last_name"),
    summary=("email", "phone", "lifecycle_stage"),
    person=True,
    lifecycle_columns=("merged_into", "erased"),
    fields=(
        Field(
            "first_name",
            Category.IDENTIFIER,
            FieldKind.TEXT,
            "First name",
            encrypted=True,
            word_index=True,
            required=True,
            max_length=100,
            purposes=_MARKETING,
        ),
        Field(
            "last_name",
            Category.IDENTIFIER,
            FieldKind.TEXT,
            "Last name",
            encrypted=True,
            word_index=True,
            required=True,
            max_length=100,
            purposes=_MARKETING,
        ),
        Field(
            "email",
            Category.CONTACT,
            FieldKind.EMAIL,
            "E-mail address",
            encrypted=True,
            blind_index=True,
            max_length=254,
            purposes=_MARKETING,
            natural_key=1,
            duplicate_match=True,
        ),
        Field(
            "phone",
            Category.CONTACT,
            FieldKind.PHONE,
            "Phone number",
            encrypted=True,
            blind_index=True,
            max_length=40,
            purposes=_SERVICE | {"marketing_phone", "service_communication"},
            natural_key=2,
            duplicate_match=True,
        ),
        Field(
            "job_title",
            Category.PROFESSIONAL,
            FieldKind.TEXT,
            "Job title",
            encrypted=True,
            max_length=120,
        ),
        Field(
            "birth_date",
            Category.DEMOGRAPHIC,
            FieldKind.DATE,
            "Date of birth",
            encrypted=True,
            max_length=10,
        ),
        Field(
            "address_line",
            Category.ADDRESS,
            FieldKind.TEXT,
            "Street address",
            encrypted=True,
            purposes=_POSTAL,
        ),
        Field(
            "city",
            Category.ADDRESS,
            FieldKind.TEXT,
            "City",
            encrypted=True,
            max_length=100,
            purposes=_POSTAL,
        ),
        Field(
            "postcode",
            Category.ADDRESS,
            FieldKind.TEXT,
            "Postal code",
            encrypted=True,
            max_length=20,
            purposes=_POSTAL,
        ),
        Field(
            "country",
            Category.ADDRESS,
            FieldKind.COUNTRY,
            "Country",
            encrypted=True,
            max_length=2,
            purposes=_MARKETING,
        ),
        Field(
            "notes", Category.FREE_TEXT, FieldKind.TEXT, "Notes", encrypted=True, max_length=5000
        ),
        Field(
            "lifecycle_stage",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Lifecycle stage",
            encrypted=False,
            choices=_STAGES,
            purposes=_MARKETING,
            filterable=True,
        ),
        Field(
            "source",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Source",
            encrypted=False,
            choices=_SOURCES,
            purposes=_MARKETING,
            filterable=True,
        ),
        Field(
            "organization_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Organization",
            encrypted=False,
            purposes=_MARKETING,
            filterable=True,
            references="organization",
        ),
    ),
)

ORGANIZATION = RecordType(
    resource="organization",
    table="organization",
    label="Organization",
    plural="Organizations",
    page_path="/organizations",
    heading=("name",),
    summary=("domain", "industry", "city"),
    fields=(
        Field(
            "name",
            Category.BUSINESS,
            FieldKind.TEXT,
            "Name",
            encrypted=False,
            word_index=True,
            required=True,
            purposes=_MARKETING,
            natural_key=2,
        ),
        Field(
            "domain",
            Category.BUSINESS,
            FieldKind.TEXT,
            "Web domain",
            encrypted=False,
            max_length=253,
            filterable=True,
            natural_key=1,
        ),
        Field(
            "industry",
            Category.BUSINESS,
            FieldKind.TEXT,
            "Industry",
            encrypted=False,
            max_length=100,
            purposes=_MARKETING,
            filterable=True,
        ),
        Field("employee_count", Category.BUSINESS, FieldKind.INTEGER, "Employees", encrypted=False),
        # A sole trader's revenue, phone and address are a person's data: encrypt them.
        Field(
            "annual_revenue",
            Category.FINANCIAL,
            FieldKind.INTEGER,
            "Annual revenue",
            encrypted=True,
        ),
        Field(
            "email",
            Category.CONTACT,
            FieldKind.EMAIL,
            "E-mail address",
            encrypted=True,
            blind_index=True,
            max_length=254,
        ),
        Field(
            "phone",
            Category.CONTACT,
            FieldKind.PHONE,
            "Phone number",
            encrypted=True,
            blind_index=True,
            max_length=40,
        ),
        Field("address_line", Category.ADDRESS, FieldKind.TEXT, "Street address", encrypted=True),
        Field("city", Category.ADDRESS, FieldKind.TEXT, "City", encrypted=True, max_length=100),
        Field(
            "postcode",
            Category.ADDRESS,
            FieldKind.TEXT,
            "Postal code",
            encrypted=True,
            max_length=20,
        ),
        Field(
            "country", Category.ADDRESS, FieldKind.COUNTRY, "Country", encrypted=True, max_length=2
        ),
        Field(
            "notes", Category.FREE_TEXT, FieldKind.TEXT, "Notes", encrypted=True, max_length=5000
        ),
    ),
)

# --- records about one person: deals, interactions, cases ------------------------------
# Each carries its contact's subject id (``subject_from``) and is sealed under that
# person's key. Their plaintext columns are what pipeline and workload totals need and
# name nobody (stage, amount, channel, status, dates); anything typed by staff about the
# person is free text and encrypted, titles included: "Renewal for Jane Doe" names her.

CURRENCIES = ("EUR", "GBP", "USD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY", "CAD", "AUD")
# The stages of the default pipeline; others are configured (server.pipelines).
DEAL_STAGES = ("qualification", "proposal", "negotiation", "won", "lost")
LOST_REASONS = ("price", "competitor", "timing", "no_budget", "no_decision", "other")
# A deal's forecast category when someone sets one (server.forecast); empty: it follows
# the deal's probability (commit from 60%, best case from 30%, pipeline below).
FORECAST_CATEGORIES = ("commit", "best_case", "pipeline")
CHANNELS = ("email", "phone_call", "meeting", "chat", "web_form", "store_visit", "letter")
CASE_KINDS = ("service_request", "complaint", "product_return", "information_request")
PRIORITIES = ("low", "normal", "high", "urgent")
CASE_STATUSES = ("open", "pending", "resolved", "closed")
_PIPELINE = _SERVICE | {"marketing"}  # deal totals for campaign planning: no person named
_SUPPORT = frozenset({"customer_support", "customer_relationship", "compliance"})
# The few plaintext facts customer-value and churn scores are computed from (server.analytics,
# docs/analytics-scores.md): only for people with a basis for profiling (the gateway asks).
_PROFILED_DEAL = _PIPELINE | {"profiling"}


def _contact_ref(label: str = "Contact") -> Field:
    return Field(
        "contact_id",
        Category.REFERENCE,
        FieldKind.REFERENCE,
        label,
        encrypted=False,
        required=True,
        filterable=True,
        references="contact",
    )


def _campaign_ref(purposes: frozenset[str]) -> Field:
    """A campaign id (configuration, server.campaigns; the funnel ignores unknown ids)."""
    return Field(
        "campaign_id",
        Category.REFERENCE,
        FieldKind.REFERENCE,
        "Campaign",
        encrypted=False,
        filterable=True,
        purposes=purposes,
    )


DEAL = RecordType(
    resource="deal",
    table="deal",
    label="Deal",
    plural="Deals",
    page_path="/deals",
    heading=("title",),
    summary=("contact_id", "organization_id", "owner_id", "stage", "amount", "expected_close"),
    subject_from="contact_id",
    fields=(
        Field(
            "title",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Title",
            encrypted=True,
            word_index=True,
            required=True,
        ),
        Field(
            "amount",
            Category.BUSINESS,
            FieldKind.INTEGER,
            "Amount",
            encrypted=False,
            minimum=0,
            purposes=_PROFILED_DEAL,
            currency_from="currency",
        ),
        Field(
            "currency",
            Category.BUSINESS,
            FieldKind.CHOICE,
            "Currency",
            encrypted=False,
            max_length=3,
            choices=CURRENCIES,
            purposes=_PROFILED_DEAL,
        ),
        # A stage key of the deal's pipeline: configuration (server.pipelines), so the
        # gateway's deal rule checks it and fills in the first stage when left out.
        Field(
            "stage",
            Category.CLASSIFICATION,
            FieldKind.TEXT,
            "Stage",
            encrypted=False,
            max_length=32,
            purposes=_PROFILED_DEAL,
            filterable=True,
        ),
        Field(
            "probability",
            Category.CLASSIFICATION,
            FieldKind.INTEGER,
            "Probability (%)",
            encrypted=False,
            minimum=0,
            maximum=100,
        ),
        Field(
            "expected_close",
            Category.CLASSIFICATION,
            FieldKind.DATE,
            "Expected close",
            encrypted=False,
            max_length=10,
        ),
        # Overrides the category the probability gives, for this deal's forecast
        # (server.forecast): a rep's judgement, e.g. "commit" on a verbal yes at 50%.
        Field(
            "forecast_category",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Forecast category",
            encrypted=False,
            max_length=16,
            choices=FORECAST_CATEGORIES,
        ),
        Field(
            "lost_reason",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Reason lost",
            encrypted=False,
            max_length=32,
            choices=LOST_REASONS,
        ),
        _contact_ref(),
        Field(
            "organization_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Organization",
            encrypted=False,
            filterable=True,
            references="organization",
        ),
        Field(
            "notes", Category.FREE_TEXT, FieldKind.TEXT, "Notes", encrypted=True, max_length=5000
        ),
        # The pipeline (configuration, server.pipelines; the default one when left out).
        Field(
            "pipeline_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Pipeline",
            encrypted=False,
            filterable=True,
            purposes=_PROFILED_DEAL,
        ),
        # When the deal entered its stage (the board's age in stage): set by the deal rule
        # whenever the stage changes, never by a client (server.pipelines).
        Field(
            "stage_entered_at",
            Category.CLASSIFICATION,
            FieldKind.DATETIME,
            "In stage since",
            encrypted=False,
            max_length=40,
            purposes=_PIPELINE,
            set_by_rule=True,
        ),
        # The campaign that brought the deal (server.campaigns): the funnel's attribution,
        # by a field staff set, never by tracking anyone's clicks or opens.
        _campaign_ref(_PIPELINE),
    ),
)

INTERACTION = RecordType(
    resource="interaction",
    table="interaction",
    label="Interaction",
    plural="Interactions",
    page_path="/interactions",
    heading=("channel", "occurred_at"),
    summary=("contact_id", "occurred_at", "direction", "summary"),
    subject_from="contact_id",
    fields=(
        Field(
            "channel",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Channel",
            encrypted=False,
            required=True,
            max_length=32,
            choices=CHANNELS,
            purposes=_SUPPORT,
            filterable=True,
        ),
        Field(
            "direction",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Direction",
            encrypted=False,
            max_length=16,
            choices=("inbound", "outbound"),
            purposes=_SUPPORT,
            filterable=True,
        ),
        Field(
            "occurred_at",
            Category.CLASSIFICATION,
            FieldKind.DATETIME,
            "When",
            encrypted=False,
            required=True,
            max_length=40,
            purposes=_SUPPORT | {"profiling"},
        ),
        Field(
            "summary",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Summary",
            encrypted=True,
            max_length=5000,
            purposes=_SUPPORT,
        ),
        # Who else took part (colleagues, the customer's assistant): names typed by staff,
        # so free text, encrypted and covered by erasure's mention scrub like the summary.
        Field(
            "participants",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Participants",
            encrypted=True,
            max_length=1000,
            purposes=_SUPPORT,
        ),
        _contact_ref(),
        Field(
            "deal_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Deal",
            encrypted=False,
            filterable=True,
            references="deal",
            purposes=_SUPPORT,
        ),
    ),
)

CASE = RecordType(
    resource="case",
    table="support_case",  # "case" is an SQL keyword
    label="Case",
    plural="Cases",
    page_path="/cases",
    heading=("title",),
    summary=("contact_id", "kind", "priority", "status", "due_at"),
    subject_from="contact_id",
    fields=(
        Field(
            "title",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Title",
            encrypted=True,
            word_index=True,
            required=True,
            purposes=_SUPPORT,
        ),
        Field(
            "description",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Description",
            encrypted=True,
            max_length=5000,
            purposes=_SUPPORT,
        ),
        Field(
            "kind",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Kind",
            encrypted=False,
            required=True,
            max_length=32,
            choices=CASE_KINDS,
            purposes=_SUPPORT,
            filterable=True,
        ),
        Field(
            "priority",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Priority",
            encrypted=False,
            max_length=16,
            choices=PRIORITIES,
            default="normal",
            purposes=_SUPPORT,
            filterable=True,
        ),
        Field(
            "status",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Status",
            encrypted=False,
            max_length=16,
            choices=CASE_STATUSES,
            default="open",
            purposes=_SUPPORT,
            filterable=True,
        ),
        Field(
            "due_at",
            Category.CLASSIFICATION,
            FieldKind.DATETIME,
            "Due (SLA)",
            encrypted=False,
            max_length=40,
            purposes=_SUPPORT,
        ),
        _contact_ref(),
    ),
)

# --- leads: people who are not yet contacts ----------------------------------------------
# A lead is its own subject, like a contact: it gets a data key at capture, and converting
# it hands that key (and subject id) on to the contact, so the person's history is one.
LEAD_STATUSES = ("new", "contacted", "qualified", "disqualified", "converted")
DISQUALIFIED_REASONS = ("no_interest", "no_budget", "not_a_fit", "unreachable", "duplicate", "spam")
_LEAD_TOTALS = _SERVICE | {"marketing"}  # lead counts by status and source: nobody named
# server/dsr/retention.py's ``stale_leads`` rule applies it (a test keeps the two equal).
_LEAD_RETENTION = "until converted to a contact; a lead left unconverted for 2 years is erased"

LEAD = RecordType(
    resource="lead",
    table="lead",
    label="Lead",
    plural="Leads",
    page_path="/leads",
    heading=("first_name", "last_name"),
    summary=("email", "status", "source"),
    person=True,
    lifecycle_columns=("erased",),
    fields=(
        Field(
            "first_name",
            Category.IDENTIFIER,
            FieldKind.TEXT,
            "First name",
            encrypted=True,
            word_index=True,
            retention=_LEAD_RETENTION,
            required=True,
            max_length=100,
            to_contact=True,
        ),
        Field(
            "last_name",
            Category.IDENTIFIER,
            FieldKind.TEXT,
            "Last name",
            encrypted=True,
            word_index=True,
            retention=_LEAD_RETENTION,
            required=True,
            max_length=100,
            to_contact=True,
        ),
        Field(
            "email",
            Category.CONTACT,
            FieldKind.EMAIL,
            "E-mail address",
            encrypted=True,
            retention=_LEAD_RETENTION,
            blind_index=True,
            max_length=254,
            natural_key=1,
            to_contact=True,
        ),
        Field(
            "phone",
            Category.CONTACT,
            FieldKind.PHONE,
            "Phone number",
            encrypted=True,
            retention=_LEAD_RETENTION,
            blind_index=True,
            max_length=40,
            natural_key=2,
            to_contact=True,
        ),
        # Who the person works for (or, for a sole trader, their own trading name).
        Field(
            "company_name",
            Category.PROFESSIONAL,
            FieldKind.TEXT,
            "Company",
            encrypted=True,
            retention=_LEAD_RETENTION,
            max_length=200,
        ),
        Field(
            "message",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Message",
            encrypted=True,
            max_length=5000,
            retention=_LEAD_RETENTION,
        ),
        Field(
            "source",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Source",
            encrypted=False,
            max_length=32,
            choices=_SOURCES,
            purposes=_LEAD_TOTALS,
            filterable=True,
            to_contact=True,
        ),
        Field(
            "status",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Status",
            encrypted=False,
            max_length=16,
            choices=LEAD_STATUSES,
            default="new",
            purposes=_LEAD_TOTALS,
            filterable=True,
        ),
        Field(
            "disqualified_reason",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Reason disqualified",
            encrypted=False,
            max_length=32,
            choices=DISQUALIFIED_REASONS,
        ),
        Field(
            "converted_contact_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Converted to contact",
            encrypted=False,
            references="contact",
        ),
        Field(
            "converted_deal_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Converted with deal",
            encrypted=False,
            references="deal",
        ),
        _campaign_ref(_LEAD_TOTALS),
    ),
)

# --- tasks and notes: staff work about a record -------------------------------------------
# A task about a person (``contact_id``) is sealed under their key; a task about nobody
# gets a subject of its own (kind "task"), so its title is still encrypted and deleting it
# shreds that key. Its owner is the person who must do it: record scope, "my day" and
# reassignment all work on ``owner_id`` (the creator is in the audit trail).
TASK_STATUSES = ("open", "done")
TASK_PRIORITIES = ("low", "normal", "high")
# What a note may be attached to; the note is about that record's person.
NOTE_TARGETS = ("contact", "organization", "deal", "interaction", "case", "lead", "task")

TASK = RecordType(
    resource="task",
    table="task",
    label="Task",
    plural="Tasks",
    page_path="/tasks",
    heading=("title",),
    summary=("due_at", "status", "priority"),
    subject_from="contact_id",
    same_subject=("deal_id", "case_id"),
    fields=(
        Field("title", Category.FREE_TEXT, FieldKind.TEXT, "Title", encrypted=True, required=True),
        Field(
            "due_at",
            Category.CLASSIFICATION,
            FieldKind.DATETIME,
            "Due",
            encrypted=False,
            required=True,
            max_length=40,
            filterable=True,
        ),
        Field(
            "status",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Status",
            encrypted=False,
            max_length=16,
            choices=TASK_STATUSES,
            default="open",
            filterable=True,
        ),
        Field(
            "priority",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Priority",
            encrypted=False,
            max_length=16,
            choices=TASK_PRIORITIES,
            default="normal",
            filterable=True,
        ),
        Field(
            "remind_at",
            Category.CLASSIFICATION,
            FieldKind.DATETIME,
            "Remind at",
            encrypted=False,
            max_length=40,
            filterable=True,
        ),
        Field(
            "contact_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Contact",
            encrypted=False,
            filterable=True,
            references="contact",
        ),
        Field(
            "deal_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Deal",
            encrypted=False,
            filterable=True,
            references="deal",
        ),
        Field(
            "case_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Case",
            encrypted=False,
            filterable=True,
            references="case",
        ),
    ),
)

NOTE = RecordType(
    resource="note",
    table="note",
    label="Note",
    plural="Notes",
    page_path="/notes",
    heading=("body",),
    summary=("record_type", "body"),
    subject_from="record_id",
    fields=(
        Field(
            "body",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Note",
            encrypted=True,
            required=True,
            max_length=5000,
        ),
        Field(
            "record_type",
            Category.REFERENCE,
            FieldKind.CHOICE,
            "Attached to (type)",
            encrypted=False,
            required=True,
            max_length=32,
            choices=NOTE_TARGETS,
            filterable=True,
        ),
        Field(
            "record_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Attached to",
            encrypted=False,
            required=True,
            filterable=True,
            references_from="record_type",
        ),
    ),
)

# --- captured mail: e-mail to and from a person, synced from a staff mailbox -------------
# One record per person a message matched (by the blind index of their address), sealed
# under that person's key: erasing them reaches it, and a message to two people is two
# records under two keys. Private to the mailbox owner until they share the thread
# (``private_until``). Nothing about unmatched mail is ever stored (server.mailcapture).
MAIL_TARGETS = ("contact", "lead")
MAIL_VISIBILITY = ("private", "shared")
# server/dsr/retention.py's ``old_captured_mail`` rule applies it (a test keeps them equal).
_MAIL_RETENTION = "2 years after capture, then the subject, body and addresses are erased"

MAIL = RecordType(
    resource="mail",
    table="captured_mail",
    label="Captured e-mail",
    plural="Captured e-mail",
    page_path="/mail",
    subject_from="record_id",
    private_until="visibility",
    heading=("subject",),
    summary=("record_id", "occurred_at", "direction", "visibility"),
    fields=(
        Field(
            "record_type",
            Category.REFERENCE,
            FieldKind.CHOICE,
            "About (type)",
            encrypted=False,
            required=True,
            max_length=32,
            choices=MAIL_TARGETS,
            filterable=True,
            purposes=_SUPPORT,
        ),
        Field(
            "record_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "About",
            encrypted=False,
            required=True,
            filterable=True,
            references_from="record_type",
            purposes=_SUPPORT,
        ),
        Field(
            "direction",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Direction",
            encrypted=False,
            max_length=16,
            choices=("inbound", "outbound"),
            purposes=_SUPPORT,
            filterable=True,
        ),
        Field(
            "occurred_at",
            Category.CLASSIFICATION,
            FieldKind.DATETIME,
            "Sent",
            encrypted=False,
            required=True,
            max_length=40,
            purposes=_SUPPORT,
        ),
        Field(
            "subject",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Subject",
            encrypted=True,
            max_length=1000,
            purposes=_SUPPORT,
            retention=_MAIL_RETENTION,
        ),
        Field(
            "body",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Body",
            encrypted=True,
            max_length=100_000,
            purposes=_SUPPORT,
            retention=_MAIL_RETENTION,
        ),
        # From, To and Cc as written: other people's addresses too, so free text that
        # erasing any of them scrubs.
        Field(
            "correspondents",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "From, to and cc",
            encrypted=True,
            max_length=5000,
            purposes=_SUPPORT,
            retention=_MAIL_RETENTION,
        ),
        # Names and sizes only ("offer.pdf (12 KB)"), one a line; never the content.
        Field(
            "attachments",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Attachments",
            encrypted=True,
            max_length=5000,
            purposes=_SUPPORT,
            retention=_MAIL_RETENTION,
        ),
        Field(
            "visibility",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Visibility",
            encrypted=False,
            max_length=16,
            choices=MAIL_VISIBILITY,
            default="private",
            purposes=_SUPPORT,
            filterable=True,
        ),
        # Keyed hashes (HMAC under a vault-derived key), never a Message-ID: which thread a
        # message belongs to (shared together) and which message it is (captured once).
        Field(
            "thread_key",
            Category.REFERENCE,
            FieldKind.TEXT,
            "Thread",
            encrypted=False,
            max_length=64,
            purposes=_SUPPORT,
            filterable=True,
            bookkeeping=True,
        ),
        Field(
            "message_key",
            Category.REFERENCE,
            FieldKind.TEXT,
            "Message",
            encrypted=False,
            max_length=64,
            purposes=_SUPPORT,
            filterable=True,
            bookkeeping=True,
        ),
        Field(
            "mailbox_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Mailbox",
            encrypted=False,
            filterable=True,
            purposes=_SUPPORT,
            bookkeeping=True,
        ),
    ),
)

# --- survey answers: CSAT after a case, NPS surveys (issue 21, item 6; server.feedback) ----
# An answer to a survey that is not anonymous is a record about the person: sealed under
# their key, score included (a plaintext score would outlive erasure on the tombstone).
# Results come from counts kept apart, with no link to anyone (server.feedback.tables).
SURVEY_KINDS = ("csat", "nps")
_FEEDBACK = _SUPPORT | {"marketing"}
# server/dsr/retention.py's ``old_feedback`` rule applies it (a test keeps the two equal).
_FEEDBACK_RETENTION = "the comment is erased 2 years after the answer; the rest as the contact"

FEEDBACK = RecordType(
    resource="feedback",
    table="feedback_answer",
    label="Survey answer",
    plural="Survey answers",
    page_path=None,  # counted on the feedback results page (/feedback)
    heading=("kind",),
    summary=("contact_id", "kind", "score"),
    subject_from="contact_id",
    same_subject=("case_id",),
    fields=(
        Field(
            "survey_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Survey",
            encrypted=False,
            required=True,
            filterable=True,
            purposes=_FEEDBACK,
        ),
        Field(
            "kind",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Survey kind",
            encrypted=False,
            required=True,
            max_length=8,
            choices=SURVEY_KINDS,
            purposes=_FEEDBACK,
            filterable=True,
        ),
        Field(
            "score",
            Category.CLASSIFICATION,
            FieldKind.INTEGER,
            "Score",
            encrypted=True,
            required=True,
            minimum=0,
            maximum=10,
            purposes=_FEEDBACK,
        ),
        Field(
            "comment",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Comment",
            encrypted=True,
            max_length=2000,
            purposes=_FEEDBACK,
            retention=_FEEDBACK_RETENTION,
        ),
        Field(
            "case_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Case",
            encrypted=False,
            filterable=True,
            references="case",
            purposes=_FEEDBACK,
        ),
        Field(
            "contact_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Contact",
            encrypted=False,
            required=True,
            filterable=True,
            references="contact",
            purposes=_FEEDBACK,
        ),
    ),
)

# --- service desk: a case's conversation (issue 21; server/servicedesk, docs/service-desk.md)
# Each message is about the case's person (sealed under their key, erased with them): an
# e-mail they sent, a message they wrote in the portal, a reply from staff (e-mailed to
# them) or an internal note (never shown in the portal; in their subject export).
CASE_MESSAGE_KINDS = ("email", "portal", "reply", "note")
_MESSAGE_RETENTION = "3 years after it was written, then the text is erased"

CASE_MESSAGE = RecordType(
    resource="case_message",
    table="case_message",
    label="Case message",
    plural="Case messages",
    page_path=None,  # the conversation on its case in the service desk (/desk)
    heading=("kind",),
    summary=("case_id", "kind"),
    subject_from="case_id",
    fields=(
        Field(
            "body",
            Category.FREE_TEXT,
            FieldKind.TEXT,
            "Message",
            encrypted=True,
            required=True,
            max_length=20000,
            purposes=_SUPPORT,
            retention=_MESSAGE_RETENTION,
        ),
        Field(
            "kind",
            Category.CLASSIFICATION,
            FieldKind.CHOICE,
            "Kind",
            encrypted=False,
            required=True,
            max_length=16,
            choices=CASE_MESSAGE_KINDS,
            purposes=_SUPPORT,
            filterable=True,
        ),
        Field(
            "case_id",
            Category.REFERENCE,
            FieldKind.REFERENCE,
            "Case",
            encrypted=False,
            required=True,
            purposes=_SUPPORT,
            filterable=True,
            references="case",
        ),
    ),
)

RECORD_TYPES: Mapping[str, RecordType] = {
    rt.resource: rt
    for rt in (
        CONTACT,
        ORGANIZATION,
        DEAL,
        INTERACTION,
        CASE,
        LEAD,
        TASK,
        NOTE,
        MAIL,
        FEEDBACK,
        CASE_MESSAGE,
    )
}

# The record types of people with the data-subject rights, in the order a person's own
# record is chosen when they have several under one subject id (a converted lead's contact
# comes before the lead).
PERSON_TYPES: tuple[RecordType, ...] = tuple(rt for rt in RECORD_TYPES.values() if rt.person)
_SELF_CORRECTED = frozenset({Category.IDENTIFIER, Category.CONTACT, Category.ADDRESS})


def natural_keys(rt: RecordType) -> tuple[str, ...]:
    """The fields an import matches existing records on, in order of preference."""
    keyed = sorted((f for f in rt.fields if f.natural_key), key=lambda f: f.natural_key)
    return tuple(f.name for f in keyed)


def duplicate_match_fields(rt: RecordType) -> tuple[str, ...]:
    """The blind-indexed fields on which two records are likely the same person."""
    return tuple(f.name for f in rt.fields if f.duplicate_match and f.blind_index)


def self_correctable(rt: RecordType) -> tuple[str, ...]:
    """The fields a person may correct themself in the portal: their names, phone and
    address. Not the e-mail address: it is what proves who they are, and changing it needs
    staff to verify the new one."""
    return tuple(
        f.name
        for f in rt.fields
        if f.category in _SELF_CORRECTED and f.kind != FieldKind.EMAIL and not f.set_by_rule
    )


# --- validation and normalisation -------------------------------------------------------


class InvalidValues(ValueError):
    """Input that does not fit the data map; ``problems`` maps field -> reason (no values)."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


def shown_name(name: str) -> str:
    """A client-supplied *key* as it may appear in an error: only if it looks like a field
    name. A key is client input too, and someone could type an e-mail address into it."""
    return name if _FIELD_NAME.match(name) else "(unrecognised field name)"


def normalize_email(value: str) -> str:
    """Canonical form for storage and blind indexes (syntax only, no DNS: no network here)."""
    result = validate_email(value, check_deliverability=False)
    return result.normalized.lower()


def normalize_phone(value: str, default_region: str) -> str:
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_index_value(spec: Field, value: str, default_region: str) -> str:
    value = value.strip()  # as clean_values() does before storing: a lookup must match it
    if spec.kind is FieldKind.EMAIL:
        return normalize_email(value)
    if spec.kind is FieldKind.PHONE:
        return normalize_phone(value, default_region)
    return " ".join(value.split()).casefold()


_COUNTRY = re.compile(r"^[A-Z]{2}$")
# Whole numbers stored in plaintext live in INTEGER columns, 32 bits on PostgreSQL (a deal
# amount of 2**40 was a 500 there); encrypted ones are text, exact in JSON up to 2**53.
PLAIN_INTEGER_LIMIT = 2**31
SEALED_INTEGER_LIMIT = 2**53
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _clean(spec: Field, raw: Any, default_region: str) -> Any:
    """Check one value against its declaration; return the canonical value to store."""
    if spec.kind is FieldKind.INTEGER:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError("expected a whole number")
        limit = SEALED_INTEGER_LIMIT if spec.encrypted else PLAIN_INTEGER_LIMIT
        if not -limit < raw < limit:
            raise ValueError("number out of range")
        if spec.minimum is not None and raw < spec.minimum:
            raise ValueError(f"must be at least {spec.minimum}")
        if spec.maximum is not None and raw > spec.maximum:
            raise ValueError(f"must be at most {spec.maximum}")
        return raw
    if spec.kind is FieldKind.REFERENCE:
        if not isinstance(raw, str):
            raise ValueError("expected an id (UUID string)")
        try:
            return str(uuid.UUID(raw))
        except ValueError:
            raise ValueError("not a valid id") from None
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    value = raw.strip()
    if len(value) > spec.max_length:
        raise ValueError(f"longer than {spec.max_length} characters")
    if spec.required and not value:
        raise ValueError("must not be empty")
    if not value:
        return None
    if spec.kind is FieldKind.EMAIL:
        try:
            return normalize_email(value)
        except EmailNotValidError:
            raise ValueError("not a valid e-mail address") from None
    if spec.kind is FieldKind.PHONE:
        return normalize_phone(value, default_region)
    if spec.kind is FieldKind.DATE:
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("expected a date as YYYY-MM-DD") from None
    if spec.kind is FieldKind.DATETIME:
        return _utc_iso(value)
    if spec.kind is FieldKind.CHOICE and value not in spec.choices:
        raise ValueError("must be one of: " + ", ".join(spec.choices))
    if spec.kind is FieldKind.COUNTRY:
        value = value.upper()
        if not _COUNTRY.match(value):
            raise ValueError("expected a two-letter ISO 3166 country code")
    return value


def _utc_iso(value: str) -> str:
    """An ISO 8601 date-time in one canonical UTC spelling (no offset means UTC), so that
    equal moments store and compare equal whatever zone they were typed in."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected a date and time as YYYY-MM-DDTHH:MM (ISO 8601)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat()


def clean_values(
    record_type: RecordType,
    values: Mapping[str, Any],
    *,
    partial: bool,
    default_region: str,
) -> dict[str, Any]:
    """Validate input for a create (``partial=False``) or update; collect every problem.

    Error messages name the field and the rule, never the submitted value: they end up in
    logs and API responses, and the value may be someone's personal data.
    """
    problems: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    for name, raw in values.items():
        spec = record_type.by_name.get(name)
        if spec is None:
            problems[shown_name(name)] = "unknown field"
            continue
        if spec.set_by_rule:
            problems[name] = "is set automatically; leave it out"
            continue
        if raw is None:
            if spec.required:
                problems[name] = "is required"
            else:
                cleaned[name] = None
            continue
        try:
            cleaned[name] = _clean(spec, raw, default_region)
        except ValueError as exc:
            problems[name] = str(exc)
    if not partial:
        for spec in record_type.fields:
            if spec.name in values:
                continue
            if spec.default is not None:
                cleaned[spec.name] = spec.default
            elif spec.required:
                problems[spec.name] = "is required"
    if problems:
        raise InvalidValues(problems)
    return cleaned
