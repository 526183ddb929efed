"""CSV import and export, as an operator and as staff see them, on both engines.

Import: a generated contacts file with 50 bad rows spread through it is checked by a dry
run (the bad rows by line and reason, nothing written), imported (the good rows created),
and imported again (nothing created, every good row skipped); progress is shown and no
personal value reaches the report. Export: only the fields and records the role may read,
a reason required, audited with the count and fields, formulas neutralised.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient, Response

from admin_ui.pages.imports import MAX_UPLOAD_BYTES
from audit.tables import AuditRecord
from server import db
from server.csvio.exporter import csv_chunks, neutralise
from server.csvio.importer import import_rows, read_rows, record_type
from server.csvio.jobs import ImportJobs
from server.csvio.tables import ImportJob
from server.gateway import Actor, Forbidden, InvalidInput
from server.services import Services, build_services
from server.settings import get_settings
from tests.admin_ui.test_admin_ui import csrf_of, text_of, web_login
from tests.conftest import Staff, contact_values
from tests.server.cli.test_cli import (
    Install,
    consentry,
    forget_process_state,
    install,
    one_line_error,
)

__all__ = ["install"]  # the CLI tests' fixture: an empty installation

SYSTEM = Actor.system("test")
ROWS = int(os.environ.get("CONSENTRY_TEST_IMPORT_ROWS", "10000"))
BAD_EVERY = ROWS // 50
HEADER = "First Name,Last Name,E-mail,Phone,Lifecycle stage,Favourite colour"
# What each kind of bad row is, and the reason the report must give for it.
BAD_KINDS = (
    ("email", "not a valid e-mail address"),
    ("last_name", "is required"),
    ("first_name", "longer than 100 characters"),
    ("lifecycle_stage", "must be one of: lead, prospect, customer, former_customer"),
)


def generated_file(rows: int) -> tuple[str, dict[int, tuple[str, str]]]:
    """A contacts CSV and {line: (field, reason)} of its bad rows (the header is line 1)."""
    lines = [HEADER]
    bad: dict[int, tuple[str, str]] = {}
    for i in range(rows):
        line = i + 2
        first, last, email, stage = f"Ada{i}", f"Lovelace{i}", f"ada.{i}@example.org", "lead"
        if i % BAD_EVERY == BAD_EVERY // 2:
            field, reason = BAD_KINDS[len(bad) % len(BAD_KINDS)]
            bad[line] = (field, reason)
            if field == "email":
                email = f"ada.{i}-at-example.org"
            elif field == "last_name":
                last = ""
            elif field == "first_name":
                first = "A" * 101
            else:
                stage = "vip"
        lines.append(f"{first},{last},{email},+44 20 7946 {i % 10000:04d},{stage},blue")
    return "\n".join(lines) + "\n", bad


def run_async(body: Any) -> Any:
    """Run ``body(services)`` against the installation's database, as a new process would."""
    forget_process_state()

    async def main() -> Any:
        await db.start()
        try:
            return await body(build_services(get_settings()))
        finally:
            await db.stop()

    try:
        return asyncio.run(main())
    finally:
        forget_process_state()


async def count_contacts(services: Services) -> int:
    return await services.gateway.count(SYSTEM, "contact", purpose="customer_relationship")


