"""Business time: SLA targets count only opening hours, in the policy's time zone, and
skip holidays. Pure functions over a :class:`BusinessCalendar`; the clock is passed in.

Times are stored and compared in UTC. Each day's opening and closing are placed in the
calendar's zone (so a 09:00 opening stays 09:00 across a daylight-saving change) and the
minutes between them are counted in real (UTC) time.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_DAYS = 800  # a target that does not fit in this many calendar days is a configuration error
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class CalendarError(ValueError):
    """A calendar that cannot be used; the message names the problem, never a value."""


@dataclass(frozen=True)
class BusinessCalendar:
    zone: ZoneInfo
    hours: Mapping[int, tuple[dt.time, dt.time]]  # weekday (Monday 0) -> open, close
    holidays: frozenset[dt.date] = frozenset()

    def _window(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        if day in self.holidays or day.weekday() not in self.hours:
            return None
        opens, closes = self.hours[day.weekday()]
        start = dt.datetime.combine(day, opens, tzinfo=self.zone).astimezone(dt.UTC)
        end = dt.datetime.combine(day, closes, tzinfo=self.zone).astimezone(dt.UTC)
        return (start, end) if end > start else None

    def add(self, start: dt.datetime, minutes: int) -> dt.datetime:
        """The moment ``minutes`` of business time after ``start``."""
        if minutes < 0:
            raise CalendarError("a target must not be negative")
        moment = start.astimezone(dt.UTC)
        left = dt.timedelta(minutes=minutes)
        day = moment.astimezone(self.zone).date()
        for _ in range(MAX_DAYS):
            window = self._window(day)
            if window is not None:
                cursor = max(moment, window[0])
                if cursor < window[1]:
                    available = window[1] - cursor
                    if left <= available:
                        return cursor + left
                    left -= available
            day += dt.timedelta(days=1)
        raise CalendarError("no opening hours within the target: check the calendar")

    def elapsed(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Business time between two moments (zero if ``end`` is not after ``start``)."""
        begin, finish = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
        total = dt.timedelta()
        day = begin.astimezone(self.zone).date()
        last = finish.astimezone(self.zone).date()
        while day <= last:
            window = self._window(day)
            if window is not None:
                low, high = max(begin, window[0]), min(finish, window[1])
                if high > low:
                    total += high - low
            day += dt.timedelta(days=1)
        return total


def _clock(value: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise CalendarError("opening hours must be written HH:MM") from None


def parse_hours(raw: Mapping[str, object]) -> dict[int, tuple[dt.time, dt.time]]:
    hours: dict[int, tuple[dt.time, dt.time]] = {}
    for key, span in raw.items():
        if key not in {str(d) for d in range(7)}:
            raise CalendarError("opening hours are keyed by weekday 0 (Monday) to 6")
        if (
            not isinstance(span, list)
            or len(span) != 2
            or not all(isinstance(s, str) for s in span)
        ):
            raise CalendarError("each day's hours are [opening, closing]")
        opens, closes = _clock(str(span[0])), _clock(str(span[1]))
        if closes <= opens:
            raise CalendarError(f"{WEEKDAYS[int(key)]}: closing must be after opening")
        hours[int(key)] = (opens, closes)
    return hours


def parse_holidays(raw: object) -> frozenset[dt.date]:
    if not isinstance(raw, list):
        raise CalendarError("holidays are a list of dates")
    try:
        return frozenset(dt.date.fromisoformat(str(day)) for day in raw)
    except ValueError:
        raise CalendarError("holidays must be dates written YYYY-MM-DD") from None


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError("unknown time zone") from None


def calendar_from(time_zone: str, hours_json: str, holidays_json: str) -> BusinessCalendar:
    """A calendar from a stored SLA policy's columns (server.servicedesk.tables.SlaPolicy)."""
    try:
        hours_raw = json.loads(hours_json or "{}")
        holidays_raw = json.loads(holidays_json or "[]")
    except json.JSONDecodeError:
        raise CalendarError("stored calendar is not valid JSON") from None
    if not isinstance(hours_raw, dict):
        raise CalendarError("opening hours are keyed by weekday")
    return BusinessCalendar(
        zone_named(time_zone), parse_hours(hours_raw), parse_holidays(holidays_raw)
    )
