"""Erasing a person: tombstones, shredded keys, scrubbed mentions, legal holds, resumption.

What a user would notice: the person cannot be found or read any more, nothing of theirs
can be decrypted from what is left in the database, other people's notes no longer name
them, pipeline counts do not change, the audit log holds none of their values and still
verifies - and a crash half-way is finished by running the erasure again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from click.testing import CliRunner

from server import db
from server import settings as settings_module
from server.cli import cli
from server.dsr.erasure import ErasureError
from server.dsr.holds import HoldError
from server.gateway import Actor, Forbidden, Record, mention_index
from server.services import Services, build_services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, location, sales_contact, text_of, web_login
from tests.conftest import Staff
from tests.dbutil import raw_sql
from tests.server.cli.test_cli import (
    Install,
    consentry,
    forget_process_state,
    install,
    one_line_error,
)
from tests.server.test_mail import LocalSmtp, smtp

__all__ = ["install", "smtp"]

NAME = {"first_name": "Philomena", "last_name": "Brackenridge"}
EMAIL = "philomena.b@example.org"
PHONE = "+44 20 7946 0123"
SECRETS = ("Philomena", "Brackenridge", EMAIL, "2079460123", "7946 0123")
ADMIN = Actor.system("test-admin")


class Crash(Exception):
    """A worker dying between two erasure steps (raised from ``after_step``)."""


async def world(services: Services, staff: Staff) -> dict[str, Any]:
    """A person with an organization, a deal and an interaction, and a colleague whose
    notes and deal mention the person."""
    gw = services.gateway
    rep = await staff.create("sales")
    actor = staff.actor(rep)
    org = await gw.create(actor, "organization", {"name": "Acme Ltd"})
    person = await gw.create(
        actor,
        "contact",
        sales_contact(**NAME, email=EMAIL, phone=PHONE, organization_id=org.id),
    )
    other = await gw.create(
        actor,
        "contact",
        sales_contact(
            notes=f"Met philomena  brackenridge at the fair; she said call 020 7946 0123 "
            f"or write to {EMAIL.upper()}. Philomenas are rare.",
        ),
    )
    deal = await gw.create(
        ADMIN,
        "deal",
        {"title": "Renewal", "contact_id": person.id, "amount": 1200, "currency": "EUR"},
    )
    other_deal = await gw.create(
        ADMIN,
        "deal",
        {"title": "Referred by Brackenridge", "contact_id": other.id, "currency": "EUR"},
    )
    return {
        "actor": actor,
        "org": org,
        "person": person,
        "other": other,
        "deal": deal,
        "other_deal": other_deal,
    }


async def counts(services: Services) -> dict[str, int]:
    return {
        r: await services.gateway.count(ADMIN, r, purpose="compliance")
        for r in ("contact", "organization", "deal")
    }


async def assert_fully_erased(services: Services, settings: Settings, w: dict[str, Any]) -> None:
    gw = services.gateway
    person: Record = w["person"]
    # Nobody can find them any more.
    assert await gw.search(w["actor"], "contact", "email", EMAIL) == []
    assert await gw.search(w["actor"], "contact", "phone", PHONE) == []
    assert await gw.locate(ADMIN, "contact", "email", EMAIL, purpose="compliance") == []
    # The tombstone reads as erased, with the business columns kept; it never fails.
    record = await gw.read(ADMIN, "contact", person.id, purpose="compliance")
    assert record.erased
    assert record.values["first_name"] is None
    assert record.values["email"] is None
    assert record.values["lifecycle_stage"] == "customer"
    assert record.values["organization_id"] == w["org"].id
    deal = await gw.read(ADMIN, "deal", w["deal"].id, purpose="compliance")
    assert deal.erased
    assert deal.values["title"] is None
    assert deal.values["amount"] == 1200
    # No key: nothing of theirs left anywhere can be decrypted.
    assert await gw.vault.keys_for([person.subject_id]) == {}
    for table in ("contact", "deal"):
        rows = await raw_sql(
            settings.database_url, f"SELECT * FROM {table} WHERE subject_id = ?", person.subject_id
        )
        assert rows
        for row in rows:
            for column, value in row.items():
                if column.endswith("_bidx"):
                    assert value is None, column
                assert not (isinstance(value, str) and value.startswith("cs1.")), column
    # Other people's free text no longer names them.
    other = await gw.read(ADMIN, "contact", w["other"].id, purpose="compliance")
    notes = other.values["notes"]
    assert "[erased] at the fair" in notes
    assert "call [erased] or write to [erased]." in notes
    assert "Philomenas are rare" in notes  # a longer word is not a mention
    other_deal = await gw.read(ADMIN, "deal", w["other_deal"].id, purpose="compliance")
    assert other_deal.values["title"] == "Referred by [erased]"
    # The audit log names them by pseudonym only, and still verifies.
    dump = " ".join(
        str(v)
        for row in await raw_sql(settings.database_url, "SELECT * FROM audit")
        for v in row.values()
    ).casefold()
    for secret in SECRETS:
        assert secret.casefold() not in dump
    await services.audit_trail.seal_all()
    assert (await services.audit_trail.verify()).ok


async def test_erasure_leaves_tombstones_and_nothing_readable(
    services: Services, settings: Settings, staff: Staff
) -> None:
    w = await world(services, staff)
    before = await counts(services)

    result = await services.erasure.erase(w["person"].subject_id, by="user:1")

    assert result.complete
    assert not result.holds
    assert result.erased == {"contact": 1, "deal": 1}
    assert result.mentions == 2
    # Tombstones keep the pipeline totals; the erased person leaves the contact count.
    assert await counts(services) == {**before, "contact": before["contact"] - 1}
    await assert_fully_erased(services, settings, w)
    erase_events = await raw_sql(
        settings.database_url,
        "SELECT resource_type FROM audit WHERE action = 'erase' ORDER BY seq",
    )
    assert [r["resource_type"] for r in erase_events] == ["contact", "deal"]


async def test_erasing_again_is_a_no_op_success(services: Services, staff: Staff) -> None:
    w = await world(services, staff)
    first = await services.erasure.erase(w["person"].subject_id, by="user:1")
    again = await services.erasure.erase(w["person"].subject_id, by="user:1")
    assert again.complete
    assert again.already_done
    assert again.erased == first.erased
    with pytest.raises(ErasureError, match="no records for this subject"):
        await services.erasure.erase("5f0e6f3c-0000-4000-8000-000000000000", by="user:1")
    with pytest.raises(ErasureError, match="not a valid id"):
        await services.erasure.erase("not-a-uuid", by="user:1")


@pytest.mark.parametrize("step", ["mentions", "records", "keys"])
async def test_a_crash_after_any_step_is_finished_by_running_again(
    services: Services, settings: Settings, staff: Staff, step: str
) -> None:
    w = await world(services, staff)

    async def crash(done: str) -> None:
        if done == step:
            raise Crash(done)

    services.erasure.after_step = crash
    with pytest.raises(Crash):
        await services.erasure.erase(w["person"].subject_id, by="user:1")
    job = await services.erasure.job_for_subject(w["person"].subject_id)
    assert job is not None
    assert step in job.steps
    assert job.complete == (step == "keys")  # success only once every step is done

    services.erasure.after_step = None
    result = await services.erasure.erase(w["person"].subject_id, by="user:1")

    assert result.complete
    assert result.steps == ("mentions", "records", "keys")
    assert result.erased == {"contact": 1, "deal": 1}
    assert result.mentions == 2
    await assert_fully_erased(services, settings, w)


async def test_a_legal_hold_keeps_records_restricted_until_it_ends(
    services: Services, settings: Settings, staff: Staff
) -> None:
    w = await world(services, staff)
    subject = w["person"].subject_id
    holds = services.erasure.holds
    until = dt.date.today() + dt.timedelta(days=400)
    hold = await holds.add(subject, "deal", "tax_records", until, by="user:1")

    result = await services.erasure.erase(subject, by="user:1")

    assert not result.complete
    assert result.state == "held"
    assert result.erased == {"contact": 1}  # the contact is gone, the deal is kept
    assert [(h.scope, h.reason, h.held_until) for h in result.holds] == [
        ("deal", "tax_records", until)
    ]
    assert "Kept until" in result.held_lines()[0]
    assert "tax" in result.held_lines()[0]
    # Held records: readable under compliance only; the person is restricted.
    kept = await services.gateway.read(ADMIN, "deal", w["deal"].id, purpose="compliance")
    assert kept.values["title"] == "Renewal"
    assert not kept.erased
    with pytest.raises(Forbidden, match="restricted"):
        await services.gateway.read(ADMIN, "deal", w["deal"].id, purpose="customer_relationship")
    assert await services.erasure.restrictions.is_restricted(subject)
    assert await services.gateway.search(w["actor"], "contact", "email", EMAIL) == []

    # Released: the retention run finishes the erasure and lifts the restriction.
    await holds.release(hold.id, by="user:1")
    with pytest.raises(HoldError, match="already released"):
        await holds.release(hold.id, by="user:1")
    report = await services.retention.run()
    finished = next(r for r in report.rules if r.rule == "held_erasures")
    assert (finished.matched, finished.erased, finished.held) == (1, 1, 0)
    job = await services.erasure.job_for_subject(subject)
    assert job is not None
    assert job.complete
    assert job.erased == {"contact": 1, "deal": 1}
    assert not await services.erasure.restrictions.is_restricted(subject)
    await assert_fully_erased(services, settings, w)


async def test_hold_input_is_checked(services: Services) -> None:
    holds = services.erasure.holds
    subject = "5f0e6f3c-0000-4000-8000-000000000000"
    future = dt.date.today() + dt.timedelta(days=30)
    with pytest.raises(HoldError, match="unknown scope"):
        await holds.add(subject, "invoice", "tax_records", future, by="user:1")
    with pytest.raises(HoldError, match="unknown reason"):
        await holds.add(subject, "all", "because", future, by="user:1")
    with pytest.raises(HoldError, match="end today or later"):
        await holds.add(subject, "all", "contract", dt.date(2000, 1, 1), by="user:1")
    with pytest.raises(HoldError, match="no such hold"):
        await holds.release(subject, by="user:1")


async def test_fulfilling_an_erasure_request_erases_and_tells_the_person(
    services: Services, settings: Settings, staff: Staff, smtp: LocalSmtp
) -> None:
    from server.dsr.requests import DataSubjectRequests
    from server.mail import Mailer

    w = await world(services, staff)
    subject = w["person"].subject_id
    dsr = DataSubjectRequests(
        services.gateway,
        services.audit,
        Mailer(smtp.settings(settings)),
        settings,
        fulfillers=services.requests.fulfillers,
    )
    until = dt.date.today() + dt.timedelta(days=90)
    await services.erasure.holds.add(subject, "all", "litigation", until, by="user:1")
    logged = await dsr.log(
        subject, "erasure", "phone", verification="phone_callback", by="user:1",
        contact_id=w["person"].id,
    )  # fmt: skip
    request_id = logged.request.id
    for state in ("in_review", "approved", "fulfilled"):
        await dsr.transition(request_id, state, by="user:1")

    job = await services.erasure.job_for_request(request_id)
    assert job is not None
    assert job.state == "held"
    assert job.holds[0].reason == "litigation"
    last = smtp.received[-1]
    assert last.recipients == [EMAIL]
    body = last.text
    assert "fulfilled" in body
    assert f"Kept until {until:%Y-%m-%d}" in body
    assert "legal proceedings" in body


def seed_person(install: Install) -> str:
    """A person with a deal, and a colleague whose notes name them, in the CLI's database."""
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    forget_process_state()

    async def seed() -> str:
        await db.start()
        try:
            gw = build_services(settings_module.get_settings()).gateway
            person = await gw.create(ADMIN, "contact", sales_contact(**NAME, email=EMAIL))
            await gw.create(ADMIN, "contact", sales_contact(notes="Friend of Brackenridge"))
            await gw.create(
                ADMIN, "deal", {"title": "Renewal", "contact_id": person.id, "currency": "EUR"}
            )
            return person.subject_id
        finally:
            await db.stop()

    return asyncio.run(seed())


