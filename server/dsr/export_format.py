"""The format of a subject-access bundle (``server.dsr.export`` builds it): its file names,
the JSON Schema of ``data.json`` (generated from the data map, published as
``docs/dsr-export.schema.json``), the signed manifest, and the offline check of a bundle
(``consentry dsr verify-export``), which needs neither a database nor the services: only
the trusted public keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature

from audit.signing import TreeHeadSigner, TreeHeadVerifier
from server.datamap import RECORD_TYPES, FieldKind, RecordType
from server.gateway.mentions import ANOTHER_PERSON

FORMAT = "consentry-subject-export/1"
MANIFEST_FORMAT = "consentry-export-manifest/1"
# Domain separation: the audit key also signs tree heads; a manifest signature must never
# be mistaken for one (or the reverse), so the signed bytes start with their own label.
MANIFEST_DOMAIN = b"consentry-export-manifest/1\n"
SCHEMA_ID = "https://consentry.example/schemas/dsr-export.schema.json"
DATA_FILE = "data.json"
HTML_FILE = "index.html"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # uncompressed; a verifier refuses larger (zip bombs)
MAJOR_UNITS_PATTERN = "^[0-9]+(\\.[0-9]+)?$"  # money: "12500.00" (server.money.plain_major)
MENTIONS_FILE = "mentions.csv"


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


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def sign_manifest(signer: TreeHeadSigner, message: bytes) -> str:
    return signer.sign_document(MANIFEST_DOMAIN, message)


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
            elif sha256_hex(archive.read(name)) != str(expected):
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
