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
  compliance officer resolves one with
  :func:`server.dsr.third_parties.staff_pseudonym`.
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

import csv
import datetime as dt
import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from audit import subject_events
from audit.events import Outcome, audit_event
from policy.enforcer import SYSTEM_ROLE
from server import db
from server.analytics.model import AUTOMATED_DECISIONS, LOGIC
from server.consent.model import PROFILING, SUBJECT_ACTOR, ConsentError
from server.datamap import PURPOSES, RECORD_TYPES, Category, Field, FieldKind, RecordType
from server.dsr import export_html
from server.dsr.export_format import (
    DATA_FILE,
    FORMAT,
    HTML_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MENTIONS_FILE,
    SIGNATURE_FILE,
    sha256_hex,
    sign_manifest,
)
from server.dsr.third_parties import (
    RedactionSummary,
    WithheldType,
    actor_label,
    excerpt,
    free_text_names,
    own_names,
    pseudonym_key,
    staff_pseudonyms,
    withheld_json,
)
from server.gateway import Actor, GatewayError
from server.gateway.gateway import Record
from server.gateway.mentions import (
    ANOTHER_PERSON,
    Mention,
)
from server.money import plain_major
from server.processing_record import LEGAL_BASIS_LABELS

if TYPE_CHECKING:
    from audit.log import AuditLog
    from audit.trail import AuditTrail
    from server.analytics.service import CustomerScores
    from server.consent.service import ConsentEngine
    from server.gateway import Gateway
    from server.settings import Settings

EXPORT_JOB = "dsr-export"
EXPORT_PURPOSE = "compliance"
TEMPLATES = Path(__file__).resolve().parents[2] / "admin_ui" / "templates" / "dsr"


class ExportParts(Protocol):
    """The services an export reads through: the app's ``Services`` has them, and so does
    :class:`SubjectExports`, the part handlers are given."""

    @property
    def consent(self) -> ConsentEngine: ...
    @property
    def gateway(self) -> Gateway: ...
    @property
    def analytics(self) -> CustomerScores: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def audit_trail(self) -> AuditTrail: ...
    @property
    def audit(self) -> AuditLog: ...


RECORD_META = (("id", "Record id"), ("created_at", "Created"), ("updated_at", "Last changed"))
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Consent evidence holds text staff typed (a call or letter reference) or a client sent: it
# is withheld from like the person's free text, counted under this pseudo record type.
CONSENT_EVIDENCE = ("consent_event", "Consent event", "Evidence")
# Links the person's records keep even to a record of somebody else: their organization.
LINKS_KEPT = frozenset({"organization"})

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


@dataclass
class _Collected:
    held: dict[str, list[dict[str, Any]]]
    mentions: list[dict[str, Any]]
    summary: RedactionSummary
    consents: dict[str, Any]  # the consent engine's proof, evidence text withheld as above


def _value_label(labels: Mapping[str, str], code: str | None) -> str | None:
    if code is None:
        return None
    return labels.get(code, code.replace("_", " ").capitalize())


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
    services: ExportParts, subject: str, held: Mapping[str, list[dict[str, Any]]]
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
    services: ExportParts, actor: Actor, held: Mapping[str, list[dict[str, Any]]]
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


def _zip(files: Mapping[str, bytes], when: dt.datetime) -> bytes:
    buffer = io.BytesIO()
    stamp = when.astimezone(dt.UTC).timetuple()[:6]
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


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


async def _collect(services: ExportParts, subject: str, actor: Actor) -> _Collected | None:
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
        for name in free_text_names(RECORD_TYPES[resource])
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
    staff = await staff_pseudonyms(pseudonym_key(gateway), gateway.default_region, own_names(held))
    mention_docs, summary = _put_back(slots, excerpts, evidence, links, withheld, staff)
    return _Collected(held, mention_docs, summary, consents)


