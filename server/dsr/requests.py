"""``DataSubjectRequests``: the Art. 15-21 request workflow and its deadlines.

A request moves through an explicit table of states (``TRANSITIONS``); nothing else is
accepted, so the queue can never show a request that skipped verification or review.
Every change writes a history row (``dsr_request_event``, append-only) and an audit event
in one transaction, then tells the person by e-mail. The e-mail goes out after the commit
and its failure never undoes the change: the law's clock is about what we did, and a
message that could not be delivered is recorded (as a code) for staff to follow up.

The person's e-mail address is read through the gateway when a message is sent and then
forgotten: these tables and the audit log hold ids and short codes only.
"""

from __future__ import annotations

import calendar
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import SYSTEM_ROLE
from server import db
from server.dsr.errors import DsrError, role_of
from server.dsr.people import email_of
from server.dsr.tables import DsrRequest, DsrRequestEvent
from server.gateway import Actor, Gateway
from server.mail import Mailer, MailResult, MailStatus
from server.outbox.service import MailOutbox
from server.settings import Settings

PURPOSE = "compliance"
NOTIFY_JOB = "dsr"

KINDS: dict[str, str] = {
    "access": "access to your data",
    "portability": "a copy of your data to take elsewhere",
    "rectification": "correction of your data",
    "erasure": "erasure of your data",
    "restriction": "restriction of processing",
    "objection": "objection to processing",
}
STATES: dict[str, str] = {
    "received": "received",
    "verified": "identity verified",
    "in_review": "in review",
    "approved": "approved",
    "rejected": "rejected",
    "fulfilled": "fulfilled",
    "closed": "closed",
}
CHANNELS: dict[str, str] = {
    "portal": "Portal",
    "phone": "Phone",
    "letter": "Letter",
    "email": "E-mail",
}
VERIFICATIONS: dict[str, str] = {
    "email_link": "Link sent to the address on file",
    "phone_callback": "Call back to the number on file",
    "id_document": "Identity document checked",
}
# Requests the system opens itself (nobody sent them): offered on no staff form. An
# erasure review when a person's last legal basis lapsed (server/dsr/lapse.py).
LAPSED_CHANNEL = "basis_lapsed"
SYSTEM_CHANNELS: dict[str, str] = {LAPSED_CHANNEL: "No legal basis left"}
NOT_A_PERSON = "not_applicable"
SYSTEM_VERIFICATIONS: dict[str, str] = {NOT_A_PERSON: "Not asked by the person"}
CHANNEL_LABELS = {**CHANNELS, **SYSTEM_CHANNELS}
VERIFICATION_LABELS = {**VERIFICATIONS, **SYSTEM_VERIFICATIONS}
OPENED_BECAUSE: dict[str, str] = {
    "last_consent_withdrawn": "Their last consent was withdrawn",
    "last_consent_expired": "Their last consent expired",
}
REJECTION_REASONS: dict[str, str] = {
    "identity_not_confirmed": "Identity could not be confirmed",
    "manifestly_unfounded": "Manifestly unfounded (Art. 12(5))",
    "excessive": "Excessive or repetitive (Art. 12(5))",
    "legal_obligation": "A legal obligation requires keeping the data",
    "legal_claims": "Needed for legal claims",
    "no_data_held": "No data held about the person",
    "basis_restored": "The person has a legal basis again",
}
EXTENSION_REASONS: dict[str, str] = {
    "complexity": "Complexity of the request",
    "number_of_requests": "Number of requests received",
}

# The only moves a request can make. ``received`` leaves only through verification.
TRANSITIONS: dict[str, frozenset[str]] = {
    "received": frozenset({"verified"}),
    "verified": frozenset({"in_review"}),
    "in_review": frozenset({"approved", "rejected"}),
    "approved": frozenset({"fulfilled"}),
    "rejected": frozenset({"closed"}),
    "fulfilled": frozenset({"closed"}),
    "closed": frozenset(),
}
# Once answered, the deadline no longer runs: such requests are never overdue.
ANSWERED = frozenset({"rejected", "fulfilled", "closed"})
VERBS: dict[str, str] = {
    "verified": "verify",
    "in_review": "review",
    "approved": "approve",
    "rejected": "reject",
    "fulfilled": "fulfil",
    "closed": "close",
}
RESPONSE_MONTHS = 1  # Art. 12(3): one month from receipt ...
MAX_TOTAL_MONTHS = 3  # ... extendable by two further months


