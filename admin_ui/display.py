"""How the admin shows money and moments: one place, used by pages and templates alike.

Amounts arrive in minor units with their currency and are shown in major units with the
currency's decimals (server.money). Moments are stored in UTC and shown in the signed-in
user's time zone, named after the time ("2026-12-03 10:00 CET"), so a reader always knows
which clock they are reading.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from server.auth.zones import zone_of
from server.money import format_money

UTC = ZoneInfo("UTC")


def shown_moment(value: dt.datetime | str | None, zone: ZoneInfo = UTC) -> str:
    """A stored moment (aware datetime or ISO text; naive means UTC) in ``zone``."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def money(amount: Any, currency: str | None) -> str:
    """The template filter and global: ``{{ deal.amount | money(deal.currency) }}``."""
    if amount is None or amount == "":
        return ""
    return format_money(int(amount), currency or None)


@pass_context
def moment(context: Context, value: dt.datetime | str | None) -> str:
    """``{{ record.created_at | moment }}``: in the zone of the page's signed-in user."""
    user = context.get("user")
    return shown_moment(value, zone_of(getattr(user, "time_zone", None)))


def install(environment: Environment) -> None:
    environment.filters["money"] = money
    environment.filters["moment"] = moment
    environment.globals["money"] = money
