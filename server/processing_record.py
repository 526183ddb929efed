"""The record of processing activities (GDPR Art. 30(1)), generated, not written by hand.

A hand-kept record drifts from what the software does. This one is built from the same
declarations the product runs on: the data map (record types, fields, their categories,
purposes and retention), the purposes registry (legal bases, recipients), the policy
(which staff roles use which purpose, in which record scope, with which fields) and the
settings (who the controller and the DPO are). Adding a field or a purpose changes the
record on the next request; a test fails if a personal-data category or a purpose is
missing from it.

The security measures (Art. 30(1)(g), Art. 32) describe what the code does - so they are
stated here, next to the code, and numbers (fields encrypted, roles with a second factor,
session lifetimes) are derived where the product has them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from policy.enforcer import MFA_RIGHT, ROLES, PolicyEngine
from server.datamap import PURPOSES, RECORD_TYPES, Category, Field, LegalBasis, RecordType
from server.settings import Settings

FORMAT = "consentry-record-of-processing/1"
UNDESCRIBED = "Not described yet (add the record type to DATA_SUBJECTS)"

LEGAL_BASIS_LABELS: Mapping[LegalBasis, str] = {
    LegalBasis.CONSENT: "Consent - Art. 6(1)(a) GDPR",
    LegalBasis.CONTRACT: "Performance of a contract - Art. 6(1)(b) GDPR",
    LegalBasis.LEGAL_OBLIGATION: "Legal obligation - Art. 6(1)(c) GDPR",
    LegalBasis.VITAL_INTERESTS: "Vital interests - Art. 6(1)(d) GDPR",
    LegalBasis.PUBLIC_TASK: "Public task - Art. 6(1)(e) GDPR",
    LegalBasis.LEGITIMATE_INTERESTS: "Legitimate interests - Art. 6(1)(f) GDPR",
}
CATEGORY_LABELS: Mapping[Category, str] = {
    Category.IDENTIFIER: "Identification data (names)",
    Category.CONTACT: "Contact details (e-mail address, phone number)",
    Category.ADDRESS: "Postal address",
    Category.DEMOGRAPHIC: "Demographic data (date of birth)",
    Category.PROFESSIONAL: "Professional data (job title)",
    Category.FINANCIAL: "Financial data",
    Category.FREE_TEXT: "Free-text notes (may mention anyone)",
    Category.BUSINESS: "Company information",
    Category.CLASSIFICATION: "Customer-relationship classification (lifecycle stage, source)",
    Category.REFERENCE: "Links to other records (e.g. employer organization)",
}
# Facts about a company, not a person: not personal data, so not listed as a category.
NON_PERSONAL = frozenset({Category.BUSINESS})
# Whose data each record type holds (Art. 30(1)(c)). A new record type must be added here;
# a test fails until it is.
DATA_SUBJECTS: Mapping[str, str] = {
    "contact": "Customers and prospects (contacts), including leads and former customers",
    "organization": (
        "Contact persons of customer and prospect organizations, and sole traders "
        "(whose business details are personal data)"
    ),
    "deal": "Customers and prospects with whom a sale is negotiated (the deal's contact)",
    "interaction": (
        "Customers and prospects who wrote to, called or met the controller's staff, "
        "other people who took part (participants), and people mentioned in the "
        "conversation summaries"
    ),
    "case": "Customers who raised a service request, complaint, return or question",
    "lead": "Prospects who enquired (web form, event, referral) and are not yet customers",
    "task": "Customers and prospects a follow-up task is about, and people named in its title",
    "note": (
        "The person whose record a staff note is attached to, and people mentioned in the note"
    ),
    "mail": (
        "Customers and prospects who e-mailed, or were e-mailed by, a staff member whose "
        "mailbox is connected (matched by their address; unmatched mail is not kept), other "
        "people copied on those messages, and people mentioned in them"
    ),
    "feedback": (
        "Customers who answered a satisfaction (CSAT) or recommendation (NPS) survey that is "
        "not anonymous, and people mentioned in their comments"
    ),
    "case_message": (
        "Customers who wrote to support (e-mail, portal) or were answered about a case, and "
        "people mentioned in those messages or in staff's internal notes on the case"
    ),
}
TRANSFERS = (
    "None configured: this installation transfers no personal data to a third country or "
    "an international organization."
)


def is_personal(spec: Field) -> bool:
    return spec.category not in NON_PERSONAL


def category_label(category: Category) -> str:
    return CATEGORY_LABELS.get(category, category.replace("_", " ").capitalize())


@dataclass(frozen=True)
class Controller:
    name: str
    contact: str
    dpo_contact: str


@dataclass(frozen=True)
class FieldEntry:
    name: str
    label: str
    encrypted: bool


@dataclass(frozen=True)
class CategoryEntry:
    category: str
    label: str
    fields: tuple[FieldEntry, ...]


@dataclass(frozen=True)
class RecordTypeData:
    record_type: str
    label: str
    categories: tuple[CategoryEntry, ...]


@dataclass(frozen=True)
class StaffAccess:
    """A staff role that processes data for a purpose, and how much of it it sees."""

    role: str
    record_type: str
    scope: str  # own | team | all
    fields: tuple[str, ...]  # readable fields for this purpose (empty: record ids only)


@dataclass(frozen=True)
class PurposeEntry:
    name: str
    description: str
    legal_basis: str
    legal_basis_label: str
    recipients: tuple[str, ...]
    data: tuple[RecordTypeData, ...]
    staff_access: tuple[StaffAccess, ...]
    derived_data: str = ""  # profiling: what is derived about each person (data map)

    @property
    def title(self) -> str:
        return self.name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class DataSubjects:
    record_type: str
    label: str
    description: str


@dataclass(frozen=True)
class RetentionEntry:
    record_type: str
    record_label: str
    category: str
    label: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Measure:
    title: str
    description: str


@dataclass(frozen=True)
class ProcessingRecord:
    generated_at: dt.datetime
    controller: Controller
    purposes: tuple[PurposeEntry, ...]
    data_subjects: tuple[DataSubjects, ...]
    data_categories: tuple[CategoryEntry, ...]  # every personal category, over all types
    recipients: tuple[str, ...]
    transfers: str
    retention: tuple[RetentionEntry, ...]
    security_measures: tuple[Measure, ...]

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-able data, with a format tag for whoever archives it."""
        return {
            "format": FORMAT,
            "generated_at": self.generated_at.isoformat(),
            "controller": {
                "name": self.controller.name,
                "contact": self.controller.contact,
                "dpo_contact": self.controller.dpo_contact or None,
            },
            "purposes": [
                {
                    "name": p.name,
                    "description": p.description,
                    "legal_basis": p.legal_basis,
                    "legal_basis_label": p.legal_basis_label,
                    "recipients": list(p.recipients),
                    "personal_data": [_data_json(d) for d in p.data],
                    "derived_data": p.derived_data or None,
                    "staff_access": [
                        {
                            "role": a.role,
                            "record_type": a.record_type,
                            "scope": a.scope,
                            "fields": list(a.fields),
                        }
                        for a in p.staff_access
                    ],
                }
                for p in self.purposes
            ],
            "data_subjects": [
                {"record_type": s.record_type, "description": s.description}
                for s in self.data_subjects
            ],
            "personal_data_categories": [
                {
                    "category": c.category,
                    "label": c.label,
                    "fields": [f.name for f in c.fields],
                }
                for c in self.data_categories
            ],
            "recipients": list(self.recipients),
            "third_country_transfers": {"transfers": [], "statement": self.transfers},
            "retention": [
                {
                    "record_type": r.record_type,
                    "category": r.category,
                    "label": r.label,
                    "rules": list(r.rules),
                }
                for r in self.retention
            ],
            "security_measures": [
                {"title": m.title, "description": m.description} for m in self.security_measures
            ],
        }