class RequestError(DsrError):
    """A request change that cannot be made. ``code`` is machine-readable; the message
    never repeats what the caller sent."""


class RequestNotFound(RequestError):
    def __init__(self) -> None:
        super().__init__("not_found", "no such request")


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """The same day ``months`` calendar months later, or that month's last day."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _code(value: str, allowed: Mapping[str, str], code: str, what: str) -> str:
    if value not in allowed:
        raise RequestError(code, f"unknown {what}; expected one of: {', '.join(allowed)}")
    return value


def _uuid(value: str, code: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise RequestError(code, f"{what} is not a valid id") from None


@dataclass(frozen=True)
class HistoryEntry:
    from_state: str
    to_state: str
    actor_id: str
    at: dt.datetime
    reason: str


@dataclass(frozen=True)
class DataRequest:
    id: str
    subject_id: str
    contact_id: str | None
    kind: str
    state: str
    channel: str
    received_at: dt.datetime
    due_at: dt.datetime
    extended_until: dt.datetime | None
    extension_reason: str
    rejection_reason: str
    verified_at: dt.datetime | None
    verification: str
    updated_at: dt.datetime
    overdue: bool = False
    history: tuple[HistoryEntry, ...] = ()
    opened_because: str = ""  # a system-opened request: why (``OPENED_BECAUSE``)

    @property
    def deadline(self) -> dt.datetime:
        """The date the answer is due: the extended date if there is one."""
        return self.extended_until or self.due_at

    @property
    def open(self) -> bool:
        return self.state not in ANSWERED

    @property
    def next_states(self) -> tuple[str, ...]:
        return tuple(s for s in STATES if s in TRANSITIONS[self.state])

    @property
    def can_extend(self) -> bool:
        return self.open and self.deadline < add_months(self.received_at, MAX_TOTAL_MONTHS)


@dataclass(frozen=True)
class RequestChange:
    """A change that was made, and what happened to the e-mail telling the person."""

    request: DataRequest
    mail: MailResult


def _request_of(row: Mapping[str, Any], now: dt.datetime | None = None) -> DataRequest:
    request = DataRequest(
        id=str(row["id"]),
        subject_id=str(row["subject_id"]),
        contact_id=row["contact_id"],
        kind=str(row["kind"]),
        state=str(row["state"]),
        channel=str(row["channel"]),
        received_at=_utc(row["received_at"]),
        due_at=_utc(row["due_at"]),
        extended_until=_utc(row["extended_until"]) if row["extended_until"] else None,
        extension_reason=str(row["extension_reason"]),
        rejection_reason=str(row["rejection_reason"]),
        verified_at=_utc(row["verified_at"]) if row["verified_at"] else None,
        verification=str(row["verification"]),
        updated_at=_utc(row["updated_at"]),
        opened_because=str(row.get("opened_because") or ""),
    )
    moment = now or _now()
    overdue = request.open and request.deadline < moment
    return DataRequest(**{**request.__dict__, "overdue": overdue})


Fulfiller = Callable[["DataRequest", str], Awaitable[Sequence[str] | None]]
"""Carries out an approved request of one kind (``fulfillers[kind]``): called with the
request and the acting ``by`` id before the request becomes ``fulfilled``. It must be
idempotent (a retry after a crash runs it again) and raise :class:`RequestError` to keep
the request ``approved`` with a reason staff can read. It may return lines for the
e-mail telling the person (e.g. records kept under a legal hold, and until when)."""


class DataSubjectRequests:
    """The only code that writes the request tables. Built once per process."""

    def __init__(
        self,
        gateway: Gateway,
        audit: AuditLog,
        mailer: Mailer,
        settings: Settings,
        *,
        outbox: MailOutbox | None = None,
        fulfillers: Mapping[str, Fulfiller] | None = None,
    ) -> None:
        self._gateway = gateway
        self._audit = audit
        self._mailer = mailer
        self._outbox = outbox  # retries a notice that failed (sealed under the person's key)
        self._controller = settings.controller_name
        self._contact = settings.controller_contact
        # What "fulfilled" means per request kind, from the modules that do it (erasure,
        # export links ...); a kind without one is fulfilled by staff by hand.
        self.fulfillers: Mapping[str, Fulfiller] = dict(fulfillers or {})

    # -- reading -----------------------------------------------------------------------

    async def get(self, request_id: str, *, now: dt.datetime | None = None) -> DataRequest:
        """One request with its full history (oldest first)."""
        key = _uuid(request_id, "not_found", "request")
        row = await DsrRequest.select().where(DsrRequest.id == key).first()
        if row is None:
            raise RequestNotFound()
        events = (
            await DsrRequestEvent.select()
            .where(DsrRequestEvent.request_id == key)
            .order_by(DsrRequestEvent.id)
        )
        history = tuple(
            HistoryEntry(
                from_state=str(e["from_state"]),
                to_state=str(e["to_state"]),
                actor_id=str(e["actor_id"]),
                at=_utc(e["at"]),
                reason=str(e["reason"]),
            )
            for e in events
        )
        request = _request_of(row, now)
        return DataRequest(**{**request.__dict__, "history": history})

    async def queue(
        self,
        *,
        overdue_only: bool = False,
        open_only: bool = False,
        now: dt.datetime | None = None,
    ) -> list[DataRequest]:
        """Requests by effective deadline (soonest first), each flagged when overdue."""
        moment = now or _now()
        query = DsrRequest.select()
        if overdue_only or open_only:
            query = query.where(DsrRequest.state.not_in(list(ANSWERED)))
        requests = [_request_of(row, moment) for row in await query]
        if overdue_only:
            requests = [r for r in requests if r.overdue]
        return sorted(requests, key=lambda r: (r.deadline, r.received_at, r.id))

    async def for_subject(
        self, subject_id: str, *, now: dt.datetime | None = None
    ) -> list[DataRequest]:
        """One person's requests, newest first: what the portal shows them."""
        subject = _uuid(subject_id, "invalid_subject", "subject")
        rows = await DsrRequest.select().where(DsrRequest.subject_id == subject)
        requests = [_request_of(row, now or _now()) for row in rows]
        return sorted(requests, key=lambda r: (r.received_at, r.id), reverse=True)

    # -- changing ----------------------------------------------------------------------

    async def log(
        self,
        subject_id: str,
        kind: str,
        channel: str,
        *,
        verification: str,
        by: str,
        by_role: str = "",
        contact_id: str | None = None,
        received_at: dt.datetime | None = None,
        request_id: str = "",
        notify: bool = True,
        opened_because: str = "",
    ) -> RequestChange:
        """Record a request staff took on the person's behalf (phone, letter, e-mail).

        It starts ``verified``: staff confirmed who they are talking to by
        ``verification`` before logging it. ``contact_id`` is the person's record the
        request was logged through (a contact or a lead, found with
        ``Gateway.locate_people``); notifications go to their own record's address.
        ``received_at`` is when the request reached us (the deadline runs from then); a
        letter read days later still counts from its arrival.
        """
        subject = _uuid(subject_id, "invalid_subject", "subject")
        _code(kind, KINDS, "unknown_kind", "request kind")
        system = channel in SYSTEM_CHANNELS  # opened by the system: says why, asks nobody
        _code(channel, CHANNEL_LABELS, "unknown_channel", "channel")
        allowed = SYSTEM_VERIFICATIONS if system else VERIFICATIONS
        _code(verification, allowed, "unknown_verification", "verification method")
        if system:
            _code(opened_because, OPENED_BECAUSE, "unknown_reason", "reason")
        elif opened_because:
            raise RequestError("unknown_reason", "only a system-opened request has a reason")
        contact = str(_uuid(contact_id, "invalid_contact", "contact")) if contact_id else None
        now = _now()
        received = _utc(received_at) if received_at else now
        if received > now:
            raise RequestError("received_in_future", "a request cannot be received in future")
        key = uuid.uuid4()
        row: dict[str, Any] = {
            "id": key,
            "subject_id": subject,
            "contact_id": contact,
            "kind": kind,
            "state": "verified",
            "channel": channel,
            "received_at": received,
            "due_at": add_months(received, RESPONSE_MONTHS),
            "extended_until": None,
            "extension_reason": "",
            "rejection_reason": "",
            "verified_at": now,
            "verification": verification,
            "updated_at": now,
            "opened_because": opened_because,
        }
        detail: dict[str, int | str] = {"kind": kind, "channel": channel}
        if opened_because:
            detail["because"] = opened_because
        async with db.write_transaction():
            await DsrRequest.insert(DsrRequest(**row)).run()
            await self._record(
                key, str(subject), "", "verified", by, by_role, now, verification, request_id,
                verb="log", detail=detail,
            )  # fmt: skip
        return await self._notify(str(key), send=notify)

    async def transition(
        self,
        request_id: str,
        to_state: str,
        *,
        by: str,
        reason: str = "",
        verification: str = "",
        by_role: str = "",
        audit_request_id: str = "",
        notify: bool = True,
    ) -> RequestChange:
        """Move a request to ``to_state`` if ``TRANSITIONS`` allows it. ``notify=False``
        for the steps of a request answered at once (the portal's download): the person
        gets one e-mail, for the step that completes it, not one per step.

        Every move re-checks that the person's identity was verified; leaving ``received``
        is only possible towards ``verified``, with the ``verification`` method used. A
        rejection needs one of ``REJECTION_REASONS``: the person must be told why.
        """
        _code(to_state, STATES, "unknown_state", "state")
        key = _uuid(request_id, "not_found", "request")
        address: str | None = None
        notes: tuple[str, ...] = ()
        if to_state == "fulfilled":
            request = await self.get(str(key))
            if "fulfilled" not in request.next_states:
                raise RequestError(
                    "transition_not_allowed",
                    f"a request that is {request.state} cannot become fulfilled",
                )
            fulfiller = self.fulfillers.get(request.kind)
            if fulfiller is not None:
                # Read the address first: fulfilling an erasure destroys it, and the person
                # must still be told that their request was carried out.
                address = await self._address_of(request)
                notes = tuple(await fulfiller(request, by) or ())
        now = _now()
        async with db.write_transaction():
            row = await DsrRequest.select().where(DsrRequest.id == key).first()
            if row is None:
                raise RequestNotFound()
            current = str(row["state"])
            if to_state not in TRANSITIONS[current]:
                raise RequestError(
                    "transition_not_allowed",
                    f"a request that is {current} cannot become {to_state}",
                )
            values: dict[Any, Any] = {DsrRequest.state: to_state, DsrRequest.updated_at: now}
            code = ""
            if to_state == "verified":
                code = _code(
                    verification, VERIFICATIONS, "unknown_verification", "verification method"
                )
                values[DsrRequest.verified_at] = now
                values[DsrRequest.verification] = code
            elif row["verified_at"] is None or not row["verification"]:
                raise RequestError("not_verified", "the person's identity is not verified")
            if to_state == "rejected":
                if not reason:
                    raise RequestError("reason_required", "a rejection needs a reason")
                code = _code(reason, REJECTION_REASONS, "unknown_reason", "rejection reason")
                values[DsrRequest.rejection_reason] = code
            await DsrRequest.update(values).where(DsrRequest.id == key)
            await self._record(
                key, str(row["subject_id"]), current, to_state, by, by_role, now, code,
                audit_request_id, verb=VERBS[to_state], detail={"kind": str(row["kind"])},
            )  # fmt: skip
        return await self._notify(str(key), address=address, notes=notes, send=notify)

    async def extend(
        self,
        request_id: str,
        months: int,
        reason: str,
        *,
        by: str,
        by_role: str = "",
        audit_request_id: str = "",
    ) -> RequestChange:
        """Push the deadline back by one or two months (Art. 12(3)), for a stated reason.

        The answer can never be due later than three months after receipt, however the
        extension is split; the person is told the new date.
        """
        if months not in (1, 2):
            raise RequestError("invalid_months", "an extension is one or two months")
        code = _code(reason, EXTENSION_REASONS, "unknown_reason", "extension reason")
        key = _uuid(request_id, "not_found", "request")
        now = _now()
        async with db.write_transaction():
            row = await DsrRequest.select().where(DsrRequest.id == key).first()
            if row is None:
                raise RequestNotFound()
            request = _request_of(row, now)
            if not request.open:
                raise RequestError("already_answered", "an answered request has no deadline")
            if request.verified_at is None:
                raise RequestError("not_verified", "the person's identity is not verified")
            until = add_months(request.deadline, months)
            if until > add_months(request.received_at, MAX_TOTAL_MONTHS):
                raise RequestError(
                    "extension_limit",
                    "the answer cannot be due more than three months after receipt",
                )
            await DsrRequest.update(
                {
                    DsrRequest.extended_until: until,
                    DsrRequest.extension_reason: code,
                    DsrRequest.updated_at: now,
                }
            ).where(DsrRequest.id == key)
            await self._record(
                key, request.subject_id, request.state, request.state, by, by_role, now, code,
                audit_request_id, verb="extend", detail={"kind": request.kind, "months": months},
            )  # fmt: skip
        return await self._notify(str(key))

    async def _record(
        self,
        key: uuid.UUID,
        subject_id: str,
        from_state: str,
        to_state: str,
        by: str,
        by_role: str,
        at: dt.datetime,
        reason: str,
        request_id: str,
        *,
        verb: str,
        detail: dict[str, int | str],
    ) -> None:
        """History row + audit event, inside the caller's transaction."""
        await DsrRequestEvent.insert(
            DsrRequestEvent(
                request_id=key,
                from_state=from_state,
                to_state=to_state,
                actor_id=by,
                at=at,
                reason=reason,
            )
        ).run()
        if from_state:
            detail = {**detail, "from_state": from_state}
        await self._audit.append(
            audit_event(
                actor_id=by,
                actor_role=by_role or role_of(by),
                action=f"dsr.{verb}",
                resource_type="dsr_request",
                resource_id=str(key),
                subject_ids=(subject_id,),
                purpose=PURPOSE,
                outcome=Outcome.ALLOWED,
                reason=reason,
                request_id=request_id,
                detail={**detail, "to_state": to_state},
            )
        )

    # -- telling the person --------------------------------------------------------------

    def message(self, request: DataRequest, notes: Sequence[str] = ()) -> tuple[str, str]:
        """The subject line and text telling the person where their request stands.

        Says the kind, the state and the deadline; names nobody and quotes no data.
        """
        kind = KINDS.get(request.kind, request.kind)
        state = STATES.get(request.state, request.state)
        lines = [
            "Hello,",
            "",
            f"Your request for {kind} (reference {request.id}) is now: {state}.",
        ]
        if request.open:
            lines.append(f"We will answer by {request.deadline:%Y-%m-%d}.")
        if request.extended_until and request.open:
            why = EXTENSION_REASONS.get(request.extension_reason, request.extension_reason)
            lines.append(f"We extended the deadline as the law allows. Reason: {why}.")
        if request.state == "rejected":
            why = REJECTION_REASONS.get(request.rejection_reason, request.rejection_reason)
            lines += [
                f"Reason: {why}.",
                "You may lodge a complaint with a supervisory authority and seek a judicial "
                "remedy.",
            ]
        lines += list(notes)
        lines += ["", f"{self._controller}", f"Contact: {self._contact}".rstrip()]
        subject = f"Your data request: {state}"
        return subject, "\n".join(lines) + "\n"

    async def _notify(
        self,
        request_id: str,
        *,
        address: str | None = None,
        notes: Sequence[str] = (),
        send: bool = True,
    ) -> RequestChange:
        """E-mail the person; the outcome is audited as a code. Never raises.

        ``address`` is one read before a fulfiller ran (an erased person can no longer be
        looked up); otherwise the contact record is read now."""
        request = await self.get(request_id)
        if not send:
            return RequestChange(request, MailResult(MailStatus.SKIPPED, "not_this_step"))
        if request.channel in SYSTEM_CHANNELS:  # the person asked nothing: no letters
            return RequestChange(request, MailResult(MailStatus.SKIPPED, "system_opened"))
        if address:
            subject, text = self.message(request, notes)
            result = await self._mailer.send(address, subject, text)
        else:
            result = await self._send(request)
        async with db.write_transaction():
            await self._audit.append(
                audit_event(
                    actor_id=f"system:{NOTIFY_JOB}",
                    actor_role=SYSTEM_ROLE,
                    action="dsr.notify",
                    resource_type="dsr_request",
                    resource_id=request.id,
                    subject_ids=(request.subject_id,),
                    purpose=PURPOSE,
                    outcome=Outcome.ALLOWED if result.sent else Outcome.ERROR,
                    reason="" if result.sent else result.error,
                    detail={"state": request.state},
                )
            )
        return RequestChange(request, result)

    async def _address_of(self, request: DataRequest) -> str | None:
        """The person's e-mail address from their own record (a contact, or a lead who
        never became one: ``server.dsr.people``), or None."""
        return await email_of(
            self._gateway, Actor.system(NOTIFY_JOB), request.subject_id, purpose=PURPOSE
        )

    async def _send(self, request: DataRequest) -> MailResult:
        address = await self._address_of(request)
        if address is None:
            return MailResult(MailStatus.FAILED, "no_email")
        subject, text = self.message(request)
        if self._outbox is not None:
            return await self._outbox.send(
                address,
                subject,
                text,
                purpose="dsr_notice",
                reference=request.id,
                subject_id=request.subject_id,
            )
        return await self._mailer.send(address, subject, text)
