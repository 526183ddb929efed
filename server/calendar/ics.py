"""Reading iCalendar (RFC 5545) files with ``icalendar``: the meetings in them, their
times in UTC and the e-mail addresses of the people invited.

A whole file is read before anything is written: a file that is not iCalendar, or an
event without a UID or start, refuses the import with one line that names the event by
its position, never by its text (which may name people).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from icalendar import Calendar, Event

MAX_ICS_BYTES = 5_000_000
MAX_EVENTS = 5_000
_NOT_ICS = "not an iCalendar file (expected BEGIN:VCALENDAR … END:VCALENDAR)"


class CalendarError(ValueError):
    """The calendar cannot be imported at all; the message is one line, with no content."""


@dataclass(frozen=True)
class Meeting:
    uid: str
    start: dt.datetime  # UTC
    summary: str
    description: str
    attendees: tuple[str, ...]  # e-mail addresses as written (mailto: removed), organizer too
    cancelled: bool
    all_day: bool


def _utc(value: dt.date | dt.datetime) -> tuple[dt.datetime, bool]:
    """A DTSTART as a UTC moment. A date (all-day event) is midnight UTC of that day; a
    floating time (no zone) is taken as UTC (docs/calendar.md)."""
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC), True
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC), False
    return value.astimezone(dt.UTC), False


def _address(value: object) -> str:
    text = str(value).strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.strip()


def _addresses(event: Event) -> tuple[str, ...]:
    found: list[str] = []
    for name in ("ORGANIZER", "ATTENDEE"):
        raw = event.get(name)
        if raw is None:
            continue
        for item in raw if isinstance(raw, list) else [raw]:
            address = _address(item)
            if "@" in address and address.lower() not in {a.lower() for a in found}:
                found.append(address)
    return tuple(found)


def read_meetings(content: bytes) -> list[Meeting]:
    """Every VEVENT of the file, in file order (a recurring event once, at its DTSTART)."""
    if not content.strip():
        raise CalendarError("the file is empty")
    if len(content) > MAX_ICS_BYTES:
        raise CalendarError(f"the file is larger than {MAX_ICS_BYTES // 1_000_000} MB")
    try:
        calendar = Calendar.from_ical(content)
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError):
        raise CalendarError(_NOT_ICS) from None
    if not isinstance(calendar, Calendar) or calendar.name != "VCALENDAR":
        raise CalendarError(_NOT_ICS)
    meetings: list[Meeting] = []
    events = [c for c in calendar.walk("VEVENT") if isinstance(c, Event)]
    if len(events) > MAX_EVENTS:
        raise CalendarError(f"more than {MAX_EVENTS} events: split the file")
    for position, event in enumerate(events, start=1):
        uid = str(event.get("UID") or "").strip()
        if not uid:
            raise CalendarError(f"event {position} has no UID")
        try:
            raw_start = event.decoded("DTSTART")
        except (KeyError, ValueError, TypeError):
            raise CalendarError(f"event {position} has no valid DTSTART") from None
        if not isinstance(raw_start, dt.date):
            raise CalendarError(f"event {position} has no valid DTSTART")
        start, all_day = _utc(raw_start)
        status = str(event.get("STATUS") or "").upper()
        meetings.append(
            Meeting(
                uid=uid,
                start=start,
                summary=str(event.get("SUMMARY") or "").strip(),
                description=str(event.get("DESCRIPTION") or "").strip(),
                attendees=_addresses(event),
                cancelled=status == "CANCELLED" or str(calendar.get("METHOD", "")) == "CANCEL",
                all_day=all_day,
            )
        )
    return meetings
