"""The subject-access and portability bundle (GDPR Art. 15 and 20), signed.

One ZIP answers "what do you hold about me, why, who got it, how long, where from, and who
looked at it?" in three forms built from the same data: ``data.json`` for machines (its
JSON Schema is generated from the data map and published as
``docs/dsr-export.schema.json``), one CSV per record type for spreadsheets, and
``index.html`` for people. ``manifest.json`` lists the SHA-256 of every file and
``manifest.sig`` is an Ed25519 signature over it by the controller's audit signing key, so
the person (or a court, or a supervisory authority) can later check that a bundle is the
one we produced and that nothing was added, removed or changed: ``consentry dsr
verify-export``.

Where each part comes from:

- **records**: ``Gateway.export_subject`` as the system job ``dsr-export`` under the
  ``compliance`` purpose: every record about the person, every field decrypted, one
  audited ``export`` event per record type. Nothing here reads customer tables itself.
- **consents**: the consent engine's proof (every ledger event with the notice text and
  hash it referred to, and the current state); audited as ``consent.export``.
- **access_log**: every audit event naming the person, oldest first. The log holds no
  values, so neither does this list. Staff are shown as ``<role> #<pseudonym>``: the
  pseudonym is an HMAC of the staff account id under a key derived from the session
  secret, so it is stable across exports (a person can tell that the same employee came
  back) but reveals neither the employee's name or e-mail nor how many staff we have. A
  compliance officer resolves one with :func:`staff_pseudonym`.
- **processing**: the Art. 15(1) information for each purpose that uses this person's data
  (and, for consent or objection based purposes, only if they currently have a basis): the
  live description and retention from the consent registry, the legal basis label and
  recipients from the data map, the same wording as the record of processing.
- **source**: the ``source`` field of their records and the sources of their consents.
- **withheld** (Art. 15(4)): in the person's free text, every other person we hold data
  about becomes ``[another person]`` (the spans erasing that person would scrub;
  ``Gateway.withhold_others``) and staff become their access-log pseudonym; the counts
  per record type and the reason are reported, never a value.
- **mentions**: other people's records whose free text mentions the person (the scan
  erasure runs; ``Gateway.subject_mentions``), as the sentences that do, the other people
  withheld, with record type, field and date but no id. :func:`review_redactions` gives a
  compliance officer the same counts before a staff-fulfilled export is released.

Every export ends with one ``dsr.export`` audit event (file, record and access counts and
the manifest hash - no values), in addition to the gateway's own ``export`` events.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import hashlib
import hmac
import io
import itertools
import json
import re
import uuid
import zipfile
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from audit import queries
from audit.events import Outcome, audit_event
from audit.signing import TreeHeadSigner, TreeHeadVerifier
from policy.enforcer import SYSTEM_ROLE
from server import db
from server.analytics.model import AUTOMATED_DECISIONS, LOGIC
from server.auth.directory import staff_identities
from server.consent.model import PROFILING, SUBJECT_ACTOR, ConsentError
from server.datamap import PURPOSES, RECORD_TYPES, Category, Field, FieldKind, RecordType
from server.dsr import export_html
from server.gateway import Actor, Gateway, GatewayError
from server.gateway.gateway import Record
from server.gateway.mentions import (
    ANOTHER_PERSON,
    IDENTIFYING,
    Identity,
    Matcher,
    Mention,
    fold_key,
)
from server.money import plain_major
from server.processing_record import LEGAL_BASIS_LABELS

if TYPE_CHECKING:
    from server.services import Services

FORMAT = "consentry-subject-export/1"
MANIFEST_FORMAT = "consentry-export-manifest/1"
# Domain separation: the audit key also signs tree heads; a manifest signature must never
# be mistaken for one (or the reverse), so the signed bytes start with their own label.
MANIFEST_DOMAIN = b"consentry-export-manifest/1\n"
SCHEMA_ID = "https://consentry.example/schemas/dsr-export.schema.json"
EXPORT_JOB = "dsr-export"
EXPORT_PURPOSE = "compliance"
DATA_FILE = "data.json"
HTML_FILE = "index.html"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
PSEUDONYM_INFO = b"consentry/dsr/staff-pseudonym/v1"
MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # uncompressed; a verifier refuses larger (zip bombs)
MAJOR_UNITS_PATTERN = "^[0-9]+(\\.[0-9]+)?$"  # money: "12500.00" (server.money.plain_major)
TEMPLATES = Path(__file__).resolve().parents[2] / "admin_ui" / "templates" / "dsr"
RECORD_META = (("id", "Record id"), ("created_at", "Created"), ("updated_at", "Last changed"))
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MENTIONS_FILE = "mentions.csv"
# Consent evidence holds text staff typed (a call or letter reference) or a client sent: it
# is withheld from like the person's free text, counted under this pseudo record type.
CONSENT_EVIDENCE = ("consent_event", "Consent event", "Evidence")
# Links the person's records keep even to a record of somebody else: their organization.
LINKS_KEPT = frozenset({"organization"})
EXCERPT_GAP = " … "  # between two sentences of one field that mention the person
_SENTENCE_END = re.compile(r"[.!?]+(?=\s)|\n")
WITHHELD_REASON = (
    "Names, e-mail addresses and phone numbers of other people we hold data about are "
    f'replaced by "{ANOTHER_PERSON}": a copy of your data must not adversely affect the '
    "rights and freedoms of others (GDPR Art. 15(4)). Our staff are shown by role and "
    "reference, as in the access log, never by name or e-mail address."
)

# Plain words for the codes a person will see (the codes stay in data.json).
RECORD_SOURCE_LABELS: Mapping[str, str] = {
    "web": "You gave it to us on our website",
    "event": "You gave it to us at an event",
    "referral": "Someone who knows you referred you to us",
    "import": "Imported from an earlier system or list",
    "phone": "You gave it to us by telephone",
    "partner": "Passed to us by a business partner",
    "manual": "Entered by our staff",
}
CONSENT_SOURCE_LABELS: Mapping[str, str] = {
    "web_form": "A form on our website",
    "portal": "Our customer portal",
    "phone": "A telephone call",
    "import": "Imported with its original evidence",
    "staff": "Recorded by our staff on your behalf",
    "email_link": "A link in an e-mail we sent you",
    "pref_center": "Our preference center",
    "system": "Automatically (for example, consent that expired)",
}


class NoRecords(LookupError):
    """Nothing about this subject: no bundle (an empty one would look like proof)."""

    def __init__(self) -> None:
        super().__init__("no records for this subject")


class InvalidSubject(ValueError):
    def __init__(self) -> None:
        super().__init__("not a subject id (expected a UUID)")


@dataclass(frozen=True)
class ExportBundle:
    subject_id: str
    generated_at: dt.datetime
    zip_bytes: bytes
    files: Mapping[str, str]  # file name -> sha256 hex (manifest and signature excluded)
    records: Mapping[str, int]  # record type -> number of records
    accesses: int
    consent_events: int
    key_id: str
    manifest_sha256: str
    withheld: Mapping[str, int] = field(default_factory=dict)  # record type -> records
    mentions: int = 0  # excerpts of other people's records that mention the person


@dataclass(frozen=True)
class WithheldType:
    """In how many of the person's records of one type other people were withheld, and in
    which fields: what the export reports and a compliance officer reviews (no values)."""

    record_type: str
    label: str
    records: int
    fields: tuple[str, ...]


@dataclass(frozen=True)
class RedactionSummary:
    """What an export withholds, without a single withheld value."""

    withheld: tuple[WithheldType, ...]
    mentions: int  # excerpts of other people's records that mention the person
    mentions_withheld: int  # of those, excerpts in which other people were withheld
    mention_types: Mapping[str, int]  # record type -> excerpts

    @property
    def total(self) -> int:
        return sum(w.records for w in self.withheld)


@dataclass
class _Collected:
    held: dict[str, list[dict[str, Any]]]
    mentions: list[dict[str, Any]]
    summary: RedactionSummary
    consents: dict[str, Any]  # the consent engine's proof, evidence text withheld as above


@dataclass(frozen=True)
class ExportVerification:
    problems: tuple[str, ...]
    files: int = 0  # files whose hash matched
    subject_id: str = ""
    key_id: str = ""
    generated_at: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


# --- pseudonyms and labels ----------------------------------------------------------------


def pseudonym_key(gateway: Gateway) -> bytes:
    """From the master key's index root (never rotated): a person sees the same pseudonym
    for the same member of staff in every export, years apart."""
    return gateway.derived_key(PSEUDONYM_INFO)


def staff_pseudonym(key: bytes, actor_id: str) -> str:
    """The stable pseudonym an export shows for a staff account id such as ``user:12``."""
    return hmac.new(key, actor_id.encode(), hashlib.sha256).hexdigest()[:10]


def actor_label(key: bytes, actor_id: str, role: str) -> str:
    """How an actor appears to the person: never a staff name, e-mail or account id."""
    if actor_id == SUBJECT_ACTOR:
        return "you"
    if actor_id.startswith("system:"):
        return f"automated job ({actor_id.removeprefix('system:')})"
    if actor_id.startswith("token:"):  # an API token (a website, another system): issue 19
        return f"API client #{staff_pseudonym(key, actor_id)}"
    return f"{role or 'staff'} #{staff_pseudonym(key, actor_id)}"


def _value_label(labels: Mapping[str, str], code: str | None) -> str | None:
    if code is None:
        return None
    return labels.get(code, code.replace("_", " ").capitalize())


# --- the JSON Schema --------------------------------------------------------------------


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _record_schema(rt: RecordType) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "id": {"type": "string", "title": "Record id"},
        "created_at": {"type": "string", "format": "date-time", "title": "Created"},
        "updated_at": {"type": "string", "format": "date-time", "title": "Last changed"},
    }
    for spec in rt.fields:
        if spec.currency_from:
            properties[spec.name] = {
                **_nullable("string"),
                "title": spec.label,
                "description": f"In major units of the currency in {spec.currency_from}, "
                "with its decimals (12500.00 EUR, 12500 JPY)",
                "pattern": MAJOR_UNITS_PATTERN,
            }
            continue
        properties[spec.name] = {
            **_nullable("integer" if spec.kind is FieldKind.INTEGER else "string"),
            "title": spec.label,
        }
    return {
        "type": "object",
        "title": rt.label,
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


def _object(properties: Mapping[str, Any], *, title: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": dict(properties),
    }
    if title:
        doc["title"] = title
    return doc


_STRING = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_STRINGS = {"type": "array", "items": {"type": "string"}}


def export_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``data.json``, derived from the data map.

    Published as ``docs/dsr-export.schema.json``; a test fails when the data map changes
    and the published copy was not regenerated.
    """
    notice = _object(
        {
            "version": {"type": "integer"},
            "title": _STRING,
            "text": _STRING,
            "content_hash": _STRING,
            "published_at": _TIME,
        },
        title="The privacy notice the event referred to",
    )
    consent_event = _object(
        {
            "id": {"type": "integer"},
            "purpose": _STRING,
            "channel": _STRING,
            "kind": {"enum": ["granted", "withdrawn", "expired", "objected", "lifted"]},
            "source": _STRING,
            "source_label": _STRING,
            "evidence": {"type": "object"},
            "notice_version": _nullable("integer"),
            "actor": {"type": "string", "description": "Who recorded it, as in access_log"},
            "occurred_at": _TIME,
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
        }
    )
    consent_event["properties"]["notice"] = notice  # only when notice_version is set
    consent_state = _object(
        {
            "purpose": _STRING,
            "channel": _STRING,
            "state": {"enum": ["granted", "withdrawn", "expired", "objected", "lifted"]},
            "since": _TIME,
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
        }
    )
    access = _object(
        {
            "at": _TIME,
            "staff": {
                "type": "string",
                "description": "'<role> #<pseudonym>', 'automated job (<name>)' or 'you'",
            },
            "role": _STRING,
            "action": _STRING,
            "record_type": _STRING,
            "purpose": _STRING,
            "fields": _STRINGS,
            "outcome": {"enum": ["allowed", "denied", "error"]},
        }
    )
    processing = _object(
        {
            "purpose": _STRING,
            "title": _STRING,
            "description": _STRING,
            "legal_basis": _STRING,
            "legal_basis_label": _STRING,
            "recipients": _STRINGS,
            "retention": _STRINGS,
            "data": {
                "type": "array",
                "items": _object({"record_type": _STRING, "fields": _STRINGS}),
            },
        }
    )
    labels = {
        "type": "object",
        "additionalProperties": _object(
            {
                "label": _STRING,
                "fields": {"type": "object", "additionalProperties": _STRING},
            }
        ),
    }
    records = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            rt.resource: {"type": "array", "items": _record_schema(rt)}
            for rt in RECORD_TYPES.values()
        },
    }
    source = _object(
        {
            "records": {
                "type": "array",
                "items": _object(
                    {
                        "record_type": _STRING,
                        "record_id": _STRING,
                        "source": _nullable("string"),
                        "label": _nullable("string"),
                    }
                ),
            },
            "consents": {
                "type": "array",
                "items": _object({"source": _STRING, "label": _STRING}),
            },
        }
    )
    schema = _object(
        {
            "format": {"const": FORMAT},
            "generated_at": _TIME,
            "subject_id": {"type": "string", "format": "uuid"},
            "controller": _object(
                {"name": _STRING, "contact": _STRING, "dpo_contact": _nullable("string")}
            ),
            "records": records,
            "labels": labels,
            "consents": _object(
                {
                    "events": {"type": "array", "items": consent_event},
                    "state": {"type": "array", "items": consent_state},
                }
            ),
            "access_log": {"type": "array", "items": access},
            "processing": {"type": "array", "items": processing},
            "source": source,
        },
        title="Consentry data-subject export (data.json)",
    )
    # Added later, so optional: bundles made before them still validate.
    schema["properties"]["withheld"] = _object(
        {
            "marker": {"const": ANOTHER_PERSON},
            "reason": _STRING,
            "record_types": {
                "type": "array",
                "items": _object(
                    {
                        "record_type": _STRING,
                        "label": _STRING,
                        "records": {"type": "integer", "minimum": 1},
                        "fields": _STRINGS,
                    }
                ),
            },
            "total": {"type": "integer", "minimum": 0},
            "mentions": {"type": "integer", "minimum": 0},
        },
        title="Other people's data withheld from this copy (GDPR Art. 15(4)), counted "
        "per record type; the values are never given",
    )
    schema["properties"]["mentions"] = {
        "type": "array",
        "title": "Records about other people that mention you: the sentences that do, "
        "with the other people withheld",
        "items": _object(
            {
                "record_type": _STRING,
                "label": _STRING,
                "field": _STRING,
                "field_label": _STRING,
                "date": {"type": "string", "format": "date"},
                "excerpt": _STRING,
            }
        ),
    }
    schema["properties"]["profiling"] = _object(
        {
            "basis": _STRING,
            "computed_at": _nullable("string"),
            "model": _nullable("string"),
            "scores": {"type": ["object", "null"]},
            "explanation": _STRING,
            "logic": _STRING,
            "automated_decisions": _STRING,
        },
        title="Scores about you (profiling) and the logic involved (GDPR Art. 15(1)(h)); "
        "when there are none, why",
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "description": "Everything a Consentry installation holds about one person, "
        "produced for an access or portability request (GDPR Art. 15, 20). Field titles "
        "are the labels shown in the CSV files and the HTML summary.",
        **schema,
    }