def test_import_ten_thousand_style_file_dry_run_import_and_again(
    install: Install, tmp_path: Path
) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    content, bad = generated_file(ROWS)
    assert len(bad) == 50
    source = tmp_path / "contacts.csv"
    source.write_text(content)
    report_file = tmp_path / "report.csv"

    dry = consentry("import", "contacts", str(source), "--dry-run", "--report", str(report_file))
    assert dry.exit_code == 1, dry.output
    assert (
        f"dry run, nothing written: {ROWS} rows: {ROWS - 50} would be created, 0 skipped, 50 bad"
        in (dry.stdout)
    )
    assert "column 'Favourite colour' ignored: unknown column" in dry.stdout
    for line, (field, reason) in bad.items():
        assert f"  line {line}: {field}: {reason}\n" in dry.stdout
    assert "Importing contacts" in dry.stderr  # the progress bar
    assert run_async(count_contacts) == 0
    with report_file.open() as handle:
        reported = list(csv.DictReader(handle))
    assert {(int(r["line"]), r["field"], r["reason"]) for r in reported} == {
        (line, field, reason) for line, (field, reason) in bad.items()
    }

    done = consentry("import", "contacts", str(source), "--report", str(report_file))
    assert done.exit_code == 1, done.output
    assert f"{ROWS} rows: {ROWS - 50} created, 0 skipped, 50 bad" in done.stdout
    assert "rows/s" in done.stdout
    assert run_async(count_contacts) == ROWS - 50

    again = consentry("import", "contacts", str(source), "--report", str(report_file))
    assert again.exit_code == 1, again.output
    assert f"{ROWS} rows: 0 created, {ROWS - 50} skipped, 50 bad" in again.stdout
    assert run_async(count_contacts) == ROWS - 50
    report_text = report_file.read_text()
    assert report_text.count("skipped (already imported)") == ROWS - 50

    # No personal value in anything the import printed or wrote.
    for text in (dry.output, done.output, again.output, report_text):
        assert "example.org" not in text
        assert "Lovelace" not in text
        assert "+44" not in text
        assert "blue" not in text