def _put_back(
    slots: list[tuple[str, dict[str, Any], str]],
    excerpts: list[tuple[Mention, str, str]],
    evidence: list[tuple[dict[str, Any], str]],
    links: list[tuple[str, dict[str, Any], str]],
    withheld: list[tuple[str, int]],
    staff: Callable[[str], tuple[str, int]],
) -> tuple[list[dict[str, Any]], RedactionSummary]:
    """Put the texts with other people withheld (and staff pseudonymised) back where they
    came from, in the order they were sent, and count what was withheld where."""
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
    return mention_docs, summary


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
    services: ExportParts, subject_id: str, *, requested_by: str, requested_role: str = ""
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


async def _profiling(services: ExportParts, subject: str, actor: Actor) -> dict[str, Any]:
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
    services: ExportParts, subject_id: str, *, requested_by: str, requested_role: str = ""
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
    data = await _data_json(services, subject, actor, collected, generated_at)
    files, hashes, manifest_hash, key_id = await _signed_files(services, actor, data, collected)
    counts = {resource: len(docs) for resource, docs in collected.held.items()}
    accesses, consent_events = len(data["access_log"]), len(data["consents"]["events"])
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
            "accesses": accesses,
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
        accesses=accesses,
        consent_events=consent_events,
        key_id=key_id,
        manifest_sha256=manifest_hash,
        withheld={w.record_type: w.records for w in collected.summary.withheld},
        mentions=collected.summary.mentions,
    )


async def _data_json(
    services: ExportParts,
    subject: str,
    actor: Actor,
    collected: _Collected,
    generated_at: dt.datetime,
) -> dict[str, Any]:
    """``data.json``: everything the other files show, staff by role and pseudonym."""
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
        for e in await subject_events.every_event_about(subject)
    ]
    settings = services.settings
    return {
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
        "withheld": withheld_json(collected.summary),
        "mentions": collected.mentions,
        "profiling": await _profiling(services, subject, actor),
    }


async def _signed_files(
    services: ExportParts, actor: Actor, data: dict[str, Any], collected: _Collected
) -> tuple[dict[str, bytes], dict[str, str], str, str]:
    """The bundle's files with the signed manifest over them: the files, their hashes,
    the manifest's hash and the signing key's id."""
    held = collected.held
    files: dict[str, bytes] = {
        DATA_FILE: (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    }
    for resource, docs in held.items():
        files[f"{resource}s.csv"] = _csv(RECORD_TYPES[resource], docs)
    if collected.mentions:
        files[MENTIONS_FILE] = _mentions_csv(collected.mentions)
    files[HTML_FILE] = _html(
        data, services.settings.controller_name, await _linked_names(services, actor, held)
    )
    hashes = {name: sha256_hex(content) for name, content in files.items()}
    signer = services.audit_trail.signer
    manifest = {
        "format": MANIFEST_FORMAT,
        "subject_id": data["subject_id"],
        "generated_at": data["generated_at"],
        "files": hashes,
        "key_id": signer.key_id,
    }
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    files[MANIFEST_FILE] = manifest_bytes
    files[SIGNATURE_FILE] = (sign_manifest(signer, manifest_bytes) + "\n").encode()
    return files, hashes, sha256_hex(manifest_bytes), signer.key_id


async def _audit(
    services: ExportParts,
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


class SubjectExports:
    """Exports built from exactly the services they read (``build_services`` makes one),
    so a handler asks for this instead of the whole container. A plain class, not a
    dataclass: Litestar checks a dependency's type and would inspect a dataclass's fields."""

    __slots__ = ("analytics", "audit", "audit_trail", "consent", "gateway", "settings")

    def __init__(
        self,
        consent: ConsentEngine,
        gateway: Gateway,
        analytics: CustomerScores,
        settings: Settings,
        audit_trail: AuditTrail,
        audit: AuditLog,
    ) -> None:
        self.consent = consent
        self.gateway = gateway
        self.analytics = analytics
        self.settings = settings
        self.audit_trail = audit_trail
        self.audit = audit

    async def build(
        self, subject_id: str, *, requested_by: str, requested_role: str = ""
    ) -> ExportBundle:
        """:func:`build_export` over these services."""
        return await build_export(
            self, subject_id, requested_by=requested_by, requested_role=requested_role
        )
