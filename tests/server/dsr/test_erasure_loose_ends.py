"""Loose ends of erasure (issue 23, item 6): mentions typed while a legal hold held the
erasure are scrubbed when it finishes; the mention scrub does not overwrite a record staff
changed at the same moment; an erasure started in the console runs in the background
with a progress page."""

from __future__ import annotations

import asyncio
import datetime as dt

from server.dsr.requests import RequestError
from server.services import Services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, location, sales_contact, text_of, web_login
from tests.admin_ui.test_erasure_pages import approved_erasure
from tests.conftest import Staff
from tests.dbutil import raw_sql
from tests.server.dsr.test_erasure import ADMIN, EMAIL, world


async def notes_of(services: Services, record_id: str) -> str:
    record = await services.gateway.read(ADMIN, "contact", record_id, purpose="compliance")
    return str(record.values["notes"])


async def test_mentions_written_during_a_hold_are_scrubbed_when_it_ends(
    services: Services, settings: Settings, staff: Staff
) -> None:
    w = await world(services, staff)
    subject = w["person"].subject_id
    hold = await services.erasure.holds.add(
        subject, "deal", "tax_records", dt.date.today() + dt.timedelta(days=400), by="user:1"
    )
    held = await services.erasure.erase(subject, by="user:1")
    assert held.state == "held"
    # The person's contact (with the names) is a tombstone now; a colleague writes about
    # them anyway while the hold is in force.
    later = await services.gateway.create(
        w["actor"],
        "contact",
        sales_contact(notes=f"Brackenridge phoned again; reply to {EMAIL} or 020 7946 0123."),
    )

    await services.erasure.holds.release(hold.id, by="user:1")
    await services.retention.run()

    job = await services.erasure.job_for_subject(subject)
    assert job is not None
    assert job.complete
    scrubbed = await notes_of(services, later.id)
    assert scrubbed == "[erased] phoned again; reply to [erased] or [erased]."
    # What the job remembered for this is not kept once the erasure is done.
    (row,) = await raw_sql(settings.resolved_database_url, "SELECT identity FROM erasure_job")
    assert row["identity"] == ""


async def test_the_mention_scrub_does_not_overwrite_a_change_made_at_the_same_moment(
    services: Services, staff: Staff
) -> None:
    w = await world(services, staff)
    other = w["other"]
    added = " Signed the renewal on Friday."

    async def colleague_saves_a_note(resource: str, record_id: str) -> None:
        """Between the scrub reading this record and writing it back, staff save it."""
        if resource == "contact" and record_id == other.id:
            current = await notes_of(services, other.id)
            if added not in current:
                await services.gateway.update(
                    w["actor"], "contact", other.id, {"notes": current + added}
                )

    services.erasure.before_mention_write = colleague_saves_a_note
    result = await services.erasure.erase(w["person"].subject_id, by="user:1")
    assert result.complete

    notes = await notes_of(services, other.id)
    assert notes.endswith(added)  # the colleague's change survived ...
    assert "Brackenridge" not in notes  # ... and the mention in it is still scrubbed
    assert "brackenridge" not in notes.lower()
    assert notes.startswith("Met [erased] at the fair")


async def test_an_erasure_from_the_console_runs_in_the_background_with_a_progress_page(
    services: Services, staff: Staff
) -> None:
    w = await approved_erasure(services, staff)
    request_id = w["request_id"]
    client = await web_login(staff, w["officer"])
    page = await client.get(f"/compliance/requests/{request_id}/erase")
    first_step_done = asyncio.Event()
    release = asyncio.Event()

    async def slow_step(step: str) -> None:
        """The erasure is still busy after its first step when the page is looked at."""
        if step == "mentions":
            first_step_done.set()
            await release.wait()

    services.erasure.after_step = slow_step
    started = await client.post(
        f"/compliance/requests/{request_id}/erase",
        data={"reference": request_id[:8], "_csrf_token": csrf_of(page)},
    )
    progress_path = location(started)
    assert progress_path == f"/compliance/requests/{request_id}/erase/progress"
    await first_step_done.wait()  # the task has started and finished its first step
    during = await client.get(progress_path)
    assert "Erasing. This page refreshes every 2 seconds" in text_of(during)
    assert 'http-equiv="refresh" content="2"' in during.text
    assert "✓ Mentions in other people's notes" in text_of(during)
    assert "… The person's records turned into tombstones" in text_of(during)
    assert (await services.requests.get(request_id)).state == "approved"

    release.set()
    assert services.erasure_runs is not None
    await services.erasure_runs.drain()
    after = await client.get(progress_path)
    assert "Erased." in text_of(after)
    assert "✓ The person's encryption key shredded" in text_of(after)
    assert (await services.requests.get(request_id)).state == "fulfilled"
    # Other roles do not see the page.
    rep = await web_login(staff, w["rep"])
    assert (await rep.get(progress_path)).status_code == 404


async def test_a_background_erasure_that_fails_says_so_and_can_be_started_again(
    services: Services, staff: Staff
) -> None:
    w = await approved_erasure(services, staff)
    request_id = w["request_id"]
    client = await web_login(staff, w["officer"])

    async def register_unwritable(step: str) -> None:
        if step == "records":
            raise RequestError("erasure_failed", "the erasure register cannot be written")

    services.erasure.after_step = register_unwritable
    page = await client.get(f"/compliance/requests/{request_id}/erase")
    started = await client.post(
        f"/compliance/requests/{request_id}/erase",
        data={"reference": request_id[:8], "_csrf_token": csrf_of(page)},
    )
    assert services.erasure_runs is not None
    await services.erasure_runs.drain()
    stopped = text_of(await client.get(location(started)))
    assert "Stopped (erasure failed)" in stopped
    assert "Start again" in stopped
    assert (await services.requests.get(request_id)).state == "approved"

    services.erasure.after_step = None
    page = await client.get(f"/compliance/requests/{request_id}/erase")
    again = await client.post(
        f"/compliance/requests/{request_id}/erase",
        data={"reference": request_id[:8], "_csrf_token": csrf_of(page)},
    )
    await services.erasure_runs.drain()
    assert "Erased." in text_of(await client.get(location(again)))
    assert (await services.requests.get(request_id)).state == "fulfilled"