def export_schema_text() -> str:
    return json.dumps(export_schema(), indent=2) + "\n"


# --- collecting ---------------------------------------------------------------------------


def _canonical_subject(subject_id: str) -> str:
    try:
        return str(uuid.UUID(str(subject_id).strip()))
    except ValueError:
        raise InvalidSubject() from None


def _record_json(rt: RecordType, record: Record) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": record.id,
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
    }
    for spec in rt.fields:
        value = record.values.get(spec.name)
        if value is not None and spec.currency_from:
            value = plain_major(int(value), record.values.get(spec.currency_from))
        elif value is not None and spec.kind is not FieldKind.INTEGER:
            value = str(value)
        doc[spec.name] = value
    return doc


def _iso(moment: Any) -> str:
    if isinstance(moment, dt.datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat()
    return str(moment)


async def _processing(
    services: Services, subject: str, held: Mapping[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Art. 15(1)(a)-(d): the purposes that use a field we actually hold about them."""
    entries: list[dict[str, Any]] = []
    for name, purpose in PURPOSES.items():
        data = []
        retention: list[str] = []
        for resource, docs in held.items():
            rt = RECORD_TYPES[resource]
            used = [
                spec
                for spec in rt.fields
                if name in spec.purposes and any(d.get(spec.name) is not None for d in docs)
            ]
            if used:
                data.append({"record_type": resource, "fields": [s.label for s in used]})
                retention += [s.retention for s in used]
        if not data:
            continue
        description, legal_basis = purpose.description, purpose.legal_basis
        try:
            info = await services.consent.purpose(name)
        except ConsentError:  # not in the registry: the data map's words are the truth
            info = None
        if info is not None:
            description, legal_basis = info.description, info.legal_basis
            retention.insert(0, info.retention)
        if purpose.per_subject:
            try:
                basis = await services.consent.has_basis(subject, name)
            except ConsentError:
                continue
            if not basis.ok:  # no consent, withdrawn, objected: we do not use it for this
                continue
        entries.append(
            {
                "purpose": name,
                "title": name.replace("_", " ").capitalize(),
                "description": description,
                "legal_basis": str(legal_basis),
                "legal_basis_label": LEGAL_BASIS_LABELS[legal_basis],
                "recipients": list(purpose.recipients),
                "retention": list(dict.fromkeys(r for r in retention if r)),
                "data": data,
            }
        )
    return entries


def _sources(
    held: Mapping[str, list[dict[str, Any]]], consent_events: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    records = [
        {
            "record_type": resource,
            "record_id": str(doc["id"]),
            "source": doc.get("source"),
            "label": _value_label(RECORD_SOURCE_LABELS, doc.get("source")),
        }
        for resource, docs in held.items()
        if "source" in RECORD_TYPES[resource].by_name
        for doc in docs
    ]
    seen = dict.fromkeys(str(e["source"]) for e in consent_events)
    consents = [{"source": s, "label": _value_label(CONSENT_SOURCE_LABELS, s)} for s in seen]
    return {"records": records, "consents": consents}


# --- rendering ----------------------------------------------------------------------------


def _csv_cell(spec: Field | None, value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # Free text typed by staff could be a spreadsheet formula (=HYPERLINK(...)); a quote
    # makes spreadsheets show it as text. Structured values (+44... phones) stay as stored.
    if spec is not None and spec.category is Category.FREE_TEXT and text.startswith(FORMULA_START):
        return "'" + text
    return text


def _csv(rt: RecordType, docs: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([label for _, label in RECORD_META] + [f.label for f in rt.fields])
    for doc in docs:
        writer.writerow(
            [_csv_cell(None, doc[name]) for name, _ in RECORD_META]
            + [_csv_cell(f, doc[f.name]) for f in rt.fields]
        )
    return out.getvalue().encode("utf-8")


def _html(data: Mapping[str, Any], controller_name: str, names: Mapping[str, str]) -> bytes:
    """The page for people: names for ids, amounts in major units, readable times
    (``server.dsr.export_html``); ``names`` are linked records that are not the person's
    own (their organization)."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = environment.get_template("export.html").render(
        data=data,
        controller_name=controller_name,
        record_tables=export_html.record_tables(data, names),
        moment=export_html.moment,
        words=export_html.words,
        field_labels=export_html.field_labels,
    )
    return html.encode("utf-8")


async def _linked_names(
    services: Services, actor: Actor, held: Mapping[str, list[dict[str, Any]]]
) -> dict[str, str]:
    """Names of the records the person's records point at that are not their own (their
    organization), read through the gateway, for the HTML page only."""
    wanted: dict[str, str] = {}
    for resource, docs in held.items():
        for spec in RECORD_TYPES[resource].fields:
            if spec.references and spec.references not in held:
                for doc in docs:
                    if doc.get(spec.name) and doc[spec.name] != ANOTHER_PERSON:
                        wanted[str(doc[spec.name])] = spec.references
    names: dict[str, str] = {}
    for record_id, target in wanted.items():
        try:
            record = await services.gateway.read(
                actor, target, record_id, purpose=EXPORT_PURPOSE, fields=("name",)
            )
        except GatewayError:
            continue
        if record.values.get("name"):
            names[record_id] = str(record.values["name"])
    return names


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _sign(signer: TreeHeadSigner, message: bytes) -> str:
    return signer.sign_document(MANIFEST_DOMAIN, message)


def _zip(files: Mapping[str, bytes], when: dt.datetime) -> bytes:
    buffer = io.BytesIO()
    stamp = when.astimezone(dt.UTC).timetuple()[:6]
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


# --- other people: withheld from the person's copy (Art. 15(4)) -------------------------


def _free_text_names(rt: RecordType) -> list[str]:
    return [f.name for f in rt.fields if f.category is Category.FREE_TEXT]


def _sentences(text: str) -> list[tuple[int, int]]:
    bounds = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text)]
    return [(start, end) for start, end in itertools.pairwise(bounds) if start < end]