def _data_json(data: RecordTypeData) -> dict[str, Any]:
    return {
        "record_type": data.record_type,
        "categories": [
            {
                "category": c.category,
                "label": c.label,
                "fields": [
                    {"name": f.name, "label": f.label, "encrypted": f.encrypted} for f in c.fields
                ],
            }
            for c in data.categories
        ],
    }


def _by_category(fields: Iterable[Field]) -> tuple[CategoryEntry, ...]:
    """Fields grouped by category, in the data map's order of categories."""
    grouped: dict[Category, list[FieldEntry]] = {}
    for spec in fields:
        grouped.setdefault(spec.category, []).append(
            FieldEntry(spec.name, spec.label, spec.encrypted)
        )
    return tuple(
        CategoryEntry(str(category), category_label(category), tuple(entries))
        for category in Category
        for entries in [grouped.get(category)]
        if entries
    )


def _purpose_data(purpose: str) -> tuple[RecordTypeData, ...]:
    """Personal fields the data map lets this purpose use, by record type and category."""
    result = []
    for rt in RECORD_TYPES.values():
        used = [f for f in rt.fields if purpose in f.purposes and is_personal(f)]
        if used:
            result.append(RecordTypeData(rt.resource, rt.label, _by_category(used)))
    return tuple(result)


