"""Calendar import (issue 21, item 2): meetings of an .ics file or a CalDAV URL become
meeting interactions of the contacts among their attendees (notes on leads), matched by
the e-mail blind index; unknown attendees leave no trace; re-imports update; cancelled
meetings go; a bad file writes nothing; erasure reaches the meetings."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.calendar.ics import CalendarError
from server.calendar.service import calendar_import
from server.gateway import Actor
from server.services import Services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, text_of, web_login
from tests.conftest import Staff, contact_values
from tests.dbutil import raw_sql
from tests.server.cli.test_cli import Install, consentry, install, one_line_error  # noqa: F401

STRANGER = "Walter.Unknown@nowhere.example"
NO_UID = "BEGIN:VEVENT\r\nSUMMARY:x\r\nEND:VEVENT\r\n"
NO_START = "BEGIN:VEVENT\r\nUID:z\r\nSUMMARY:x\r\nEND:VEVENT\r\n"
UID = "jane.doe-20261203@calendar.example"  # a UID that names someone: never stored


def ics(*events: str, method: str = "") -> bytes:
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
    if method:
        head += f"METHOD:{method}\r\n"
    return (head + "".join(events) + "END:VCALENDAR\r\n").encode()


def event(
    uid: str,
    *attendees: str,
    start: str = "DTSTART;TZID=Europe/Berlin:20261203T150000",
    summary: str = "Quarterly review",
    description: str = "Discussed the renewal",
    status: str = "",
) -> str:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20261201T090000Z",
        start,
        f"SUMMARY:{summary}",
        f"DESCRIPTION:{description}",
        "ORGANIZER;CN=Sam Seller:mailto:sam@staff.example.com",
        *(f"ATTENDEE;CN=Someone:mailto:{a}" for a in attendees),
    ]
    if status:
        lines.append(f"STATUS:{status}")
    lines.append("END:VEVENT")
    return "".join(line + "\r\n" for line in lines)


async def _world(services: Services, staff: Staff) -> dict[str, object]:
    seller_identity = await staff.create("sales")
    seller = staff.actor(seller_identity)
    values = contact_values(email="ada.lovelace@example.org", first_name="Ada")
    del values["birth_date"]  # sales may not set it
    contact = await services.gateway.create(seller, "contact", values)
    lead = await services.gateway.create(
        seller,
        "lead",
        {"first_name": "Lena", "last_name": "Lead", "email": "lena.lead@example.org"},
    )
    return {"seller": seller, "identity": seller_identity, "contact": contact, "lead": lead}


async def _meetings(services: Services, contact_id: str) -> list[dict[str, object]]:
    page = await services.gateway.list(
        Actor.system("test"), "interaction", filters={"contact_id": contact_id}
    )
    return [dict(r.values, id=r.id) for r in page.items]


async def test_meetings_become_interactions_and_notes_and_strangers_leave_no_trace(
    services: Services, settings: Settings, staff: Staff
) -> None:
    w = await _world(services, staff)
    importer = calendar_import(services)
    content = ics(
        event(UID, "ADA.Lovelace@Example.org", STRANGER, "lena.lead@example.org"),
        event("second@x", STRANGER, summary="Lunch with a stranger"),
        event(
            "allday@x",
            "ada.lovelace@example.org",
            start="DTSTART;VALUE=DATE:20261224",
            summary="Fair",
        ),
    )
    report = await importer.import_ics(w["seller"], content)  # type: ignore[arg-type]

    assert (report.events, report.created, report.updated, report.unmatched) == (3, 3, 0, 1)
    meetings = await _meetings(services, w["contact"].id)  # type: ignore[attr-defined]
    by_summary = {str(m["summary"]).split("\n")[0]: m for m in meetings}
    review = by_summary["Quarterly review"]
    assert review["channel"] == "meeting"
    # 15:00 in Berlin in December is 14:00 UTC.
    assert review["occurred_at"] == "2026-12-03T14:00:00+00:00"
    assert review["summary"] == "Quarterly review\n\nDiscussed the renewal"
    assert by_summary["Fair"]["occurred_at"] == "2026-12-24T00:00:00+00:00"
    notes = await services.gateway.list(
        Actor.system("test"),
        "note",
        filters={"record_id": w["lead"].id},  # type: ignore[attr-defined]
    )
    assert len(notes.items) == 1
    assert notes.items[0].values["body"].startswith("Meeting on 2026-12-03 14:00 UTC: Quarterly")
    # Encrypted at rest; neither the UID nor any attendee address is stored or audited.
    dump = json.dumps(
        [
            await raw_sql(settings.database_url, f"SELECT * FROM {table}")
            for table in ("interaction", "note", "calendar_meeting", "audit")
        ],
        default=str,
    ).lower()
    for secret in ("quarterly", "walter", "nowhere.example", UID, "stranger", "lena.lead"):
        assert secret.lower() not in dump, secret
    imported = await raw_sql(
        settings.database_url, "SELECT detail FROM audit WHERE action = 'calendar.import'"
    )
    detail = imported[0]["detail"]
    assert (json.loads(detail) if isinstance(detail, str) else detail)["unmatched"] == 1


async def test_reimport_updates_and_a_cancelled_meeting_is_removed(
    services: Services, staff: Staff
) -> None:
    w = await _world(services, staff)
    importer = calendar_import(services)
    seller: Actor = w["seller"]  # type: ignore[assignment]
    await importer.import_ics(seller, ics(event(UID, "ada.lovelace@example.org")))
    moved = ics(
        event(
            UID,
            "ada.lovelace@example.org",
            start="DTSTART:20261204T090000Z",
            summary="Quarterly review (moved)",
        )
    )
    again = await importer.import_ics(seller, moved)
    assert (again.created, again.updated) == (0, 1)
    meetings = await _meetings(services, w["contact"].id)  # type: ignore[attr-defined]
    assert len(meetings) == 1
    assert meetings[0]["occurred_at"] == "2026-12-04T09:00:00+00:00"
    assert str(meetings[0]["summary"]).startswith("Quarterly review (moved)")

    cancelled = await importer.import_ics(
        seller, ics(event(UID, "ada.lovelace@example.org", status="CANCELLED"))
    )
    assert cancelled.removed == 1
    assert await _meetings(services, w["contact"].id) == []  # type: ignore[attr-defined]
    # METHOD:CANCEL works the same way.
    await importer.import_ics(seller, ics(event("other@x", "ada.lovelace@example.org")))
    gone = await importer.import_ics(
        seller, ics(event("other@x", "ada.lovelace@example.org"), method="CANCEL")
    )
    assert gone.removed == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"hello, this is not a calendar", "not an iCalendar file"),
        (
            ics(
                event("a@x", "ada.lovelace@example.org"),
                "BEGIN:VEVENT\r\nSUMMARY:x\r\nEND:VEVENT\r\n",
            ),
            "event 2 has no UID",
        ),
        (
            ics("BEGIN:VEVENT\r\nUID:z\r\nSUMMARY:x\r\nEND:VEVENT\r\n"),
            "event 1 has no valid DTSTART",
        ),
    ],
)
async def test_a_bad_file_is_refused_as_a_whole_and_nothing_is_written(
    services: Services, settings: Settings, staff: Staff, content: bytes, reason: str
) -> None:
    w = await _world(services, staff)
    with pytest.raises(CalendarError, match=reason):
        await calendar_import(services).import_ics(w["seller"], content)  # type: ignore[arg-type]
    assert await raw_sql(settings.database_url, "SELECT id FROM interaction") == []
    assert await raw_sql(settings.database_url, "SELECT id FROM calendar_meeting") == []


async def test_the_admin_page_imports_an_upload_and_answers_a_bad_file_with_400(
    services: Services, settings: Settings, staff: Staff
) -> None:
    w = await _world(services, staff)
    client = await web_login(staff, w["identity"])  # type: ignore[arg-type]
    page = await client.get("/calendar/import")
    assert page.status_code == 200
    token = csrf_of(page)
    bad = await client.post(
        "/calendar/import",
        data={"_csrf_token": token},
        files={"file": ("team.ics", b"BEGIN:VCALENDAR\r\nnonsense", "text/calendar")},
    )
    assert bad.status_code == 400
    assert "Nothing was imported: not an iCalendar file" in text_of(bad)
    good = await client.post(
        "/calendar/import",
        data={"_csrf_token": token},
        files={"file": ("team.ics", ics(event(UID, "ada.lovelace@example.org")), "text/calendar")},
    )
    assert good.status_code == 200
    assert "1 recorded" in text_of(good)
    marketer = await web_login(staff, await staff.create("marketing"))
    assert (await marketer.get("/calendar/import")).status_code == 403


class _CalendarServer(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # http.server's name for the GET handler
        if self.path != "/dav/calendars/sam/work?export":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("content-type", "text/calendar")
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def caldav() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving one calendar export."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CalendarServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_caldav_url_is_fetched_and_imported(
    services: Services, staff: Staff, caldav: str
) -> None:
    w = await _world(services, staff)
    _CalendarServer.body = ics(event(UID, "ada.lovelace@example.org"))
    importer = calendar_import(services)
    seller: Actor = w["seller"]  # type: ignore[assignment]
    report = await importer.import_url(seller, f"{caldav}/dav/calendars/sam/work?export")
    assert report.created == 1
    with pytest.raises(CalendarError, match="HTTP 404") as refused:
        await importer.import_url(seller, f"{caldav}/secret-token-abc/missing.ics")
    assert "secret-token-abc" not in str(refused.value)
    with pytest.raises(CalendarError, match="must start with http"):
        await importer.import_url(seller, "file:///etc/passwd")


async def test_erasure_leaves_no_meeting_readable_and_the_audit_trail_verifies(
    services: Services, settings: Settings, staff: Staff
) -> None:
    w = await _world(services, staff)
    contact = w["contact"]
    await calendar_import(services).import_ics(
        w["seller"],  # type: ignore[arg-type]
        ics(event(UID, "ada.lovelace@example.org")),
    )
    exported = await services.gateway.export_subject(
        Actor.system("test"),
        contact.subject_id,  # type: ignore[attr-defined]
    )
    assert [r.values["channel"] for r in exported if r.resource == "interaction"] == ["meeting"]

    await services.erasure.erase(contact.subject_id, by="user:1")  # type: ignore[attr-defined]

    rows = await raw_sql(
        settings.database_url,
        "SELECT * FROM interaction WHERE subject_id = ?",
        contact.subject_id,  # type: ignore[attr-defined]
    )
    assert len(rows) == 1
    assert rows[0]["summary"] is None
    for value in rows[0].values():
        assert not (isinstance(value, str) and value.startswith("cs1."))
    assert await services.gateway.vault.keys_for([contact.subject_id]) == {}  # type: ignore[attr-defined]
    # The attendee no longer matches anyone: importing again records nothing.
    again = await calendar_import(services).import_ics(
        w["seller"],  # type: ignore[arg-type]
        ics(event(UID, "ada.lovelace@example.org")),
    )
    assert (again.created, again.unmatched) == (0, 1)
    await services.audit_trail.seal_all()
    assert (await services.audit_trail.verify()).ok


def test_the_cli_imports_a_file_and_refuses_a_bad_one_with_exit_code_2(
    install: Install,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    assert consentry("users", "create", "sam@staff.example.com", "--role", "sales").exit_code == 0
    helped = consentry("calendar", "import", "--help")
    assert helped.exit_code == 0
    assert "--as" in helped.stdout
    assert "--url" in helped.stdout
    bad = tmp_path / "bad.ics"
    bad.write_bytes(b"not a calendar")
    refused = consentry("calendar", "import", str(bad), "--as", "sam@staff.example.com")
    assert refused.exit_code == 2
    assert one_line_error(refused) == (
        "Error: nothing imported: not an iCalendar file (expected BEGIN:VCALENDAR … END:VCALENDAR)"
    )
    good = tmp_path / "good.ics"
    good.write_bytes(ics(event(UID, STRANGER)))
    imported = consentry("calendar", "import", str(good), "--as", "sam@staff.example.com")
    assert imported.exit_code == 0, imported.output
    assert "1 events: 0 meetings recorded" in imported.stdout
    assert "1 with no known attendee" in imported.stdout
    neither = consentry("calendar", "import", "--as", "sam@staff.example.com")
    assert neither.exit_code == 2
    assert one_line_error(neither) == "Error: give either FILE or --url"


OUTLOOK = (
    "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\n"
    "BEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
    "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\n"
    "BEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
    "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
)


def test_times_are_converted_to_utc_whatever_zone_the_calendar_uses() -> None:
    from server.calendar.ics import read_meetings

    meetings = read_meetings(
        ics(
            OUTLOOK,
            event("w", start="DTSTART;TZID=W. Europe Standard Time:20260701T100000"),
            event("w2", start="DTSTART;TZID=W. Europe Standard Time:20261201T100000"),
            event("ny", start="DTSTART;TZID=America/New_York:20260701T100000"),
            event("z", start="DTSTART:20260701T100000Z"),
            event("floating", start="DTSTART:20260701T100000"),
        )
    )
    assert [m.start.isoformat() for m in meetings] == [
        "2026-07-01T08:00:00+00:00",  # summer time in the calendar's own zone definition
        "2026-12-01T09:00:00+00:00",
        "2026-07-01T14:00:00+00:00",
        "2026-07-01T10:00:00+00:00",
        "2026-07-01T10:00:00+00:00",  # floating: taken as UTC (docs/calendar.md)
    ]
