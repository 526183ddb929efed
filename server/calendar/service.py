"""Calendar import: each meeting of an .ics file (or of a CalDAV calendar fetched by URL)
whose attendees include known people becomes a record about each of them.

- Attendees (and the organizer) are matched by the blind index of their e-mail address,
  to contacts first and then leads, through the gateway as the importing user: only the
  people that user may search for are matched, and every lookup is audited. An address
  that matches nobody leaves no trace: it is not stored, logged or audited.
- A meeting with a contact becomes an interaction (channel ``meeting``, ``occurred_at``
  from DTSTART in UTC, title and description as its summary, sealed under the contact's
  key). Interactions need a contact, so a meeting with a lead becomes a note on the lead,
  sealed under the lead's key. Exports, erasure and retention reach both as they reach
  every interaction and note.
- Importing the same event again (same UID) updates that record instead of adding one;
  a cancelled event (STATUS:CANCELLED, or METHOD:CANCEL) deletes it. The link from
  event to record is a keyed hash (:mod:`server.calendar.tables`), never the UID.
- The file is read whole before anything is written, and all writes of one import are
  one transaction: a malformed file, or a refusal half-way, writes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import PolicyEngine
from server import db
from server.calendar.ics import MAX_ICS_BYTES, CalendarError, Meeting, read_meetings
from server.calendar.tables import CalendarMeeting
from server.gateway import Actor, Forbidden, Gateway, InvalidInput, NotFound
from server.logs import get_logger
from server.outbound import DestinationRefused, Destinations

if TYPE_CHECKING:
    from server.services import Services

RESOURCE = "calendar"  # policy: ``calendar import``
MAX_SUMMARY = 5000  # the interaction summary's and the note body's limit in the data map
FETCH_TIMEOUT = 15.0
MAX_REDIRECTS = 5  # each hop is checked against the outbound rule again
log = get_logger("consentry.calendar")


@dataclass
class ImportReport:
    events: int = 0  # events in the file
    created: int = 0  # records made (one per matched person and event)
    updated: int = 0  # records of events imported before, brought up to date
    removed: int = 0  # records of cancelled events deleted
    unmatched: int = 0  # events none of whose attendees is a known person
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.events} events: {self.created} meetings recorded, {self.updated} updated, "
            f"{self.removed} removed (cancelled), {self.unmatched} with no known attendee"
        )


@dataclass(frozen=True)
class _Person:
    resource: str  # contact | lead
    record_id: str


@dataclass
class _Plan:
    meeting: Meeting
    people: list[_Person] = field(default_factory=list)


def meeting_text(meeting: Meeting) -> str:
    text = meeting.summary or "Meeting"
    if meeting.description:
        text += "\n\n" + meeting.description
    return text[:MAX_SUMMARY]


class CalendarImport:
    def __init__(
        self,
        gateway: Gateway,
        policy: PolicyEngine,
        audit: AuditLog,
        uid_key: bytes,
        destinations: Destinations | None = None,
    ) -> None:
        self._gateway = gateway
        self._policy = policy
        self._audit = audit
        self._uid_key = uid_key
        # The URL is typed by staff: fetched only from where the server may connect
        # (server/outbound.py), every redirect hop checked again.
        self._destinations = destinations or Destinations()

    def may_import(self, role: str) -> bool:
        return self._policy.allows(role, RESOURCE, "import")

    async def _require(self, actor: Actor) -> None:
        if self.may_import(actor.role):
            return
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action="calendar.import",
                resource_type=RESOURCE,
                outcome=Outcome.DENIED,
                reason="not_allowed",
                request_id=actor.request_id,
            )
        )
        raise Forbidden("your role may not import calendars")

    def uid_hash(self, uid: str, person: _Person) -> str:
        message = "\x00".join((uid, person.resource, person.record_id)).encode()
        return hmac.new(self._uid_key, message, hashlib.sha256).hexdigest()

    async def _people(self, actor: Actor, address: str) -> list[_Person]:
        """Contacts with this e-mail address, or else leads with it, that the actor may
        search for (an invalid address, or a type they may not search, finds nobody)."""
        for resource in ("contact", "lead"):
            try:
                found = await self._gateway.search(actor, resource, "email", address)
            except (InvalidInput, Forbidden):
                continue
            people = [_Person(resource, r.id) for r in found if not r.erased]
            if people:
                return people
        return []

    async def fetch(self, url: str) -> bytes:
        """GET a calendar (a CalDAV collection's export or a published .ics URL). The URL
        is never repeated in errors or logs: it may carry a secret token."""
        if not url.lower().startswith(("http://", "https://")) or len(url) > 2000:
            raise CalendarError("the calendar URL must start with http:// or https://")
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as client:
                for _ in range(MAX_REDIRECTS + 1):
                    try:
                        await self._destinations.check_url(url)
                    except DestinationRefused as refused:
                        raise CalendarError(
                            f"the calendar URL is refused: {refused.reason}"
                        ) from None
                    async with client.stream(
                        "GET", url, headers={"accept": "text/calendar"}
                    ) as response:
                        if response.is_redirect and "location" in response.headers:
                            url = str(response.url.join(response.headers["location"]))
                            if not url.lower().startswith(("http://", "https://")):
                                raise CalendarError("the calendar server redirected elsewhere")
                            continue
                        if response.status_code != 200:
                            raise CalendarError(
                                f"the calendar server answered HTTP {response.status_code}"
                            )
                        content = bytearray()
                        async for chunk in response.aiter_bytes():
                            content += chunk
                            if len(content) > MAX_ICS_BYTES:
                                raise CalendarError(
                                    f"the calendar is larger than {MAX_ICS_BYTES // 1_000_000} MB"
                                )
                        return bytes(content)
                raise CalendarError("the calendar server redirected too many times")
        except httpx.HTTPError as exc:
            raise CalendarError(f"could not fetch the calendar ({type(exc).__name__})") from None

    async def import_url(self, actor: Actor, url: str) -> ImportReport:
        await self._require(actor)
        return await self.import_ics(actor, await self.fetch(url))

    async def import_ics(self, actor: Actor, content: bytes) -> ImportReport:
        """Import every meeting of ``content`` (see the module docstring)."""
        await self._require(actor)
        started = time.monotonic()
        meetings = read_meetings(content)  # CalendarError before anything is looked up
        report = ImportReport(events=len(meetings))
        known: dict[str, list[_Person]] = {}
        plans: list[_Plan] = []
        for meeting in meetings:
            plan = _Plan(meeting)
            for address in meeting.attendees:
                key = address.lower()
                if key not in known:
                    known[key] = await self._people(actor, address)
                plan.people += [p for p in known[key] if p not in plan.people]
            if not plan.people:
                report.unmatched += 1
            plans.append(plan)
        async with db.write_transaction():
            for plan in plans:
                for person in plan.people:
                    await self._apply(actor, plan.meeting, person, report)
            report.seconds = time.monotonic() - started
            await self._audit.append(
                audit_event(
                    actor_id=actor.id,
                    actor_role=actor.role,
                    action="calendar.import",
                    resource_type=RESOURCE,
                    outcome=Outcome.ALLOWED,
                    request_id=actor.request_id,
                    detail={
                        "events": report.events,
                        "created": report.created,
                        "updated": report.updated,
                        "removed": report.removed,
                        "unmatched": report.unmatched,
                    },
                )
            )
        log.info(
            "calendar imported",
            events=report.events,
            created=report.created,
            updated=report.updated,
            removed=report.removed,
            unmatched=report.unmatched,
            seconds=round(report.seconds, 3),
        )
        return report

    def _values(self, meeting: Meeting, person: _Person) -> tuple[str, dict[str, Any]]:
        if person.resource == "contact":
            return "interaction", {
                "channel": "meeting",
                "occurred_at": meeting.start.isoformat(),
                "summary": meeting_text(meeting),
                "contact_id": person.record_id,
            }
        when = meeting.start.strftime("%Y-%m-%d" if meeting.all_day else "%Y-%m-%d %H:%M UTC")
        body = f"Meeting on {when}: {meeting_text(meeting)}"
        return "note", {
            "body": body[:MAX_SUMMARY],
            "record_type": "lead",
            "record_id": person.record_id,
        }

    async def _apply(
        self, actor: Actor, meeting: Meeting, person: _Person, report: ImportReport
    ) -> None:
        uid_hash = self.uid_hash(meeting.uid, person)
        row = await CalendarMeeting.select().where(CalendarMeeting.uid_hash == uid_hash).first()
        if meeting.cancelled:
            if row is not None:
                try:
                    await self._gateway.delete(
                        actor, str(row["record_type"]), str(row["record_id"])
                    )
                except NotFound:
                    pass  # deleted or erased since: nothing left to remove
                else:
                    report.removed += 1
                await CalendarMeeting.delete().where(CalendarMeeting.uid_hash == uid_hash)
            return
        resource, values = self._values(meeting, person)
        if row is not None:
            changes = {
                k: v
                for k, v in values.items()
                if k not in {"contact_id", "record_id", "record_type"}
            }
            try:
                await self._gateway.update(actor, resource, str(row["record_id"]), changes)
            except NotFound:  # deleted or erased since: record the meeting anew
                await CalendarMeeting.delete().where(CalendarMeeting.uid_hash == uid_hash)
            else:
                report.updated += 1
                return
        record = await self._gateway.create(actor, resource, values)
        await CalendarMeeting.insert(
            CalendarMeeting(
                id=uuid.uuid4(),
                uid_hash=uid_hash,
                record_type=resource,
                record_id=uuid.UUID(record.id),
                imported_at=dt.datetime.now(dt.UTC),
            )
        ).run()
        report.created += 1


def calendar_import(services: Services) -> CalendarImport:
    """The calendar importer over the app's gateway (stateless: made per use)."""
    return CalendarImport(
        services.gateway,
        services.policy,
        services.audit,
        services.gateway.derived_key(b"consentry/calendar/uid/v1"),
        services.destinations,
    )