def _staff_access(policy: PolicyEngine, purpose: str) -> tuple[StaffAccess, ...]:
    """Which staff roles read which record types for this purpose - asked of the policy."""
    access = []
    for role in ROLES:
        for rt in RECORD_TYPES.values():
            purpose_fields = frozenset(f.name for f in rt.fields if purpose in f.purposes)
            decision = policy.decide(
                role, rt.resource, "read", purpose, tuple(f.name for f in rt.fields), purpose_fields
            )
            if decision.allowed:
                readable = tuple(f.name for f in rt.fields if f.name in decision.fields)
                access.append(StaffAccess(role, rt.resource, str(decision.scope), readable))
    return tuple(access)


def _retention(rt: RecordType) -> tuple[RetentionEntry, ...]:
    rules: dict[Category, list[str]] = {}
    for spec in rt.fields:
        if is_personal(spec) and spec.retention not in rules.setdefault(spec.category, []):
            rules[spec.category].append(spec.retention)
    return tuple(
        RetentionEntry(rt.resource, rt.label, str(c), category_label(c), tuple(rules[c]))
        for c in Category
        if c in rules
    )


def security_measures(settings: Settings, policy: PolicyEngine) -> tuple[Measure, ...]:
    """Technical and organisational measures (Art. 32), as the product implements them."""
    personal = [(rt, f) for rt in RECORD_TYPES.values() for f in rt.fields if is_personal(f)]
    encrypted = [f"{rt.resource}.{f.name}" for rt, f in personal if f.encrypted]
    indexed = [f"{rt.resource}.{f.name}" for rt, f in personal if f.blind_index]
    scopes = []
    for role in ROLES:
        for rt in RECORD_TYPES.values():
            scope = next(
                (
                    s
                    for s in ("all", "team", "own")
                    if policy.allows(role, rt.resource, f"scope:{s}")
                ),
                None,
            )
            if scope:
                scopes.append(f"{role}: {rt.resource} {scope}")
    mfa = ", ".join(r for r in ROLES if policy.allows(r, *MFA_RIGHT))
    return (
        Measure(
            "Encryption of personal data at rest",
            f"{len(encrypted)} of {len(personal)} personal fields are encrypted with "
            "AES-256-GCM under a separate data key per data subject; each ciphertext is "
            "bound to its table, column, row and key version. Data keys are wrapped by a "
            "master key kept outside the database. Encrypted: " + ", ".join(encrypted) + ".",
        ),
        Measure(
            "Blind indexes for exact search",
            "Encrypted fields that must be searchable have a keyed HMAC-SHA256 index "
            "truncated to a few bits, so the index narrows a search without revealing "
            "values; matches are confirmed after decryption. Indexed: " + ", ".join(indexed) + ".",
        ),
        Measure(
            "Role-based access control with record scope",
            "Every read and write passes one gateway that asks a Casbin policy (deny by "
            "default, explicit deny wins) for the role, action, purpose and fields, and "
            "compiles the record scope (own, team or all records) into the database "
            "query. Records outside the scope answer 'not found'. Scopes: "
            + "; ".join(scopes)
            + ".",
        ),
        Measure(
            "Purpose limitation in the gateway",
            "Each access names a registered purpose; a role may use only the purposes the "
            "policy grants it, and only the fields the data map assigns to that purpose.",
        ),
        Measure(
            "Strong staff authentication",
            "Staff passwords are hashed with argon2id and checked against guessable "
            "passwords; failed sign-ins are throttled per account and per address. "
            f"Roles with a mandatory second factor (TOTP): {mfa}. Sessions are kept "
            "server-side (only a keyed hash of the cookie token is stored), expire after "
            f"{settings.session_idle_minutes} minutes idle and {settings.session_absolute_hours}"
            " hours in all, and sensitive actions need a recent password confirmation.",
        ),
        Measure(
            "Tamper-evident audit log",
            "Every read, search, export, change, refusal and administrative action is "
            "recorded with who, what, which fields, purpose and outcome - never the values. "
            "The log is append-only in the database (triggers reject UPDATE and DELETE), "
            "hash-chained and sealed in a Merkle tree whose heads are signed with Ed25519 "
            "by a key kept outside the database, so edits, deletions and truncation are "
            "detectable.",
        ),
        Measure(
            "Monitoring and alerts",
            "Rules over the audit log raise alerts to compliance officers for bulk reads, "
            "access outside working hours, bursts of refused requests and large exports; "
            "alerts and their handling are audited.",
        ),
        Measure(
            "Erasure by crypto-shredding",
            "Erasing a data subject destroys their data key, which makes every copy of "
            "their encrypted data unreadable - backups and replicas included - and their "
            "blind-index entries are removed.",
        ),
        Measure(
            "Data minimisation in logs and e-mail",
            "Application logs carry no request bodies, query strings or cookies, and a "
            "redaction step blanks personal keys; alert e-mails name staff accounts and "
            "audit event numbers only.",
        ),
        Measure(
            "Web application protections",
            "Forms are protected against cross-site request forgery, pages are sent with a "
            "strict Content Security Policy and security headers, and every input is "
            "validated against the data map.",
        ),
    )


