"""The data-subject export bundle: complete, readable, signed, verifiable and audited.

A person with a contact record, a consent under a published notice and a salesperson who
read their record asks for their data. The ZIP must hold what we know (values, consent
history with the notice text, who looked - by role and pseudonym, never the employee's
e-mail), validate against the published schema, and detect any later change.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.signing import TreeHeadSigner, TreeHeadVerifier, key_id_of
from audit.tables import AuditRecord
from server import db, settings
from server.dsr.export import (
    ExportBundle,
    NoRecords,
    build_export,
)
from server.dsr.export_format import MANIFEST_DOMAIN, export_schema, verify_export
from server.dsr.third_parties import pseudonym_key, staff_pseudonym
from server.gateway import Actor
from server.services import Services, build_services
from tests.conftest import Staff, contact_values
from tests.server.cli.test_cli import (  # noqa: F401 - `install` is a fixture, requested by name below
    Install,
    consentry,
    forget_process_state,
    install,
    one_line_error,
)

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_FILE = ROOT / "docs" / "dsr-export.schema.json"
NOTICE_TEXT = "We send our newsletter monthly. Withdraw any time with one click."
NOTES = "<script>alert('x')</script> & called twice"


def unzip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def trusted(services: Services) -> TreeHeadVerifier:
    return TreeHeadVerifier([services.audit_trail.signer.public_key])


async def person_with_history(services: Services, staff: Staff) -> tuple[str, Any, str]:
    """A salesperson's contact (with a birth date sales may not see), a consent grant under
    a published notice, and the salesperson's read of the record."""
    seller = await staff.create("sales")
    actor = staff.actor(seller)
    values = contact_values(notes=NOTES)
    record = await services.gateway.create(
        Actor.system("test-seed"), "contact", values, owner_id=seller.user_id, team=seller.team
    )
    notice = await services.consent.publish_notice("Newsletter", NOTICE_TEXT, by="user:1")
    await services.consent.grant(
        record.subject_id,
        "marketing_email",
        "email",
        source="staff",
        notice_version=notice.version,
        actor_id=actor.id,
    )
    await services.gateway.read(actor, "contact", record.id)
    return record.subject_id, seller, values["email"]


async def test_export_bundle_is_complete_readable_and_signed(
    services: Services, staff: Staff
) -> None:
    subject, seller, email = await person_with_history(services, staff)
    bundle = await build_export(services, subject, requested_by="user:99", requested_role="admin")
    files = unzip(bundle.zip_bytes)
    assert set(files) == {
        "data.json",
        "contacts.csv",
        "index.html",
        "manifest.json",
        "manifest.sig",
    }

    data = json.loads(files["data.json"])
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(data)
    assert data["subject_id"] == subject
    (contact,) = data["records"]["contact"]
    assert contact["email"] == email
    assert contact["notes"] == NOTES
    assert contact["birth_date"] == "1906-12-09"  # every field, even ones sales may not see

    (granted,) = data["consents"]["events"]
    assert granted["kind"] == "granted"
    assert granted["notice"]["text"] == NOTICE_TEXT
    assert granted["notice"]["content_hash"]
    assert data["consents"]["state"][0]["state"] == "granted"

    key = pseudonym_key(services.gateway.vault)
    label = f"sales #{staff_pseudonym(key, f'user:{seller.user_id}')}"
    reads = [a for a in data["access_log"] if a["action"] == "read"]
    assert reads
    assert reads[0]["staff"] == label
    assert reads[0]["purpose"] == "customer_relationship"
    assert "email" in reads[0]["fields"]
    for name in ("data.json", "index.html", "contacts.csv"):
        assert seller.email.encode() not in files[name]
        assert f"user:{seller.user_id}".encode() not in files[name]

    purposes = {p["purpose"]: p for p in data["processing"]}
    assert purposes["marketing_email"]["legal_basis_label"].startswith("Consent")
    assert "customer_relationship" in purposes
    assert "third_party_sharing" not in purposes  # no consent given for it
    assert all(p["retention"] and p["recipients"] for p in data["processing"])
    assert data["source"]["records"][0]["source"] == "referral"
    assert data["source"]["consents"] == [
        {"source": "staff", "label": "Recorded by our staff on your behalf"}
    ]

    rows = list(csv.reader(io.StringIO(files["contacts.csv"].decode())))
    assert rows[0][:4] == ["Record id", "Created", "Last changed", "First name"]
    assert "E-mail address" in rows[0]
    assert rows[1][rows[0].index("E-mail address")] == email
    assert rows[1][0] == contact["id"]

    html = files["index.html"].decode()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert NOTICE_TEXT in html
    assert label in html
    assert "Legal obligation - Art. 6(1)(c) GDPR" in html or "Consent - Art. 6(1)(a)" in html

    report = verify_export(bundle.zip_bytes, trusted(services))
    assert report.ok, report.problems
    assert report.files == 3
    assert report.subject_id == subject


