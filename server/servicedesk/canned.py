"""Canned responses: a team's reusable reply texts. They are shared by everyone in the
team and stored in clear, so they must not be about anyone: saving one that contains an
e-mail address or a phone number (the data map's own rules: ``email-validator`` and
``phonenumbers``, as for contact fields) is refused."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from server.servicedesk.service import DeskError
from server.servicedesk.tables import CannedResponse

TITLE_MAX = 120
BODY_MAX = 5000
PER_TEAM = 200
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")


@dataclass(frozen=True)
class Canned:
    id: int
    team: str
    title: str
    body: str


def personal_data_in(text: str, region: str) -> str | None:
    """ "an e-mail address" or "a phone number" if the text contains one, else None."""
    for candidate in _ADDRESS_LIKE.findall(text):
        try:
            validate_email(candidate.strip("."), check_deliverability=False)
        except EmailNotValidError:
            continue
        return "an e-mail address"
    if any(True for _ in phonenumbers.PhoneNumberMatcher(text, region)):
        return "a phone number"
    return None


def _canned(row: dict[str, Any]) -> Canned:
    return Canned(int(row["id"]), str(row["team"]), str(row["title"]), str(row["body"]))


async def responses(team: str | None) -> list[Canned]:
    """The team's canned responses by title (every team's for ``None``)."""
    query = CannedResponse.select()
    if team is not None:
        query = query.where(CannedResponse.team == team)
    rows = await query.order_by(CannedResponse.title).limit(PER_TEAM)
    return [_canned(r) for r in rows]


async def response(canned_id: int, team: str | None) -> Canned | None:
    query = CannedResponse.select().where(CannedResponse.id == canned_id)
    if team is not None:
        query = query.where(CannedResponse.team == team)
    row = await query.first()
    return _canned(row) if row else None


async def save(
    team: str, title: str, body: str, *, by: int, region: str, canned_id: int | None = None
) -> Canned:
    """Create (or, with ``canned_id``, change) a canned response of ``team``."""
    title, body = " ".join(title.split()), body.strip()
    if not title or len(title) > TITLE_MAX:
        raise DeskError("bad_title", f"Give it a title of at most {TITLE_MAX} characters.")
    if not body or len(body) > BODY_MAX:
        raise DeskError("bad_body", f"Write a text of at most {BODY_MAX} characters.")
    found = personal_data_in(f"{title}\n{body}", region)
    if found:
        raise DeskError(
            "personal_data",
            f"A canned response is shared by the team and must not contain {found}.",
        )
    now = dt.datetime.now(dt.UTC)
    if canned_id is not None:
        if await response(canned_id, team) is None:
            raise DeskError("not_found", "No such canned response.", 404)
        await CannedResponse.update(
            {
                CannedResponse.title: title,
                CannedResponse.body: body,
                CannedResponse.updated_by: by,
                CannedResponse.updated_at: now,
            }
        ).where(CannedResponse.id == canned_id)
        return Canned(canned_id, team, title, body)
    if await CannedResponse.count().where(CannedResponse.team == team) >= PER_TEAM:
        raise DeskError("too_many", f"A team keeps at most {PER_TEAM} canned responses.")
    rows = await CannedResponse.insert(
        CannedResponse(team=team, title=title, body=body, updated_by=by, updated_at=now)
    ).returning(CannedResponse.id)
    return Canned(int(rows[0]["id"]), team, title, body)


async def remove(canned_id: int, team: str | None) -> None:
    if await response(canned_id, team) is None:
        raise DeskError("not_found", "No such canned response.", 404)
    await CannedResponse.delete().where(CannedResponse.id == canned_id)