def test_cli_refuses_unusable_files_with_exit_code_two(install: Install, tmp_path: Path) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    no_last_name = tmp_path / "names.csv"
    no_last_name.write_text("first_name,email\nAda,ada@example.org\n")
    cases = {
        (str(binary),): "not UTF-8 text",
        (str(empty),): "the file is empty",
        (str(no_last_name),): "no column for required contact field(s): last_name",
        (str(no_last_name), "--map", "Nickname"): "expected COLUMN=FIELD",
        (str(no_last_name), "--map", "email=shoe_size"): "contact has no field 'shoe_size'",
        (str(tmp_path / "absent.csv"),): "cannot read the file",
    }
    for args, reason in cases.items():
        result = consentry("import", "contacts", *args)
        assert result.exit_code == 2, (args, result.output)
        assert reason in one_line_error(result), args
    unknown_type = consentry("import", "unicorns", str(empty))
    assert unknown_type.exit_code == 2

    # --map rescues a column named differently; all rows good: exit code 0.
    mapped = tmp_path / "mapped.csv"
    mapped.write_text("Given,Surname,Mail\nAda,Lovelace,ada@example.org\n")
    result = consentry(
        "import", "organizations" if False else "contacts", str(mapped),
        "--map", "Given=first_name", "--map", "Surname=last_name", "--map", "Mail=email",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 rows: 1 created, 0 skipped, 0 bad" in result.stdout


async def test_organizations_and_leads_are_keyed_by_domain_and_email(services: Services) -> None:
    content = (
        b"Name,Web domain,Industry\n"
        b"Acme,acme.example,Rockets\n"
        b"Acme again,ACME.example,Rockets\n"
        b"Globex,,Energy\n"
        b",nameless.example,Energy\n"
    )
    rt = record_type("organization")
    fields = services.gateway.permitted_fields(SYSTEM, "organization", "create")
    assert fields is not None
    plan, rows = read_rows(content, rt, {}, fields)
    first = await import_rows(services.gateway, SYSTEM, "organization", plan, rows, dry_run=False)
    assert first.created == 2
    assert [(s.line, s.reason) for s in first.skipped] == [(3, "skipped (same domain as line 2)")]
    assert [(p.line, p.field, p.reason) for p in first.problems] == [(5, "name", "is required")]
    second = await import_rows(services.gateway, SYSTEM, "organization", plan, rows, dry_run=False)
    assert second.created == 0
    assert {s.line for s in second.skipped} == {2, 3, 4}

    leads = b"first_name,last_name,email,phone\nAda,Lovelace,,\nBo,Diddley,,+44 20 7946 0002\n"
    lead_fields = services.gateway.permitted_fields(SYSTEM, "lead", "create")
    assert lead_fields is not None
    plan, rows = read_rows(leads, record_type("lead"), {}, lead_fields)
    report = await import_rows(services.gateway, SYSTEM, "lead", plan, rows, dry_run=False)
    assert report.created == 1  # Bo, by phone; Ada has nothing to recognise her by
    assert [(p.line, p.field) for p in report.problems] == [(2, "email")]
    again = await import_rows(services.gateway, SYSTEM, "lead", plan, rows, dry_run=False)
    assert again.created == 0
    assert [s.line for s in again.skipped] == [3]


# --- export --------------------------------------------------------------------------------


async def export_text(
    services: Services, actor: Actor, resource: str, reason: str = "reporting", **kw: Any
) -> list[dict[str, str]]:
    export = await services.gateway.start_export(actor, resource, reason=reason, page_size=2, **kw)
    text = "".join([chunk async for chunk in csv_chunks(export)])
    return list(csv.DictReader(io.StringIO(text)))


async def test_export_fields_records_audit_and_injection(services: Services, staff: Staff) -> None:
    rep = await staff.create("sales")
    other = await staff.create("sales")
    marketer = await staff.create("marketing")
    mine = [
        contact_values(first_name='=HYPERLINK("http://evil.example")', last_name="Mine"),
        contact_values(last_name="-2+3"),
        contact_values(last_name="@SUM(A1)"),
    ]
    for values in mine:
        await services.gateway.create(SYSTEM, "contact", values, owner_id=rep.user_id, team="north")
    await services.gateway.create(
        SYSTEM, "contact", contact_values(last_name="Theirs"), owner_id=other.user_id, team="north"
    )

    rows = await export_text(services, staff.actor(rep), "contact")
    assert len(rows) == 3  # their own only, over two pages of two
    assert {r["last_name"] for r in rows} == {"Mine", "'-2+3", "'@SUM(A1)"}
    assert {r["first_name"] for r in rows} >= {'\'=HYPERLINK("http://evil.example")'}
    assert "phone" in rows[0]
    assert "birth_date" not in rows[0]
    assert rows[0]["phone"].startswith("'+44")

    marketing = await export_text(services, staff.actor(marketer), "contact", "campaign_planning")
    assert len(marketing) == 4
    assert "phone" not in marketing[0]
    assert "birth_date" not in marketing[0]
    assert "notes" not in marketing[0]
    assert "email" in marketing[0]

    events = await AuditRecord.select().where(
        (AuditRecord.action == "export") & (AuditRecord.actor_id == f"user:{rep.user_id}")
    )
    closing = [e for e in events if json.loads(e["detail"]).get("complete")]
    assert len(closing) == 1
    detail = json.loads(closing[0]["detail"])
    assert detail["rows"] == 3
    assert detail["reason"] == "reporting"
    assert detail["pages"] == 2
    assert "phone" in json.loads(closing[0]["fields"])
    assert "birth_date" not in json.loads(closing[0]["fields"])
    pages = [e for e in events if "page" in json.loads(e["detail"])]
    assert sum(len(json.loads(e["subject_ids"])) for e in pages) == 3
    dump = json.dumps(events, default=str)
    assert "Mine" not in dump
    assert "HYPERLINK" not in dump


async def test_export_needs_a_reason_and_the_right(services: Services, staff: Staff) -> None:
    for reason in ("", "because I said Jane Doe asked"):
        with pytest.raises(
            InvalidInput, match="an export needs a reason, one of: reporting"
        ) as err:
            await services.gateway.start_export(SYSTEM, "contact", reason=reason)
        assert "Jane" not in err.value.message
    support = await staff.create("support")
    with pytest.raises(Forbidden, match="your role may not export contact records"):
        await services.gateway.start_export(staff.actor(support), "contact", reason="backup")
    denied = await AuditRecord.select().where(
        (AuditRecord.action == "export") & (AuditRecord.outcome == "denied")
    )
    assert len(denied) == 1


def test_neutralise_cells() -> None:
    assert neutralise("=1+1") == "'=1+1"
    assert neutralise("\tcmd") == "'\tcmd"
    assert neutralise("plain") == "plain"
    assert neutralise(-5) == "-5"
    assert neutralise(None) == ""


def test_cli_export_writes_the_file_or_explains(install: Install, tmp_path: Path) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0

    async def seed(services: Services) -> None:
        await services.gateway.create(SYSTEM, "contact", contact_values(first_name="+Eve"))

    run_async(seed)
    out = tmp_path / "contacts.csv"
    missing = consentry("export", "contacts", "-o", str(out))
    assert missing.exit_code == 1
    assert "an export needs a reason" in one_line_error(missing)
    assert not out.exists()
    done = consentry("export", "contacts", "-o", str(out), "--reason", "backup")
    assert done.exit_code == 0, done.output
    assert "exported 1 contacts" in done.stdout
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["first_name"] == "'+Eve"
    assert "birth_date" in rows[0]  # the system actor reads every field


# --- the admin pages -----------------------------------------------------------------------


async def test_admin_import_page_dry_run_then_import_and_export_button(
    services: Services, staff: Staff
) -> None:
    admin = await staff.create("admin")
    client = await web_login(staff, admin)
    page = await client.get("/import")
    assert page.status_code == 200
    content = (
        b"First name,Last name,E-mail,Shoe size\n"
        b"Ada,Lovelace,ada@example.org,38\n"
        b"Bo,,bo@example.org,44\n"
    )

    async def upload(data: bytes = content) -> Any:
        form = {"resource": "contact", "_csrf_token": csrf_of(page)}
        return await client.post(
            "/import", data=form, files={"file": ("people.csv", data, "text/csv")}
        )

    async def step(mapping_page: Any, action: str) -> Any:
        """Press a button of the mapping or review page, carrying its hidden fields."""
        fields = dict(
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', mapping_page.text)
        )
        selects = re.findall(
            r'<select id="column-\d+" name="(column_\d+)">(.*?)</select>', mapping_page.text, re.S
        )
        for name, options in selects:
            picked = re.search(r'<option value="([^"]*)" selected>', options)
            fields[name] = picked.group(1) if picked else ""
        return await client.post("/import/mapping", data={**fields, "action": action})

    async def finished(started: Any) -> Any:
        """Follow the import to its job page and wait for the job to end, as the page's
        own refresh would."""
        assert started.status_code == 303, started.text[:500]
        job_url = started.headers["location"]
        assert job_url.startswith("/import/jobs/")
        for _ in range(200):
            job_page = await client.get(job_url)
            assert job_page.status_code == 200
            if 'http-equiv="refresh"' not in job_page.text:
                return job_page
            assert "<progress" in job_page.text
            await asyncio.sleep(0.05)
        raise AssertionError("the import job did not finish")

    mapping = await upload()
    assert mapping.status_code == 200
    assert "Match the columns" in text_of(mapping)
    review = await step(mapping, "check")
    assert "Nothing was written. 2 rows: 1 would be created, 0 skipped, 1 bad" in text_of(review)
    assert "“Shoe size” → not imported" in text_of(review)
    assert "3 last_name is required" in text_of(review)
    assert await services.gateway.count(SYSTEM, "contact") == 0
    done = await finished(await step(review, "import"))
    assert "2 rows: 1 created, 0 skipped, 1 bad" in text_of(done)
    # The upload is gone once the import started: the same form cannot run it twice.
    gone = await step(review, "import")
    assert gone.status_code == 400
    assert "That upload is no longer here" in text_of(gone)
    again = await finished(await step(await step(await upload(), "check"), "import"))
    assert "2 rows: 0 created, 1 skipped, 1 bad" in text_of(again)
    assert "ada@example.org" not in again.text
    history = await client.get("/import")
    assert "Recent imports" in text_of(history)
    assert text_of(history).count("1 created") == 1
    unusable = await upload(b"\x00\x01binary")
    assert unusable.status_code == 400
    assert "The file cannot be imported: not a CSV file" in text_of(unusable)
    assert (await client.get("/import/jobs/not-a-job")).status_code == 404
    too_big = await upload(b"a,b\n" + b"x" * (MAX_UPLOAD_BYTES + 100_000))
    assert too_big.status_code == 413

    listing = await client.get("/contacts?lifecycle_stage=customer")
    assert 'href="/export/contacts?lifecycle_stage=customer"' in listing.text
    ask = await client.get("/export/contacts?lifecycle_stage=customer")
    assert ask.status_code == 200
    assert "Reason" in text_of(ask)
    assert '<form method="post" action="/export/contacts">' in ask.text
    assert '<input type="hidden" name="lifecycle_stage" value="customer">' in ask.text
    csv_file = await export_csv(client, "contacts", reason="backup")
    assert csv_file.status_code == 200
    assert csv_file.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_file.text)))
    assert [r["email"] for r in rows] == ["ada@example.org"]
    no_reason = await export_csv(client, "contacts")
    assert no_reason.status_code == 400
    assert "Choose the reason for the export." in text_of(no_reason)

    rep = await staff.create("sales")
    rep_client = await web_login(staff, rep)
    assert (await rep_client.get("/import")).status_code == 404
    support = await staff.create("support")
    support_client = await web_login(staff, support)
    refused = await export_csv(support_client, "contacts", reason="backup")
    assert refused.status_code == 400
    assert "your role may not export contact records" in text_of(refused)