def build_record(
    settings: Settings, policy: PolicyEngine, *, now: dt.datetime | None = None
) -> ProcessingRecord:
    """The record of processing for this installation, as of now."""
    purposes = tuple(
        PurposeEntry(
            name=p.name,
            description=p.description,
            legal_basis=str(p.legal_basis),
            legal_basis_label=LEGAL_BASIS_LABELS[p.legal_basis],
            recipients=p.recipients,
            data=_purpose_data(p.name),
            staff_access=_staff_access(policy, p.name),
            derived_data=p.derives,
        )
        for p in PURPOSES.values()
    )
    recipients = tuple(dict.fromkeys(r for p in PURPOSES.values() for r in p.recipients))
    every_personal = [
        replace(f, name=f"{rt.resource}.{f.name}", label=f"{rt.label}: {f.label}")
        for rt in RECORD_TYPES.values()
        for f in rt.fields
        if is_personal(f)
    ]
    return ProcessingRecord(
        generated_at=now or dt.datetime.now(dt.UTC),
        controller=Controller(
            settings.controller_name, settings.controller_contact, settings.dpo_contact
        ),
        purposes=purposes,
        data_subjects=tuple(
            DataSubjects(rt.resource, rt.label, DATA_SUBJECTS.get(rt.resource, UNDESCRIBED))
            for rt in RECORD_TYPES.values()
        ),
        data_categories=_by_category(every_personal),
        recipients=recipients,
        transfers=TRANSFERS,
        retention=tuple(e for rt in RECORD_TYPES.values() for e in _retention(rt)),
        security_measures=security_measures(settings, policy),
    )
