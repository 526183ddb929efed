""" "Who looked at my data": the person's own access log in the portal, verifiable.

The page lists every audit event naming the signed-in person, newest first, a page at a
time: when, who (``<role> #<pseudonym>`` — the same stable pseudonym per member of staff
as the access log of their data export, ``server.dsr.third_parties.actor_label``; never a name,
e-mail or account id), what they did, for which purpose, which fields (names only) and
the outcome. Events are read as soon as they are committed — a request returns only after
its own event is — so a colleague's read shows up on the person's next page load.

The download gives, for each event, its hash and an RFC 6962 inclusion proof under one
signed tree head, with the public key's id (``AuditTrail.inclusion_proofs``; the trail is
sealed first, so nothing is left out for want of a head). Not the events' stored contents:
those name staff accounts and, for a list or a search, other people. The proofs are checked
by ``audit/standalone_verify.py --proofs`` with the public key alone.

Each page and each download is itself an audit event under the person as actor (actor
``subject``, role ``data_subject``), so it appears on the page too. Only events naming the
person can be shown or proven: a sequence number of anyone else's event answers None (the
route's 404), exactly like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audit import subject_events
from audit.events import Outcome, audit_event
from server import db
from server.consent.model import SUBJECT_ACTOR
from server.dsr.third_parties import actor_label, pseudonym_key

if TYPE_CHECKING:
    from audit.log import AuditLog
    from audit.trail import AuditTrail
    from server.gateway import Gateway

PAGE_SIZE = 25
SUBJECT_ROLE = "data_subject"
PURPOSE = "compliance"
# Plain words for the actions a person will most often see; anything else shows its code.
ACTION_WORDS = {
    "read": "Looked at your record",
    "list": "Saw you in a list",
    "search": "Found you in a search",
    "count": "Counted you in a report",
    "create": "Created a record about you",
    "update": "Changed a record about you",
    "delete": "Deleted a record about you",
    "export": "Copied your data out",
    "locate": "Looked you up by e-mail or phone",
    "dsr.export": "Built a copy of your data for you",
    "portal.sign_in": "Signed in to this portal",
    "portal.sign_in_link": "E-mailed you a sign-in link",
    "portal.download_link": "Made a download link for you",
    "portal.download_link_mail": "E-mailed you a download link",
    "consent.grant": "Recorded your consent",
    "consent.withdraw": "Recorded your withdrawal of consent",
    "consent.expire": "Recorded that your consent expired",
    "consent.object": "Recorded your objection",
    "consent.lift_objection": "Recorded that your objection was lifted",
    "consent.export": "Copied your consent records out",
    "consent.ledger_read": "Looked at your consent history",
    "dsr.log": "Recorded your request",
    "dsr.verify": "Verified your identity for a request",
    "dsr.review": "Started reviewing your request",
    "dsr.approve": "Approved your request",
    "dsr.reject": "Refused your request",
    "dsr.fulfil": "Carried out your request",
    "dsr.close": "Closed your request",
    "dsr.notify": "E-mailed you about your request",
    "portal.download": "Downloaded your data",
    "portal.access_log": "Viewed this page",
    "portal.access_proofs": "Downloaded the proofs of this page",
    "portal.receipt": "Downloaded a receipt",
}
OUTCOME_WORDS = {"allowed": "done", "denied": "refused", "error": "failed"}


@dataclass(frozen=True)
class Access:
    """One line of the page: no value, no staff name, no other person."""

    seq: int
    at: Any  # datetime (UTC)
    who: str
    role: str
    action: str
    what: str
    record_type: str
    purpose: str
    fields: tuple[str, ...]
    outcome: str


@dataclass(frozen=True)
class AccessPage:
    accesses: tuple[Access, ...]
    older: int | None  # cursor for the next (older) page
    newer: int | None


async def _record(
    audit: AuditLog,
    action: str,
    subject_id: str,
    request_id: str,
    detail: dict[str, int | str],
) -> None:
    async with db.write_transaction():
        await audit.append(
            audit_event(
                actor_id=SUBJECT_ACTOR,
                actor_role=SUBJECT_ROLE,
                action=action,
                resource_type="data_subject",
                subject_ids=(subject_id,),
                purpose=PURPOSE,
                outcome=Outcome.ALLOWED,
                request_id=request_id,
                detail=detail,
            )
        )


async def access_page(
    audit: AuditLog,
    gateway: Gateway,
    subject_id: str,
    *,
    before: int | None = None,
    request_id: str = "",
) -> AccessPage:
    """One page of the person's access log, newest first; the view is audited first, so
    it is the newest line of the first page."""
    await _record(audit, "portal.access_log", subject_id, request_id, {"page": before or 0})
    page = await subject_events.events_about(subject_id, before_seq=before, page_size=PAGE_SIZE)
    key = pseudonym_key(gateway)
    accesses = tuple(
        Access(
            seq=e.seq,
            at=e.ts,
            who=actor_label(key, e.actor_id, e.actor_role),
            role=e.actor_role,
            action=e.action,
            what=ACTION_WORDS.get(e.action, e.action),
            record_type=e.resource_type,
            purpose=e.purpose,
            fields=e.fields,
            outcome=OUTCOME_WORDS.get(e.outcome, e.outcome),
        )
        for e in page.events
    )
    return AccessPage(accesses, page.older, page.newer)


async def access_proofs(
    audit: AuditLog,
    gateway: Gateway,
    trail: AuditTrail,
    subject_id: str,
    *,
    seq: int | None = None,
    request_id: str = "",
) -> dict[str, Any] | None:
    """The person's access log with an inclusion proof per event (every event, or only
    ``seq``), as one JSON document; None when ``seq`` does not name this person."""
    if seq is not None:
        event = await subject_events.event_about(subject_id, seq)
        if event is None:
            return None
        events = [event]
    else:
        events = await subject_events.every_event_about(subject_id)
    await _record(audit, "portal.access_proofs", subject_id, request_id, {"events": len(events)})
    key = pseudonym_key(gateway)
    proofs = await trail.inclusion_proofs([e.seq for e in events])
    return {
        "subject_id": subject_id,
        "accesses": [
            {
                "seq": e.seq,
                "at": e.ts.isoformat(),
                "who": actor_label(key, e.actor_id, e.actor_role),
                "action": e.action,
                "record_type": e.resource_type,
                "purpose": e.purpose,
                "fields": list(e.fields),
                "outcome": e.outcome,
            }
            for e in reversed(events)
        ],
        **proofs,
    }