async def export_csv(client: AsyncClient, kind: str, **fields: str) -> Response:
    """Open the export page and press its button, as a person would (with the CSRF token)."""
    page = await client.get(f"/export/{kind}")
    return await client.post(f"/export/{kind}", data={**fields, "_csrf_token": csrf_of(page)})


async def export_events() -> list[dict[str, Any]]:
    return list(await AuditRecord.select().where(AuditRecord.action == "export"))


async def test_an_export_is_a_post_with_the_csrf_token(services: Services, staff: Staff) -> None:
    """A cross-site link (GET, even with a reason) or a forged POST (no CSRF token) exports
    nothing and records nothing under the victim's name; the page's own button does."""
    await services.gateway.create(SYSTEM, "contact", contact_values(email="ada@example.org"))
    client = await web_login(staff, await staff.create("admin"))
    for kind in ("contacts", "organizations", "leads", "deals", "interactions", "cases"):
        linked = await client.get(f"/export/{kind}?reason=backup&lifecycle_stage=customer")
        assert linked.status_code == 200, kind
        assert linked.headers["content-type"].startswith("text/html")
        forged = await client.post(f"/export/{kind}", data={"reason": "backup"})
        assert forged.status_code == 403, kind
        assert not forged.headers["content-type"].startswith("text/csv")
    assert await export_events() == []

    pressed = await export_csv(client, "contacts", reason="backup", lifecycle_stage="lead")
    assert pressed.status_code == 200
    assert pressed.headers["content-type"].startswith("text/csv")
    (event,) = await export_events()
    assert event["resource_type"] == "contact"