def test_cli_erase_asks_then_reports(install: Install) -> None:
    subject = seed_person(install)
    bad = consentry("dsr", "erase", "nope", "--yes")
    assert one_line_error(bad) == "Error: the subject is not a valid id"
    missing = consentry("dsr", "erase", "5f0e6f3c-0000-4000-8000-000000000000", "--yes")
    assert "no records for this subject" in one_line_error(missing)

    forget_process_state()
    declined = CliRunner().invoke(cli, ["dsr", "erase", subject], input="n\n")
    assert declined.exit_code != 0
    assert "nothing was changed" in declined.stderr
    forget_process_state()
    done = CliRunner().invoke(cli, ["dsr", "erase", subject], input="y\n")
    assert done.exit_code == 0, done.output
    assert "contact: 1" in done.stdout
    assert "deal: 1" in done.stdout
    assert "1 other record(s)" in done.stdout
    again = consentry("dsr", "erase", subject, "--yes")
    assert again.exit_code == 0
    assert "already erased" in again.stdout


def test_cli_holds(install: Install) -> None:
    subject = seed_person(install)
    too_long = consentry(
        "dsr", "holds", "add", subject,
        "--scope", "all", "--reason", "contract", "--until", "2999-01-01",
    )  # fmt: skip
    assert "30 years" in one_line_error(too_long)
    future = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    added = consentry(
        "dsr", "holds", "add", subject, "--scope", "deal", "--reason", "tax_records",
        "--until", future,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    hold_id = added.stdout.split()[1]
    listed = consentry("dsr", "holds", "list")
    assert hold_id in listed.stdout
    assert "tax_records" in listed.stdout
    assert future in listed.stdout
    held = consentry("dsr", "erase", subject, "--yes")
    assert held.exit_code == 0, held.output
    assert "held: deal records" in held.stdout
    assert future in held.stdout
    assert consentry("dsr", "holds", "release", hold_id).exit_code == 0
    assert "no active holds" in consentry("dsr", "holds", "list").stdout
    assert "already released" in one_line_error(consentry("dsr", "holds", "release", hold_id))


async def test_mention_scan_time_is_measured(services: Services, staff: Staff) -> None:
    """Scrubbing scans every other record's free text: measure it on a few hundred."""
    rep = await staff.create("sales")
    actor = staff.actor(rep)
    person = await services.gateway.create(actor, "contact", sales_contact(**NAME))
    rows = [
        sales_contact(notes=f"Note {i} about Brackenridge" if i % 50 == 0 else f"Note {i}")
        for i in range(300)
    ]
    await services.gateway.create_many(ADMIN, "contact", rows)
    # As on a database from before the mention index: every other free text is read.
    # (The index's own path: tests/server/gateway/test_mention_index.py.)
    await mention_index.mark_incomplete()
    started = time.perf_counter()
    scrub = await services.gateway.erase_mentions(ADMIN, person.subject_id, batch_size=64)
    elapsed = time.perf_counter() - started
    assert scrub.scanned == 300
    assert scrub.changed == 6
    print(f"mention scan: {scrub.scanned} records in {elapsed * 1000:.0f} ms")


async def test_compliance_console_holds_and_erasure_result(
    services: Services, staff: Staff
) -> None:
    w = await world(services, staff)
    subject = w["person"].subject_id
    officer = await web_login(staff, await staff.create("compliance"))
    page = await officer.get("/compliance/holds")
    assert page.status_code == 200
    until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    form = {"subject_id": subject, "scope": "deal", "reason": "tax_records", "held_until": until}
    bad = await officer.post(
        "/compliance/holds", data={**form, "reason": "whim", "_csrf_token": csrf_of(page)}
    )
    assert "unknown reason" in text_of(await officer.get(location(bad)))
    added = await officer.post("/compliance/holds", data={**form, "_csrf_token": csrf_of(page)})
    listing = await officer.get(location(added))
    assert subject in listing.text
    assert until in listing.text

    logged = await services.requests.log(
        subject, "erasure", "phone", verification="phone_callback", by="user:1"
    )
    for state in ("in_review", "approved", "fulfilled"):
        await services.requests.transition(logged.request.id, state, by="user:1")
    detail = text_of(await officer.get(f"/compliance/requests/{logged.request.id}"))
    assert "Waiting for legal holds to end" in detail
    assert "1 contact record(s) erased" in detail
    assert "Tax and accounting records" in detail
    assert "Lift the restriction" in detail

    hold = (await services.erasure.holds.active(subject))[0]
    listing = await officer.get("/compliance/holds")
    released = await officer.post(
        f"/compliance/holds/{hold.id}/release", data={"_csrf_token": csrf_of(listing)}
    )
    assert "Hold released" in text_of(await officer.get(location(released)))
    seller = await web_login(staff, await staff.create("sales"))
    assert (await seller.get("/compliance/holds")).status_code == 404


async def test_an_interrupted_erasure_is_finished_by_the_retention_run(
    services: Services, settings: Settings, staff: Staff
) -> None:
    """A worker that dies mid-erasure leaves a `running` job; nobody has to notice it."""
    w = await world(services, staff)

    async def crash(done: str) -> None:
        raise Crash(done)

    services.erasure.after_step = crash
    with pytest.raises(Crash):
        await services.erasure.erase(w["person"].subject_id, by="user:1")
    services.erasure.after_step = None
    # Just interrupted: it may still be running somewhere, so it is left alone.
    report = await services.retention.run()
    (line,) = [r for r in report.rules if r.rule == "interrupted_erasures"]
    assert (line.matched, line.erased) == (0, 0)

    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    report = await services.retention.run(now=later)

    (line,) = [r for r in report.rules if r.rule == "interrupted_erasures"]
    assert (line.matched, line.erased) == (1, 1)
    job = await services.erasure.job_for_subject(w["person"].subject_id)
    assert job is not None
    assert job.complete
    await assert_fully_erased(services, settings, w)