def excerpt(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """The sentences of ``text`` that hold a mention (a line or up to a full stop), runs of
    neighbouring sentences kept together, others left out and marked by an ellipsis."""
    sentences = _sentences(text)
    chosen = [
        i
        for i, (start, end) in enumerate(sentences)
        if any(s < end and start < e for s, e in spans)
    ]
    runs: list[list[int]] = []
    for i in chosen:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = [text[sentences[run[0]][0] : sentences[run[-1]][1]].strip() for run in runs]
    return EXCERPT_GAP.join(p for p in parts if p)


def _own_names(held: Mapping[str, list[dict[str, Any]]]) -> set[str]:
    """The person's own names and addresses (as :func:`fold_key` keys), from their records."""
    own: set[str] = set()
    for resource, docs in held.items():
        fields = [f for f in RECORD_TYPES[resource].fields if f.category in IDENTIFYING]
        for doc in docs:
            values = [str(doc[f.name]) for f in fields if doc.get(f.name)]
            names = [
                str(doc[f.name]) for f in fields if doc.get(f.name) and f.kind is FieldKind.TEXT
            ]
            own.update(fold_key(v) for v in [*values, " ".join(names)])
    return own


async def _staff_pseudonyms(
    key: bytes, region: str, own: Collection[str] = ()
) -> Callable[[str], tuple[str, int]]:
    """Replaces a staff member's full name (two words or more) or e-mail address in free
    text by the label the access log shows for them (``sales #1a2b...``) - except a name or
    address that is the person's own (``own``: a person who also works for us)."""
    labels: dict[str, str] = {}
    identities = []
    for user_id, name, email, role in await staff_identities():
        label = actor_label(key, f"user:{user_id}", role)
        # A full name of two words or more ("Sam Staff"): a one-word display name such as
        # "Admin" would turn every "admin" in a note into a pseudonym.
        full_name = " ".join(name.split())
        texts = tuple(
            t
            for t in (full_name if " " in full_name else "", email.strip())
            if t and fold_key(t) not in own
        )
        labels.update({fold_key(t): label for t in texts})
        identities.append(Identity(texts))
    matcher = Matcher(identities, region)

    def pseudonymise(text: str) -> tuple[str, int]:
        if matcher.empty:
            return text, 0
        return matcher.replace_each(text, lambda found: labels.get(fold_key(found), "staff"))

    return pseudonymise


def _mention_doc(mention: Mention, name: str, text: str) -> dict[str, Any]:
    rt = RECORD_TYPES[mention.resource]
    return {
        "record_type": mention.resource,
        "label": rt.label,
        "field": name,
        "field_label": rt.by_name[name].label,
        "date": _iso(mention.created_at)[:10] if mention.created_at else "",
        "excerpt": text,
    }


async def _collect(services: Services, subject: str, actor: Actor) -> _Collected | None:
    """The person's records and the mentions of them elsewhere, with other people
    withheld and staff pseudonymised; None when no record is about them."""
    gateway = services.gateway
    found = await gateway.export_subject(actor, subject, purpose=EXPORT_PURPOSE)
    if not found:
        return None
    held: dict[str, list[dict[str, Any]]] = {}
    for record in found:
        held.setdefault(record.resource, []).append(
            _record_json(RECORD_TYPES[record.resource], record)
        )
    mentions = await gateway.subject_mentions(actor, subject, purpose=EXPORT_PURPOSE)
    slots = [
        (resource, doc, name)
        for resource, docs in held.items()
        for name in _free_text_names(RECORD_TYPES[resource])
        for doc in docs
        if isinstance(doc.get(name), str) and doc[name]
    ]
    excerpts = [
        (mention, name, excerpt(plain, spans))
        for mention in mentions
        for name, (plain, spans) in mention.texts.items()
    ]
    # Links to records about other people (a meeting with the person about someone else's
    # deal): withheld like their ids in text. Their organization is theirs: it stays.
    links = [
        (resource, doc, spec.name)
        for resource, docs in held.items()
        for spec in RECORD_TYPES[resource].fields
        if spec.kind is FieldKind.REFERENCE and spec.references not in LINKS_KEPT
        for doc in docs
        if isinstance(doc.get(spec.name), str) and doc[spec.name]
    ]
    consents = await services.consent.proof(subject, actor_id=actor.id, actor_role=actor.role)
    evidence = [
        (event, name)
        for event in consents["events"]
        for name, value in dict(event["evidence"]).items()
        if isinstance(value, str) and value
    ]
    withheld = await gateway.withhold_others(
        actor,
        subject,
        [str(doc[name]) for _, doc, name in slots]
        + [text for _, _, text in excerpts]
        + [str(event["evidence"][name]) for event, name in evidence]
        + [str(doc[name]) for _, doc, name in links],
        purpose=EXPORT_PURPOSE,
        also={mention.owner_subject for mention in mentions},
    )
    staff = await _staff_pseudonyms(
        pseudonym_key(gateway), gateway.default_region, _own_names(held)
    )
    records: dict[str, set[str]] = {}
    fields: dict[str, dict[str, None]] = {}
    for (resource, doc, name), (text, others) in zip(slots, withheld, strict=False):
        doc[name], staff_named = staff(text)
        if others or staff_named:
            records.setdefault(resource, set()).add(str(doc["id"]))
            fields.setdefault(resource, {})[RECORD_TYPES[resource].by_name[name].label] = None
    mention_docs = []
    mentions_withheld = 0
    after_slots = withheld[len(slots) :]
    for (mention, name, _), (text, others) in zip(excerpts, after_slots, strict=False):
        text, staff_named = staff(text)
        mentions_withheld += bool(others or staff_named)
        mention_docs.append(_mention_doc(mention, name, text))
    labels = {resource: RECORD_TYPES[resource].label for resource in records}
    consent_type, consent_label, evidence_label = CONSENT_EVIDENCE
    for (event, name), (text, others) in zip(evidence, after_slots[len(excerpts) :], strict=False):
        event["evidence"] = {**event["evidence"]}
        event["evidence"][name], staff_named = staff(text)
        if others or staff_named:
            records.setdefault(consent_type, set()).add(str(event["id"]))
            fields.setdefault(consent_type, {})[evidence_label] = None
            labels[consent_type] = consent_label
    after_evidence = after_slots[len(excerpts) + len(evidence) :]
    for (resource, doc, name), (text, _) in zip(links, after_evidence, strict=False):
        if text == ANOTHER_PERSON:  # the whole id is another person's record
            doc[name] = ANOTHER_PERSON
            records.setdefault(resource, set()).add(str(doc["id"]))
            fields.setdefault(resource, {})[RECORD_TYPES[resource].by_name[name].label] = None
            labels.setdefault(resource, RECORD_TYPES[resource].label)
    mention_docs.sort(key=lambda m: (m["date"], m["record_type"], m["field"]))
    summary = RedactionSummary(
        withheld=tuple(
            WithheldType(
                resource,
                labels[resource],
                len(records[resource]),
                tuple(sorted(fields[resource])),
            )
            for resource in sorted(records)
        ),
        mentions=len(mention_docs),
        mentions_withheld=mentions_withheld,
        mention_types={
            resource: sum(1 for m in mention_docs if m["record_type"] == resource)
            for resource in sorted({m["record_type"] for m in mention_docs})
        },
    )
    return _Collected(held, mention_docs, summary, consents)


def _withheld_json(summary: RedactionSummary) -> dict[str, Any]:
    return {
        "marker": ANOTHER_PERSON,
        "reason": WITHHELD_REASON,
        "record_types": [
            {
                "record_type": w.record_type,
                "label": w.label,
                "records": w.records,
                "fields": list(w.fields),
            }
            for w in summary.withheld
        ],
        "total": summary.total,
        "mentions": summary.mentions_withheld,
    }


def _mentions_csv(mentions: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Record type", "Field", "Date", "Excerpt"])
    for m in mentions:
        excerpt_cell = m["excerpt"]
        if excerpt_cell.startswith(FORMULA_START):
            excerpt_cell = "'" + excerpt_cell
        writer.writerow([m["label"], m["field_label"], m["date"], excerpt_cell])
    return out.getvalue().encode("utf-8")


async def review_redactions(
    services: Services, subject_id: str, *, requested_by: str, requested_role: str = ""
) -> RedactionSummary:
    """What the person's export would withhold now, for a compliance officer to review
    before a staff-fulfilled export is released: counts and field names, no values.
    Audited as ``dsr.export_review`` (the gateway audits its reads as for an export)."""
    subject = _canonical_subject(subject_id)
    collected = await _collect(services, subject, Actor.system(EXPORT_JOB))
    if collected is None:
        raise NoRecords()
    summary = collected.summary
    await _audit(
        services,
        requested_by,
        requested_role,
        subject,
        Outcome.ALLOWED,
        "allowed",
        {"withheld": summary.total, "mentions": summary.mentions},
        action="dsr.export_review",
    )
    return summary


# --- the bundle ---------------------------------------------------------------------------


_NO_SCORES = {
    "objected": "You objected to direct marketing, which includes profiling: your scores "
    "were deleted when you objected and none are computed.",
    "withdrawn": "You withdrew your consent to profiling: your scores were deleted when you "
    "withdrew and none are computed.",
    "expired": "Your consent to profiling expired: your scores were deleted and none are computed.",
    "no_consent": "You have not consented to profiling: no scores are computed about you.",
    "purpose_inactive": "Profiling is not offered: no scores are computed about you.",
    "restricted": "The processing of your data is restricted (GDPR Art. 18): your scores "
    "were deleted when it was restricted and none are computed while the restriction lasts.",
}


async def _profiling(services: Services, subject: str, actor: Actor) -> dict[str, Any]:
    """Art. 15(1)(h): the scores held about the person, the logic involved, and, when there
    are none, why."""
    basis = await services.consent.has_basis(subject, PROFILING)
    reason = basis.reason
    register = services.gateway.restrictions
    if register is not None and await register.is_restricted(subject):
        reason = "restricted"  # no profiling while restricted, whatever the consent
    held = await services.analytics.of_subject(actor, subject, why="data_subject")
    if held is not None:
        explanation = "These scores were computed from your deals, interactions and cases."
    else:
        explanation = _NO_SCORES.get(
            reason, "No scores are held about you (no activity to score yet)."
        )
    return {
        "basis": reason,
        "computed_at": held.computed_at.isoformat() if held else None,
        "model": held.model if held else None,
        "scores": held.scores if held else None,
        "explanation": explanation,
        "logic": LOGIC,
        "automated_decisions": AUTOMATED_DECISIONS,
    }


async def build_export(
    services: Services, subject_id: str, *, requested_by: str, requested_role: str = ""
) -> ExportBundle:
    """Build, sign and audit one subject's export bundle.

    ``requested_by`` is the audit actor id of whoever asked for it ("user:7",
    "system:cli", "subject"); the data itself is read by the system job ``dsr-export``.
    Raises :class:`InvalidSubject` for a malformed id and :class:`NoRecords` when no
    record is about this subject (audited either way as a failed ``dsr.export``).
    """
    subject = _canonical_subject(subject_id)
    role = requested_role or (SYSTEM_ROLE if requested_by.startswith("system:") else "")
    if requested_by == SUBJECT_ACTOR:
        role = "data_subject"
    generated_at = dt.datetime.now(dt.UTC)
    actor = Actor.system(EXPORT_JOB)
    collected = await _collect(services, subject, actor)
    if collected is None:
        await _audit(services, requested_by, role, subject, Outcome.ERROR, "no_records", {})
        raise NoRecords()
    held = collected.held

    key = pseudonym_key(services.gateway)
    proof = collected.consents
    consent_events = []
    for event in proof["events"]:
        event = dict(event)
        event["actor"] = actor_label(key, str(event["actor"]), "")
        event["source_label"] = _value_label(CONSENT_SOURCE_LABELS, str(event["source"]))
        consent_events.append(event)
    accesses = [
        {
            "at": _iso(e.ts),
            "staff": actor_label(key, e.actor_id, e.actor_role),
            "role": e.actor_role,
            "action": e.action,
            "record_type": e.resource_type,
            "purpose": e.purpose,
            "fields": list(e.fields),
            "outcome": e.outcome,
        }
        for e in await queries.every_event_about(subject)
    ]
    settings = services.settings
    data: dict[str, Any] = {
        "format": FORMAT,
        "generated_at": generated_at.isoformat(),
        "subject_id": subject,
        "controller": {
            "name": settings.controller_name,
            "contact": settings.controller_contact,
            "dpo_contact": settings.dpo_contact or None,
        },
        "records": held,
        "labels": {
            resource: {
                "label": RECORD_TYPES[resource].label,
                "fields": {
                    **{name: label for name, label in RECORD_META},
                    **{f.name: f.label for f in RECORD_TYPES[resource].fields},
                },
            }
            for resource in held
        },
        "consents": {"events": consent_events, "state": proof["state"]},
        "access_log": accesses,
        "processing": await _processing(services, subject, held),
        "source": _sources(held, consent_events),
        "withheld": _withheld_json(collected.summary),
        "mentions": collected.mentions,
        "profiling": await _profiling(services, subject, actor),
    }

    files: dict[str, bytes] = {
        DATA_FILE: (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    }
    for resource, docs in held.items():
        files[f"{resource}s.csv"] = _csv(RECORD_TYPES[resource], docs)
    if collected.mentions:
        files[MENTIONS_FILE] = _mentions_csv(collected.mentions)
    files[HTML_FILE] = _html(
        data, settings.controller_name, await _linked_names(services, actor, held)
    )
    hashes = {name: _sha256(content) for name, content in files.items()}
    signer = services.audit_trail.signer
    manifest = {
        "format": MANIFEST_FORMAT,
        "subject_id": subject,
        "generated_at": generated_at.isoformat(),
        "files": hashes,
        "key_id": signer.key_id,
    }
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    files[MANIFEST_FILE] = manifest_bytes
    files[SIGNATURE_FILE] = (_sign(signer, manifest_bytes) + "\n").encode()
    counts = {resource: len(docs) for resource, docs in held.items()}
    manifest_hash = _sha256(manifest_bytes)
    await _audit(
        services,
        requested_by,
        role,
        subject,
        Outcome.ALLOWED,
        "allowed",
        {
            "files": len(files),
            "records": sum(counts.values()),
            "accesses": len(accesses),
            "manifest_sha256": manifest_hash,
            "withheld": collected.summary.total,
            "mentions": collected.summary.mentions,
        },
    )
    return ExportBundle(
        subject_id=subject,
        generated_at=generated_at,
        zip_bytes=_zip(files, generated_at),
        files=hashes,
        records=counts,
        accesses=len(accesses),
        consent_events=len(consent_events),
        key_id=signer.key_id,
        manifest_sha256=manifest_hash,
        withheld={w.record_type: w.records for w in collected.summary.withheld},
        mentions=collected.summary.mentions,
    )


async def _audit(
    services: Services,
    actor_id: str,
    role: str,
    subject: str,
    outcome: Outcome,
    reason: str,
    detail: dict[str, int | str],
    *,
    action: str = "dsr.export",
) -> None:
    event = audit_event(
        actor_id=actor_id,
        actor_role=role,
        action=action,
        resource_type="data_subject",
        outcome=outcome,
        purpose=EXPORT_PURPOSE,
        subject_ids=(subject,),
        reason=reason,
        detail=detail,
    )
    async with db.write_transaction():
        await services.audit.append(event)


# --- verification -------------------------------------------------------------------------


@dataclass
class _Findings:
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def verify_export(zip_bytes: bytes, verifier: TreeHeadVerifier) -> ExportVerification:
    """Check a bundle offline: the manifest signature by a *trusted* key (the verifier's
    keys were given out of band, never read from the bundle), every file's SHA-256, and
    that the ZIP holds exactly the manifest's files. Problems are listed in that order."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile:
        return ExportVerification(("not a ZIP file",))
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if sum(info.file_size for info in infos) > MAX_BUNDLE_BYTES:
            return ExportVerification(("the bundle is larger than any export we produce",))
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            return ExportVerification((f"file stored twice: {duplicates[0]}",))
        for required in (MANIFEST_FILE, SIGNATURE_FILE):
            if required not in names:
                return ExportVerification((f"missing {required}",))
        manifest_bytes = archive.read(MANIFEST_FILE)
        signature = archive.read(SIGNATURE_FILE)
        try:
            manifest = json.loads(manifest_bytes)
            key_id = str(manifest["key_id"])
            listed = manifest["files"]
            if manifest.get("format") != MANIFEST_FORMAT or not isinstance(listed, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return ExportVerification(("manifest.json is not an export manifest",))
        problem = _signature_problem(verifier, key_id, manifest_bytes, signature)
        if problem:
            return ExportVerification((problem,), key_id=key_id)
        found = _Findings()
        matched = 0
        for name, expected in sorted(listed.items()):
            if name not in names:
                found.add(f"missing file: {name}")
            elif _sha256(archive.read(name)) != str(expected):
                found.add(f"file changed: {name} (its SHA-256 does not match the manifest)")
            else:
                matched += 1
        for name in names:
            if name not in listed and name not in (MANIFEST_FILE, SIGNATURE_FILE):
                found.add(f"extra file not in the manifest: {name}")
    return ExportVerification(
        tuple(found.problems),
        files=matched,
        subject_id=str(manifest.get("subject_id", "")),
        key_id=key_id,
        generated_at=str(manifest.get("generated_at", "")),
    )


def _signature_problem(
    verifier: TreeHeadVerifier, key_id: str, manifest_bytes: bytes, signature: bytes
) -> str:
    key = verifier.keys.get(key_id)
    if key is None:
        return f"manifest signed by unknown key {key_id}"
    try:
        key.verify(
            base64.b64decode(signature.strip(), validate=True), MANIFEST_DOMAIN + manifest_bytes
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return "manifest signature does not verify"
    return ""