async def test_an_import_whose_worker_stopped_is_shown_as_interrupted(
    services: Services, staff: Staff
) -> None:
    """A job that stopped advancing (its worker went away with the rows) must not spin
    forever: after two quiet minutes the page says what happened and what to do."""
    admin = await staff.create("admin")
    client = await web_login(staff, admin)
    quiet_since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)
    job_id = uuid.uuid4()
    await ImportJob.insert(
        ImportJob(
            id=job_id,
            started_by=admin.user_id,
            resource="contact",
            dry_run=False,
            status="running",
            total_rows=10_000,
            processed_rows=4_000,
            started_at=quiet_since,
            updated_at=quiet_since,
        )
    )
    page = await client.get(f"/import/jobs/{job_id}")
    assert page.status_code == 200
    assert 'http-equiv="refresh"' not in page.text
    assert (
        "Interrupted after 4000 of 10000 rows. Upload the file again to finish: rows "
        "already imported are skipped, so nothing is created twice."
    ) in text_of(page)


async def test_import_jobs_are_forgotten_after_90_days(services: Services) -> None:
    jobs = ImportJobs(services.gateway)
    now = dt.datetime.now(dt.UTC)
    for age in (1, 89, 91):
        started = now - dt.timedelta(days=age)
        await ImportJob.insert(
            ImportJob(
                id=uuid.uuid4(),
                started_by=1,
                resource="contact",
                status="done",
                started_at=started,
                updated_at=started,
            )
        )
    assert await jobs.purge(now) == 1
    assert len(await jobs.recent()) == 2
