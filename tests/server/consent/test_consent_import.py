"""Importing consent evidence from CSV: what is granted, what is refused and why, on both
engines; the same file twice records nothing new; a dry run records nothing; the
``consentry consent import`` command as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from server import db
from server.consent.importer import ImportReport, batch_id, import_consent, read_csv
from server.consent.model import ConsentError
from server.consent.tables import ConsentEvent
from server.gateway import Actor
from server.services import Services, build_services
from server.settings import get_settings
from tests.conftest import contact_values
from tests.dbutil import raw_sql
from tests.server.cli.test_cli import (
    Install,
    consentry,
    forget_process_state,
    install,
    one_line_error,
)

__all__ = ["install"]  # the CLI tests' fixture: an empty installation

SYSTEM = Actor.system("test")
HEADER = "email,purpose,channel,consented_at,source,notice_version,reference"
ALICE = "alice.brandvold@example.net"
BRUNO = "bruno.tessaract@example.net"
STRANGER = "nobody.known@example.net"


async def add_contact(services: Services, email: str, phone: str = "+44 20 7946 0001") -> str:
    values = contact_values(email=email, phone=phone)
    record = await services.gateway.create(SYSTEM, "contact", values)
    return record.subject_id


async def publish(services: Services) -> int:
    notice = await services.consent.publish_notice("Notice", "We write monthly.", by="user:1")
    return notice.version


def csv_bytes(*lines: str) -> bytes:
    return ("\n".join((HEADER, *lines)) + "\n").encode()


async def ledger_size() -> int:
    return int(await ConsentEvent.count())


async def run(services: Services, content: bytes, *, dry_run: bool = False) -> ImportReport:
    return await import_consent(
        services, read_csv(content), dry_run=dry_run, batch=batch_id(content)
    )


def reasons(report: ImportReport) -> dict[int, str]:
    return {r.line: r.reason for r in report.rejected}


async def test_good_rows_are_granted_and_bad_rows_reported_by_line(services: Services) -> None:
    alice = await add_contact(services, ALICE)
    bruno = await add_contact(services, BRUNO, phone="+44 20 7946 0002")
    version = await publish(services)
    content = csv_bytes(
        f"{ALICE},marketing_email,email,2024-03-01,import,{version},crm-2024-03",  # line 2
        f"{ALICE},profiling,,2024-03-01T10:15:00+01:00,web_form,{version},",  # 3
        f"{BRUNO},marketing_email,email,,import,{version},",  # 4: no date
        f"{BRUNO},marketing_email,email,2024-03-01,,,",  # 5: no source, no notice
        f"{STRANGER},marketing_email,email,2024-03-01,import,{version},",  # 6
        f"{BRUNO},marketing_pigeon,email,2024-03-01,import,{version},",  # 7
        f"{BRUNO},marketing_email,email,01/03/2024,import,{version},",  # 8
        f"{BRUNO},marketing_email,fax,2024-03-01,import,{version},",  # 9
        f"{BRUNO},marketing_email,email,2024-03-01,import,{version + 5},",  # 10
        f"{BRUNO},marketing_email,email,2024-03-01,system,{version},",  # 11
        f"{BRUNO},service_communication,email,2024-03-01,import,{version},",  # 12
        "not-an-address,marketing_email,email,2024-03-01,import,1,",  # 13
    )
    report = await run(services, content)

    assert (report.rows, report.granted, report.already_recorded) == (12, 2, 0)
    assert reasons(report) == {
        4: "no consent evidence: missing consented_at",
        5: "no consent evidence: missing source, notice_version",
        6: "no contact with this e-mail",
        7: "unknown purpose",
        8: "consented_at is not an ISO date or date-time",
        9: "channel not offered for this purpose",
        10: "no privacy notice with this version",
        11: "source must be one of: web_form, portal, phone, import, staff",
        12: "this purpose does not rest on consent",
        13: "not a valid e-mail",
    }
    printed = " ".join(r.reason for r in report.rejected)
    for value in (ALICE, BRUNO, STRANGER, "not-an-address", "marketing_pigeon", "fax"):
        assert value not in printed

    assert (await services.consent.has_basis(alice, "marketing_email", "email")).ok
    assert (await services.consent.has_basis(alice, "profiling")).ok
    assert not (await services.consent.has_basis(bruno, "marketing_email")).ok
    rows = await ConsentEvent.select().where(ConsentEvent.purpose == "marketing_email")
    [event] = rows
    assert event["source"] == "import"
    assert event["actor_id"] == "system:consent-import"
    assert event["notice_version"] == version
    stored = json.loads(event["evidence"])
    assert "crm-2024-03" not in event["evidence"]  # free text is sealed under the key
    assert await services.consent.readable_evidence(alice, stored) == {
        "import_batch": batch_id(content),
        "reference": "crm-2024-03",
        "requested_at": "2024-03-01",
    }
    [profiling] = await ConsentEvent.select().where(ConsentEvent.purpose == "profiling")
    assert json.loads(profiling["evidence"])["requested_at"] == "2024-03-01T10:15:00+01:00"


async def test_the_same_file_twice_records_nothing_new(services: Services) -> None:
    alice = await add_contact(services, ALICE)
    version = await publish(services)
    content = csv_bytes(
        f"{ALICE},marketing_email,email,2024-03-01,import,{version},r1",
        f"{ALICE},profiling,,2024-03-01,import,{version},",
    )
    first = await run(services, content)
    assert (first.granted, first.already_recorded) == (2, 0)
    size = await ledger_size()

    again = await run(services, content)
    assert (again.granted, again.already_recorded, again.rejected) == (0, 2, [])
    assert await ledger_size() == size

    # The same reference and notice in another file is the same evidence.
    renamed = await import_consent(
        services, read_csv(content), dry_run=False, batch="another-export"
    )
    assert renamed.already_recorded == 1  # row 1 by its reference
    assert renamed.granted == 1  # row 2 has no reference: a renewal under the new batch

    # A withdrawal is not undone by importing the old file again, nor by older evidence.
    await services.consent.withdraw(
        alice, "marketing_email", "email", source="staff", actor_id="user:1"
    )
    size = await ledger_size()
    assert (await run(services, content)).granted == 0
    older = csv_bytes(f"{ALICE},marketing_email,email,2024-03-02,import,{version},r2")
    report = await run(services, older)
    assert reasons(report) == {2: "a withdrawal recorded after consented_at overrules this row"}
    assert await ledger_size() == size
    assert not (await services.consent.has_basis(alice, "marketing_email")).ok


async def test_dry_run_reports_and_writes_nothing(services: Services) -> None:
    await add_contact(services, ALICE)
    version = await publish(services)
    content = csv_bytes(
        f"{ALICE},marketing_email,email,2024-03-01,import,{version},",
        f"{ALICE},marketing_email,email,2024-03-01,import,{version},",  # a duplicate row
        f"{STRANGER},marketing_email,email,2024-03-01,import,{version},",
    )
    report = await run(services, content, dry_run=True)
    assert (report.granted, report.already_recorded) == (1, 1)
    assert reasons(report) == {4: "no contact with this e-mail"}
    assert report.summary() == "1 would be granted, 1 already recorded, 1 rejected"
    assert await ledger_size() == 0


def test_header_and_line_numbers_survive_bom_quotes_and_blank_lines() -> None:
    content = (
        "\ufeffEmail, Purpose ,consented_at,source,notice_version\r\n"
        '"a@example.net","marketing_email","2024-01-01","import","1"\r\n'
        "\r\n"
        '"b@example.net","x\ny","2024-01-01","import","1"\r\n'
        "c@example.net,profiling,2024-01-01,import,1\r\n"
    ).encode()
    rows = read_csv(content)
    assert [row.line for row in rows] == [2, 4, 6]
    assert rows[0]["email"] == "a@example.net"
    assert rows[0]["purpose"] == "marketing_email"


# --- the command ---------------------------------------------------------------------------


def prepare(install: Install, people: int) -> int:
    """Keys, schema, ``people`` contacts (person{i}@example.net) and a notice."""
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    forget_process_state()

    async def seed() -> int:
        await db.start()
        try:
            services = build_services(get_settings())
            for i in range(people):
                await add_contact(services, f"person{i}@example.net", f"+44 20 7946 {i:04d}")
            return await publish(services)
        finally:
            await db.stop()

    try:
        return asyncio.run(seed())
    finally:
        forget_process_state()


def test_cli_imports_reports_and_refuses_files_without_columns(
    install: Install, tmp_path: Path
) -> None:
    version = prepare(install, 3)
    good = tmp_path / "consent.csv"
    good.write_bytes(
        csv_bytes(
            f"person0@example.net,marketing_email,email,2024-03-01,import,{version},",
            f"person1@example.net,marketing_email,email,2024-03-01,import,{version},",
            f"{STRANGER},marketing_email,email,2024-03-01,import,{version},",
            f"person2@example.net,marketing_email,email,,import,{version},",
        )
    )
    dry = consentry("consent", "import", str(good), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run, nothing recorded: 2 would be granted, 0 already recorded, 2 rejected" in (
        dry.stdout
    )
    done = consentry("consent", "import", str(good))
    assert done.exit_code == 0, done.output
    assert f"2 granted, 0 already recorded, 2 rejected (batch {batch_id(good.read_bytes())})" in (
        done.stdout
    )
    assert "  line 4: no contact with this e-mail" in done.stdout
    assert "  line 5: no consent evidence: missing consented_at" in done.stdout
    assert STRANGER not in done.output
    again = consentry("consent", "import", str(good))
    assert "0 granted, 2 already recorded, 2 rejected" in again.stdout

    no_columns = tmp_path / "contacts.csv"
    no_columns.write_text("name,purpose,source\nAda,marketing_email,import\n")
    refused = consentry("consent", "import", str(no_columns))
    assert refused.exit_code == 1
    assert one_line_error(refused).endswith(
        "missing required column(s): email or phone, consented_at, notice_version"
    )
    missing = consentry("consent", "import", str(tmp_path / "absent.csv"))
    assert missing.exit_code == 1
    assert "cannot read the file" in one_line_error(missing)
    bad_batch = consentry("consent", "import", str(good), "--batch", "no spaces")
    assert bad_batch.exit_code == 1
    assert "batch id" in one_line_error(bad_batch)


def test_cli_imports_five_hundred_rows(install: Install, tmp_path: Path) -> None:
    version = prepare(install, 250)
    lines: list[Any] = []
    for i in range(250):
        for purpose in ("marketing_email", "profiling"):
            channel = "email" if purpose == "marketing_email" else ""
            lines.append(f"person{i}@example.net,{purpose},{channel},2024-03-01,import,{version},")
    big = tmp_path / "big.csv"
    big.write_bytes(csv_bytes(*lines))
    result = consentry("consent", "import", str(big))
    assert result.exit_code == 0, result.output
    assert re.search(r"^500 granted, 0 already recorded, 0 rejected", result.stdout, re.M)


async def test_a_name_in_a_reference_is_refused_or_sealed_and_erasure_reaches_it(
    services: Services, database_url: str
) -> None:
    """The ledger is append-only, so erasure cannot delete from it: free text that could
    name someone is refused (spaces) or kept only as ciphertext under the person's key."""
    alice = await add_contact(services, ALICE)
    version = await publish(services)
    report = await run(
        services,
        csv_bytes(
            f"{ALICE},marketing_email,email,2024-03-01,import,{version},Called Jane Smith",
            f"{ALICE},profiling,,2024-03-01,import,{version},called:jane.smith",
        ),
    )
    assert report.granted == 1
    assert reasons(report) == {2: "reference must be 1-100 letters, digits or _ . : -"}
    with pytest.raises(ConsentError) as refused:
        await services.consent.grant(
            alice,
            "marketing_email",
            "email",
            source="phone",
            notice_version=version,
            actor_id="user:1",
            evidence={"reference": "Called Jane Smith"},
        )
    assert refused.value.code == "invalid_evidence"
    with pytest.raises(ConsentError) as refused:
        await services.consent.grant(
            alice,
            "marketing_email",
            "email",
            source="phone",
            notice_version=version,
            actor_id="user:1",
            evidence={"requested_at": "Called Jane Smith"},
        )
    assert refused.value.code == "invalid_evidence"
    await services.consent.grant(
        alice,
        "marketing_email",
        "email",
        source="phone",
        notice_version=version,
        actor_id="user:1",
        evidence={"reference": "Jane_Smith_rang", "user_agent": "Jane Smith's phone"},
    )

    def ledger_text(rows: list[dict[str, Any]]) -> str:
        return " ".join(str(v) for row in rows for v in row.values()).casefold()

    rows = await raw_sql(database_url, "SELECT * FROM consent_event")
    assert "jane" not in ledger_text(rows)
    proof = await services.consent.proof(alice, actor_id="user:1")
    references = sorted(e["evidence"].get("reference", "") for e in proof["events"])
    assert references == ["Jane_Smith_rang", "called:jane.smith"]

    await services.erasure.erase(alice, by="user:1")
    rows = await raw_sql(database_url, "SELECT * FROM consent_event")
    assert "jane" not in ledger_text(rows)
    for row in rows:  # nothing readable remains: the key that sealed it is gone
        readable = await services.consent.readable_evidence(alice, json.loads(row["evidence"]))
        assert "jane" not in json.dumps(readable).casefold()
        assert readable.get("reference", "[erased]") == "[erased]"


async def test_an_erased_person_can_still_withdraw_and_no_free_text_is_kept(
    services: Services, database_url: str
) -> None:
    alice = await add_contact(services, ALICE)
    version = await publish(services)
    await services.consent.grant(
        alice,
        "marketing_email",
        "email",
        source="phone",
        notice_version=version,
        actor_id="user:1",
        evidence={"reference": "call:alice"},
    )
    await services.erasure.erase(alice, by="user:1")
    record = await services.consent.withdraw(
        alice,
        "marketing_email",
        "email",
        source="email_link",
        actor_id="subject",
        evidence={"user_agent": "Alice Brandvold's laptop", "reference": "alice.b"},
    )
    assert record is not None
    rows = await raw_sql(database_url, "SELECT evidence FROM consent_event ORDER BY id")
    assert [set(json.loads(r["evidence"])) for r in rows] == [{"reference"}, set()]
    assert "alice" not in " ".join(r["evidence"] for r in rows).casefold()