async def test_a_changed_added_or_removed_file_or_a_foreign_signature_fails(
    services: Services, staff: Staff
) -> None:
    subject, _, _ = await person_with_history(services, staff)
    bundle = await build_export(services, subject, requested_by="system:test")
    verifier = trusted(services)
    files = unzip(bundle.zip_bytes)

    changed = dict(files, **{"data.json": files["data.json"].replace(b"Grace", b"Grece")})
    assert verify_export(rezip(changed), verifier).problems == (
        "file changed: data.json (its SHA-256 does not match the manifest)",
    )
    extra = dict(files, **{"notes.txt": b"added later"})
    assert verify_export(rezip(extra), verifier).problems == (
        "extra file not in the manifest: notes.txt",
    )
    missing = {k: v for k, v in files.items() if k != "contacts.csv"}
    assert verify_export(rezip(missing), verifier).problems == ("missing file: contacts.csv",)
    assert verify_export(b"not a zip", verifier).problems == ("not a ZIP file",)

    # Someone else's key: unknown, whatever key id the manifest claims.
    other = Ed25519PrivateKey.generate()
    manifest = json.loads(files["manifest.json"])
    manifest["key_id"] = key_id_of(other.public_key())
    forged_bytes = json.dumps(manifest).encode()
    forged = dict(files)
    forged["manifest.json"] = forged_bytes
    forged["manifest.sig"] = base64.b64encode(other.sign(MANIFEST_DOMAIN + forged_bytes))
    assert "unknown key" in verify_export(rezip(forged), verifier).problems[0]
    manifest["key_id"] = bundle.key_id
    forged_bytes = json.dumps(manifest).encode()
    forged["manifest.json"] = forged_bytes
    forged["manifest.sig"] = base64.b64encode(other.sign(MANIFEST_DOMAIN + forged_bytes))
    assert verify_export(rezip(forged), verifier).problems == (
        "manifest signature does not verify",
    )
    # A verifier that trusts only another key refuses the genuine bundle too.
    stranger = TreeHeadVerifier([TreeHeadSigner(other).public_key])
    assert "unknown key" in verify_export(bundle.zip_bytes, stranger).problems[0]


async def test_every_export_is_audited_without_values(services: Services, staff: Staff) -> None:
    subject, _, email = await person_with_history(services, staff)
    bundle: ExportBundle = await build_export(services, subject, requested_by="system:test")
    rows = await AuditRecord.select().where(AuditRecord.subject_ids.like(f'%"{subject}"%'))
    by_action = {row["action"]: row for row in rows}
    assert by_action["export"]["actor_id"] == "system:dsr-export"
    assert by_action["export"]["purpose"] == "compliance"
    assert "consent.export" in by_action
    done = by_action["dsr.export"]
    assert done["actor_id"] == "system:test"
    assert done["resource_type"] == "data_subject"
    assert done["purpose"] == "compliance"
    detail = json.loads(done["detail"])
    assert detail["files"] == 5
    assert detail["records"] == 1
    assert detail["accesses"] == bundle.accesses > 0
    assert detail["manifest_sha256"] == bundle.manifest_sha256
    assert all(email not in json.dumps(dict(row), default=str) for row in rows)


async def test_published_schema_matches_the_data_map() -> None:
    """Regenerate with: python -c "from server.dsr.export_format import export_schema_text;
    print(export_schema_text(), end='')" > docs/dsr-export.schema.json"""
    assert json.loads(SCHEMA_FILE.read_text()) == export_schema()
    jsonschema.Draft202012Validator.check_schema(export_schema())


