"""Staff time zones: the IANA names a user may pick, and a stored name as a zone.

Times are stored in UTC everywhere; a staff user's zone only decides how pages show
them and how a typed wall-clock time is read. The list comes from the zoneinfo database
(the system's, else the ``tzdata`` package), so it is never hand-kept here.
"""

from __future__ import annotations

import contextlib
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

UTC_NAME = "UTC"
MAX_ZONE_NAME = 64  # the staff_user.time_zone column


@cache
def zone_names() -> tuple[str, ...]:
    """Canonical-looking zone names, sorted ("Africa/Abidjan" ... "UTC"); the legacy
    aliases without a region ("EST5EDT", "Cuba") are left out of the picker."""
    names = {
        n for n in available_timezones() if "/" in n and not n.startswith(("Etc/", "SystemV/"))
    }
    return tuple(sorted(names | {UTC_NAME}))


def known_zone(name: str) -> bool:
    return 0 < len(name) <= MAX_ZONE_NAME and name in zone_names()


def zone_of(name: str | None) -> ZoneInfo:
    """The zone called ``name``; UTC for anything unknown (a stored name the system's
    zoneinfo no longer has must not break every page)."""
    if name and known_zone(name):
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(name)
    return ZoneInfo(UTC_NAME)
