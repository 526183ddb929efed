"""Signed receipts for a data subject: a consent change, an answered request, an erasure.

A receipt says what was done, when, under which request, and lists the audit events that
recorded it (sequence numbers, times, actions, outcomes — codes only) with an RFC 6962
inclusion proof for each under one signed tree head. The whole document is signed with
the controller's audit key (Ed25519, domain ``consentry-receipt/1``), so the person can
later show it to anyone: ``audit/standalone_verify.py --proofs receipt.json --public-key
consentry-audit.pub`` checks the signature, the head and every proof without Consentry
(docs/audit-format.md, "Receipts").

A receipt carries no personal data but the person's pseudonymous subject id: purposes,
request kinds and states are codes, and the events appear as their hashes.

The portal offers one per consent ledger event and per answered request of the signed-in
person (never anyone else's: both are looked up under their subject id). An erasure
receipt cannot be fetched afterwards (the person can no longer sign in), so it goes into
the e-mail that tells them the erasure was carried out — sent to the address read before
the erasure destroyed it (:func:`fulfil_erasure_with_receipt`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from audit import subject_events
from audit.queries import EventRow
from server.dsr.requests import ANSWERED, KINDS, STATES, DataRequest
from server.logs import get_logger

if TYPE_CHECKING:
    from audit.trail import AuditTrail
    from server.dsr.erasure import Erasure
    from server.settings import Settings

RECEIPT_FORMAT = "consentry-receipt/1"
# The audit key also signs tree heads and export manifests: a receipt's signed bytes start
# with a label of their own, so none can pass for another (audit/standalone_verify.py).
RECEIPT_DOMAIN = b"consentry-receipt/1\n"
CONSENT_WORDS = {
    "granted": "Consent given",
    "withdrawn": "Consent withdrawn",
    "expired": "Consent expired",
    "objected": "Objection recorded",
    "lifted": "Objection lifted",
}
ERASURE_ACTIONS = ("dsr.erase_start", "dsr.erase")

log = get_logger("consentry.dsr.receipts")


def receipt_body(doc: dict[str, Any]) -> bytes:
    """What is signed after the domain: the receipt without its signature as sorted,
    compact, ASCII JSON (the standalone verifier builds the same bytes)."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


async def _signed(
    trail: AuditTrail,
    settings: Settings,
    *,
    kind: str,
    subject_id: str,
    what: str,
    when: dt.datetime,
    reference: str,
    request: str | None,
    events: Sequence[EventRow],
) -> dict[str, Any]:
    proofs = await trail.inclusion_proofs([e.seq for e in events])
    doc: dict[str, Any] = {
        "format": RECEIPT_FORMAT,
        "kind": kind,
        "issued_at": _iso(dt.datetime.now(dt.UTC)),
        "controller": {"name": settings.controller_name, "contact": settings.controller_contact},
        "subject_id": subject_id,
        "reference": reference,
        "what": what,
        "when": _iso(when),
        "request": request,
        "audit_events": [
            {"seq": e.seq, "at": _iso(e.ts), "action": e.action, "outcome": e.outcome}
            for e in events
        ],
        "key_id": trail.signer.key_id,
        "proofs": proofs,
    }
    doc["signature"] = trail.signer.sign_document(RECEIPT_DOMAIN, receipt_body(doc))
    return doc


async def consent_receipt(
    trail: AuditTrail, settings: Settings, subject_id: str, ledger_id: int
) -> dict[str, Any] | None:
    """The receipt of one consent ledger event of this person; None if it is not theirs."""
    events = await subject_events.events_of_resource(subject_id, "consent", str(ledger_id))
    change = next((e for e in events if e.action.startswith("consent.")), None)
    if change is None or change.action in {"consent.export", "consent.ledger_read"}:
        return None
    kind = change.action.removeprefix("consent.")
    words = {
        "grant": "granted",
        "withdraw": "withdrawn",
        "expire": "expired",
        "object": "objected",
        "lift_objection": "lifted",
    }
    channel = str(change.detail.get("channel", ""))
    what = f"{CONSENT_WORDS.get(words.get(kind, kind), kind)}: purpose {change.purpose}"
    if channel and channel != "any":
        what += f", channel {channel}"
    return await _signed(
        trail,
        settings,
        kind="consent_change",
        subject_id=subject_id,
        what=what,
        when=change.ts,
        reference=f"consent-{ledger_id}",
        request=change.request_id or None,
        events=[change],
    )


async def request_receipt(
    trail: AuditTrail, settings: Settings, request: DataRequest
) -> dict[str, Any] | None:
    """The receipt of an answered request (fulfilled, rejected or closed); None while it is
    still open. The caller has checked it is the person's own."""
    if request.state not in ANSWERED:
        return None
    events = await subject_events.events_of_resource(request.subject_id, "dsr_request", request.id)
    what = (
        f"Your request for {KINDS.get(request.kind, request.kind)}: "
        f"{STATES.get(request.state, request.state)}"
    )
    return await _signed(
        trail,
        settings,
        kind="request",
        subject_id=request.subject_id,
        what=what,
        when=request.updated_at,
        reference=request.id,
        request=request.id,
        events=events,
    )


async def erasure_receipt(
    trail: AuditTrail, settings: Settings, request: DataRequest
) -> dict[str, Any]:
    """The receipt of an erasure carried out under ``request``: the request's events so
    far and the erasure's own (started, done)."""
    events = await subject_events.events_of_resource(request.subject_id, "dsr_request", request.id)
    done = await subject_events.events_of_actions(request.subject_id, ERASURE_ACTIONS)
    ordered = sorted([*events, *done], key=lambda e: e.seq)
    when = done[-1].ts if done else dt.datetime.now(dt.UTC)
    return await _signed(
        trail,
        settings,
        kind="erasure",
        subject_id=request.subject_id,
        what="Your data was erased: every record about you, its encryption key destroyed",
        when=when,
        reference=request.id,
        request=request.id,
        events=ordered,
    )


async def fulfil_erasure_with_receipt(
    erasure: Erasure, trail: AuditTrail, settings: Settings, request: DataRequest, by: str
) -> list[str]:
    """The ``erasure`` fulfiller: erase (``Erasure.fulfil``), then add the signed receipt
    to the lines of the fulfilment e-mail, which goes to the address read before the
    erasure destroyed it (``DataSubjectRequests.transition``). A held erasure (records
    kept under a legal hold) gets no receipt yet: it is not finished."""
    lines = await erasure.fulfil(request, by)
    job = await erasure.job_for_request(request.id)
    if job is None or not job.complete:
        return lines
    try:
        receipt = await erasure_receipt(trail, settings, request)
    except Exception as exc:  # the erasure is done: the request must still be fulfilled
        log.error("erasure receipt not built", error=type(exc).__name__)
        return [
            *lines,
            "",
            "We could not attach your signed receipt to this message. Write to us and we",
            "will send it: the audit log keeps the record of your erasure.",
        ]
    return [
        *lines,
        "",
        "Your signed receipt for this erasure follows. Keep it: it is the proof that we",
        "erased your data, and it can be checked with our public key (see the page",
        '"How to check" in our privacy portal). Save the text between the lines as',
        "receipt.json.",
        "-----BEGIN CONSENTRY RECEIPT-----",
        json.dumps(receipt, indent=1, sort_keys=True),
        "-----END CONSENTRY RECEIPT-----",
    ]