async def test_unknown_or_malformed_subject_is_refused(services: Services) -> None:
    with pytest.raises(NoRecords, match="no records for this subject"):
        await build_export(services, str(uuid.uuid4()), requested_by="system:test")
    with pytest.raises(ValueError, match="not a subject id"):
        await build_export(services, "grace@example.org", requested_by="system:test")


# --- the command line ---------------------------------------------------------------------


def test_cli_export_then_verify_and_error_paths(
    install: Install,  # noqa: F811 - the fixture imported from test_cli, requested by name
    tmp_path: Path,
) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    forget_process_state()

    async def create_contact() -> str:
        await db.start()
        try:
            services = build_services(settings.get_settings())
            record = await services.gateway.create(
                Actor.system("test"), "contact", contact_values()
            )
            return record.subject_id
        finally:
            await db.stop()

    subject = asyncio.run(create_contact())
    output = tmp_path / "export.zip"
    exported = consentry("dsr", "export", subject, "-o", str(output))
    assert exported.exit_code == 0, exported.output
    assert "1 contact" in exported.stdout
    assert zipfile.is_zipfile(output)

    verified = consentry("dsr", "verify-export", str(output))
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.startswith("export verifies: 3 files")

    public_key = tmp_path / "audit.pub"
    public_key.write_text(consentry("audit", "public-key").stdout)
    with_key = consentry("dsr", "verify-export", str(output), "--public-key", str(public_key))
    assert with_key.exit_code == 0, with_key.output

    again = one_line_error(consentry("dsr", "export", subject, "-o", str(output)))
    assert "already exists" in again
    unknown = consentry("dsr", "export", str(uuid.uuid4()), "-o", str(tmp_path / "x.zip"))
    assert one_line_error(unknown) == "Error: no records for this subject"
    bad = consentry("dsr", "export", "someone@example.org", "-o", str(tmp_path / "y.zip"))
    assert "not a subject id" in one_line_error(bad)
    assert not (tmp_path / "x.zip").exists()

    files = unzip(output.read_bytes())
    files["index.html"] += b"<!-- edited -->"
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(rezip(files))
    caught = consentry("dsr", "verify-export", str(tampered))
    assert caught.exit_code == 1
    assert "file changed: index.html" in one_line_error(caught)


async def test_the_export_page_shows_names_amounts_and_dates_not_ids_and_codes(
    services: Services, staff: Staff
) -> None:
    subject, _, _ = await person_with_history(services, staff)
    seeder = Actor.system("test-seed")
    org = await services.gateway.create(seeder, "organization", {"name": "Analytical Engines Ltd"})
    contact = (await services.gateway.list(seeder, "contact")).items[0]
    await services.gateway.update(seeder, "contact", contact.id, {"organization_id": org.id})
    await services.gateway.create(
        seeder,
        "deal",
        {"title": "Renewal", "contact_id": contact.id, "amount": 1_450_000, "currency": "EUR"},
    )
    await services.gateway.create(
        seeder,
        "deal",
        {"title": "Tokyo", "contact_id": contact.id, "amount": 1_450_000, "currency": "JPY"},
    )
    bundle = await build_export(services, subject, requested_by="user:99", requested_role="admin")
    files = unzip(bundle.zip_bytes)
    data = json.loads(files["data.json"])
    assert {d["amount"] for d in data["records"]["deal"]} == {"14500.00", "1450000"}
    html = files["index.html"].decode()
    page = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "14,500.00 EUR" in page
    assert "1,450,000 JPY" in page  # yen have no minor unit
    assert "1450000" not in page
    assert "Analytical Engines Ltd" in page
    assert org.id not in html
    assert subject not in html
    for doc in (*data["records"]["contact"], *data["records"]["deal"]):
        assert doc["id"] not in html
    assert re.search(r"\d\.\d{6}", html) is None  # no microseconds
    assert re.search(r"\d{1,2} \w+ \d{4}, \d\d:\d\d UTC", page)
    assert "Marketing email" in page
