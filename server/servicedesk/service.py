# Over 800 lines: cases, their conversation, mail replies and the SLA sweep share the desk
# row and its audited events; the SLA sweep (sweep to _breach) is the split to make next
# (issue 18).
"""``ServiceDesk``: cases as conversations, routed to a team's queue, on an SLA clock.

Everything a person wrote or staff wrote about them is a ``case_message`` record written
and read through the gateway (policy, sealing under the person's key, audit). The desk's
own state (``server.servicedesk.tables``) is ids, times and codes. Staff act as
themselves; what the desk does on its own (opening a case from an e-mail, routing,
reopening on a customer's reply, the SLA sweep) is the system actor ``system:service-desk``.

A case opened elsewhere (the Cases form, the REST API) has no desk state until it is
opened on a desk page: it is adopted then (channel ``staff``), routed to the queue of its
team and put on that queue's SLA clock from its creation time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import make_msgid
from typing import TYPE_CHECKING, Any

from audit.events import Outcome, audit_event
from server import db
from server.auth.tables import StaffUser
from server.datamap import CASE_KINDS, PRIORITIES
from server.gateway import Actor, GatewayError, NotFound, Record
from server.logs import get_logger
from server.mail import MailResult, MailStatus
from server.servicedesk.detection import request_kind
from server.servicedesk.hours import BusinessCalendar, CalendarError, calendar_from
from server.servicedesk.tables import (
    DeskCase,
    DeskQueue,
    MailThread,
    PortalPost,
    SlaPolicy,
)

if TYPE_CHECKING:
    from audit.log import AuditLog
    from policy.enforcer import PolicyEngine
    from server.dsr.requests import DataSubjectRequests
    from server.gateway import Gateway
    from server.outbox.service import MailOutbox
    from server.settings import Settings

log = get_logger("consentry.servicedesk")

DESK_JOB = "service-desk"
PURPOSE = "customer_support"
REF_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud on the phone
REF_LENGTH = 8
REF_PATTERN = re.compile(r"\[#(C-[A-HJ-NP-Z2-9]{8})\]")
PUBLIC_KINDS = ("email", "portal", "reply")  # what the person sees; notes are internal
CUSTOMER_KINDS = ("email", "portal")
OPEN_STATES = ("open", "pending")
DONE_STATES = ("resolved", "closed")
ROUTINGS = ("round_robin", "least_loaded")
SWEEP_BATCH = 200
CONVERSATION_LIMIT = 100  # messages shown on a case page, newest 100
PORTAL_POSTS_PER_HOUR = 10
MESSAGE_MAX = 20000
TITLE_MAX = 200
MAIL_PURPOSE = "support_reply"
ESCALATION_PURPOSE = "desk_escalation"
THREAD_KEY_LABEL = b"consentry/servicedesk/message-id/v1"
NO_DEADLINE = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)


class DeskError(Exception):
    """A desk action that cannot be done; the message is for people and quotes nothing
    anyone typed."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Message:
    id: str
    kind: str
    body: str
    created_at: dt.datetime
    owner_id: int


@dataclass(frozen=True)
class ReplyResult:
    message_id: str
    mail: MailResult | None  # None: the person has no e-mail address on file


@dataclass(frozen=True)
class SweepRun:
    warned: int = 0
    breached: int = 0
    escalated: int = 0
    closed: int = 0
    dropped: int = 0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_ref() -> str:
    return "C-" + "".join(secrets.choice(REF_ALPHABET) for _ in range(REF_LENGTH))


def ref_in(subject: str) -> str | None:
    """The case reference written in a subject line ("Re: Broken [#C-7KQ2M9XD]")."""
    found = REF_PATTERN.search(subject.upper())
    return found.group(1) if found else None


def normalized_message_id(value: str) -> str:
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    return value.strip().lower()


def _targets(policy: Mapping[str, Any] | None, priority: str) -> tuple[int | None, int | None]:
    if policy is None:
        return None, None
    try:
        targets = json.loads(str(policy["targets"]) or "{}").get(priority) or {}
    except (json.JSONDecodeError, AttributeError):
        return None, None
    first, resolution = targets.get("first_response"), targets.get("resolution")
    return (
        int(first) if isinstance(first, int) else None,
        int(resolution) if isinstance(resolution, int) else None,
    )


def _calendar(policy: Mapping[str, Any]) -> BusinessCalendar:
    return calendar_from(str(policy["time_zone"]), str(policy["hours"]), str(policy["holidays"]))


class ServiceDesk:
    """Built once by ``build_services`` (it holds nothing per request: cases, queues and
    allowances live in the database)."""

    def __init__(
        self,
        gateway: Gateway,
        audit: AuditLog,
        outbox: MailOutbox | None,
        settings: Settings,
        policy: PolicyEngine,
        requests: DataSubjectRequests,
    ) -> None:
        self._gateway = gateway
        self._audit = audit
        self._outbox = outbox
        self._settings = settings
        self._policy = policy
        self._requests = requests
        self.actor = Actor.system(DESK_JOB)
        self._thread_key = gateway.derived_key(THREAD_KEY_LABEL)

    # -- queues and routing --------------------------------------------------------------

    async def queue_for_team(self, team: str) -> dict[str, Any] | None:
        row = await DeskQueue.select().where(DeskQueue.team == team).first()
        if row is None:  # a team without its own queue: the first queue, if any
            row = await DeskQueue.select().order_by(DeskQueue.id).first()
        return row

    async def sla_policy(self, policy_id: int | None) -> dict[str, Any] | None:
        if policy_id is None:
            return None
        return await SlaPolicy.select().where(SlaPolicy.id == policy_id).first()

    async def agents(self, team: str) -> list[int]:
        """Active staff of ``team`` whose role works the desk (policy), by id."""
        rows = await (
            StaffUser.select(StaffUser.id, StaffUser.role)
            .where((StaffUser.team == team) & StaffUser.is_active.eq(True))
            .order_by(StaffUser.id)
        )
        return [
            int(r["id"])
            for r in rows
            if self._policy.allows(str(r["role"]), "service_desk", "work")
        ]

    async def route(self, queue: Mapping[str, Any]) -> int | None:
        """The agent a new case goes to: the next after the last one (round robin) or
        the one with the fewest open cases (least loaded; ties to the lowest id)."""
        agents = await self.agents(str(queue["team"]))
        if not agents:
            return None
        if queue["routing"] == "least_loaded":
            rows = await DeskCase.select(DeskCase.assignee_id).where(
                DeskCase.assignee_id.is_in(agents) & DeskCase.state.is_in(list(OPEN_STATES))
            )
            load = dict.fromkeys(agents, 0)
            for row in rows:
                load[int(row["assignee_id"])] += 1
            chosen = min(agents, key=lambda a: (load[a], a))
        else:
            last = queue["last_assigned_id"]
            later = [a for a in agents if last is None or a > int(last)]
            chosen = later[0] if later else agents[0]
        await DeskQueue.update(
            {DeskQueue.last_assigned_id: chosen, DeskQueue.updated_at: _now()}
        ).where(DeskQueue.id == queue["id"])
        return chosen

    # -- opening cases -------------------------------------------------------------------

    async def open_case(
        self,
        contact_id: str,
        *,
        title: str,
        channel: str,
        kind: str = "service_request",
        description: str | None = None,
        priority: str = "normal",
        first_message: str | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[Record, dict[str, Any]]:
        """A new case about the contact, routed to their team's queue, on its SLA clock.
        ``first_message``: an e-mail's text, kept as the conversation's first message."""
        if kind not in CASE_KINDS:
            raise DeskError("unknown_kind", "Choose what the case is about.")
        if priority not in PRIORITIES:
            raise DeskError("unknown_priority", "Choose a priority.")
        moment = now or _now()
        contact = await self._gateway.read(
            self.actor, "contact", contact_id, purpose=PURPOSE, fields=("first_name",)
        )
        queue = await self.queue_for_team(contact.team)
        team = str(queue["team"]) if queue else contact.team
        assignee = await self.route(queue) if queue else None
        values: dict[str, Any] = {
            "title": " ".join(title.split())[:TITLE_MAX] or "(no subject)",
            "kind": kind,
            "priority": priority,
            "status": "open",
            "contact_id": contact_id,
        }
        if description:
            values["description"] = description[:5000]
        case = await self._gateway.create(
            self.actor, "case", values, purpose=PURPOSE, owner_id=assignee, team=team
        )
        desk = await self._adopt(case, queue, channel, assignee, moment)
        if first_message:
            await self._add(self.actor, case, first_message, "email", moment)
        return case, desk

    async def _adopt(
        self,
        case: Record,
        queue: Mapping[str, Any] | None,
        channel: str,
        assignee: int | None,
        opened: dt.datetime,
    ) -> dict[str, Any]:
        priority = str(case.values.get("priority") or "normal")
        policy = await self.sla_policy(queue["sla_policy_id"] if queue else None)
        first_due = resolution_due = None
        sla = "none"
        first, resolution = _targets(policy, priority)
        if policy is not None and (first is not None or resolution is not None):
            try:
                calendar = _calendar(policy)
                first_due = calendar.add(opened, first) if first is not None else None
                resolution_due = (
                    calendar.add(opened, resolution) if resolution is not None else None
                )
                sla = "ok"
            except CalendarError:
                log.warning("sla policy unusable", policy=int(policy["id"]))
        row = DeskCase(
            case_id=uuid.UUID(case.id),
            case_ref=new_ref(),
            subject_id=uuid.UUID(case.subject_id),
            contact_id=uuid.UUID(str(case.values.get("contact_id") or case.id)),
            queue_id=queue["id"] if queue else None,
            team=str(queue["team"]) if queue else case.team,
            assignee_id=assignee,
            channel=channel,
            priority=priority,
            state=str(case.values.get("status") or "open"),
            opened_at=opened,
            first_response_due=first_due,
            next_due=first_due or resolution_due or NO_DEADLINE,
            resolution_due=resolution_due,
            sla=sla,
            dsr_kind="",
            dsr_request_id="",
            updated_at=opened,
        )
        for _ in range(5):  # a clash of random references is rare; try another
            try:
                await DeskCase.insert(row).run()
                break
            except Exception as exc:  # unique violation on ref (engine-specific type)
                existing = await DeskCase.select().where(DeskCase.case_id == row.case_id).first()
                if existing is not None:
                    return existing
                log.info("case reference clash", error=type(exc).__name__)
                row.case_ref = new_ref()
        else:
            raise DeskError("no_reference", "Could not give the case a reference.", 503)
        if resolution_due is not None:
            await self._gateway.update(
                self.actor, "case", case.id, {"due_at": resolution_due.isoformat()}, purpose=PURPOSE
            )
        stored = await DeskCase.select().where(DeskCase.case_id == row.case_id).first()
        assert stored is not None
        return stored

    async def desk_of(self, case: Record) -> dict[str, Any]:
        """The desk state of a case the caller has already read; adopted if it has none."""
        row = await DeskCase.select().where(DeskCase.case_id == uuid.UUID(case.id)).first()
        if row is not None:
            return row
        queue = await self.queue_for_team(case.team)
        return await self._adopt(case, queue, "staff", case.owner_id or None, case.created_at)

    async def adopt_open_cases(self, actor: Actor) -> int:
        """Put on the desk the open cases ``actor`` may list that were opened elsewhere
        (the Cases form, the REST API): routed to their team's queue, on its SLA clock
        from their creation. The newest 100 per call (one audited list)."""
        page = await self._gateway.list(
            actor, "case", purpose=PURPOSE, filters={"status": "open"}, page_size=100
        )
        ids = [uuid.UUID(case.id) for case in page.items]
        if not ids:
            return 0
        rows = await DeskCase.select(DeskCase.case_id).where(DeskCase.case_id.is_in(ids))
        known = {str(row["case_id"]) for row in rows}
        adopted = 0
        for case in page.items:
            if case.id in known or case.erased:
                continue
            queue = await self.queue_for_team(case.team)
            await self._adopt(case, queue, "staff", case.owner_id or None, case.created_at)
            adopted += 1
        return adopted

    async def desk_row(self, case_id: str) -> dict[str, Any] | None:
        try:
            key = uuid.UUID(case_id)
        except ValueError:
            return None
        return await DeskCase.select().where(DeskCase.case_id == key).first()

    async def desk_by_ref(self, ref: str) -> dict[str, Any] | None:
        return await DeskCase.select().where(DeskCase.case_ref == ref).first()

    # -- the conversation ----------------------------------------------------------------

    async def _add(
        self, actor: Actor, case: Record, body: str, kind: str, now: dt.datetime | None = None
    ) -> Record:
        text = body.strip()
        if not text:
            raise DeskError("empty_message", "Write a message first.")
        team = case.team if case.team != actor.team else None
        message = await self._gateway.create(
            actor,
            "case_message",
            {"body": text[:MESSAGE_MAX], "kind": kind, "case_id": case.id},
            purpose=PURPOSE,
            team=team,
        )
        if kind in CUSTOMER_KINDS:
            await self._from_customer(case, message, text, now or _now())
        return message

    async def conversation(
        self, actor: Actor, case_id: str, *, public_only: bool = False
    ) -> list[Message]:
        """The case's messages, oldest first (the newest ``CONVERSATION_LIMIT``), read
        through the gateway as ``actor``; ``public_only`` leaves internal notes out."""
        page = await self._gateway.list(
            actor,
            "case_message",
            purpose=PURPOSE,
            filters={"case_id": case_id},
            page_size=CONVERSATION_LIMIT,
        )
        messages = [
            Message(
                m.id,
                str(m.values.get("kind") or ""),
                str(m.values.get("body") or ""),
                m.created_at,
                m.owner_id,
            )
            for m in page.items
            if not public_only or m.values.get("kind") in PUBLIC_KINDS
        ]
        return sorted(messages, key=lambda m: (m.created_at, m.id))

    async def note(self, actor: Actor, case_id: str, body: str) -> Record:
        """An internal note: staff only, never shown in the portal or e-mailed."""
        case = await self._gateway.read(actor, "case", case_id, purpose=PURPOSE)
        await self.desk_of(case)
        return await self._add(actor, case, body, "note")

    async def reply(
        self, actor: Actor, case_id: str, body: str, *, now: dt.datetime | None = None
    ) -> ReplyResult:
        """A reply to the person: recorded on the case, e-mailed to the address on their
        record through the mail outbox (retried until delivered), with the case reference
        in the subject and a Message-ID the person's answer will point back to."""
        moment = now or _now()
        case = await self._gateway.read(actor, "case", case_id, purpose=PURPOSE)
        desk = await self.desk_of(case)
        message = await self._add(actor, case, body, "reply", moment)
        changes: dict[Any, Any] = {DeskCase.updated_at: moment}
        if desk["first_response_at"] is None:
            changes[DeskCase.first_response_at] = moment
            changes[DeskCase.next_due] = desk["resolution_due"] or NO_DEADLINE
            if desk["sla"] == "warning":
                changes[DeskCase.sla] = "ok"
        if desk["state"] == "open":
            changes[DeskCase.state] = "pending"
            await self._set_status(case.id, "pending")
        await DeskCase.update(changes).where(DeskCase.case_id == uuid.UUID(case.id))
        mail = await self._mail_reply(case, desk, body.strip(), message.id)
        return ReplyResult(message.id, mail)

    async def _mail_reply(
        self, case: Record, desk: Mapping[str, Any], body: str, message_id: str
    ) -> MailResult | None:
        contact_id = str(case.values.get("contact_id") or desk["contact_id"])
        try:
            person = await self._gateway.read(
                self.actor, "contact", contact_id, purpose=PURPOSE, fields=("email",)
            )
        except GatewayError:
            return None
        address = person.values.get("email")
        if not address:
            return None
        if self._outbox is None:
            return MailResult(MailStatus.NOT_CONFIGURED, "smtp_not_configured")
        domain = self._settings.mail_from.rpartition("@")[2].strip("> ") or "localhost"
        mid = make_msgid(idstring=desk["case_ref"].replace("-", ""), domain=domain)
        await self.remember_message_id(case.id, mid)
        title = " ".join(str(case.values.get("title") or "").split())[:150]
        text = (
            f"{body}\n\n--\nReply to this e-mail to add to your case {desk['case_ref']}; "
            f"keep [#{desk['case_ref']}] in the subject.\n"
            f"You can also follow it in {self._settings.public_url.rstrip('/')}/portal\n"
        )
        return await self._outbox.send(
            str(address),
            f"Re: {title} [#{desk['case_ref']}]",
            text,
            purpose=MAIL_PURPOSE,
            reference=message_id,
            subject_id=case.subject_id,
            headers={"Message-ID": mid},
        )

    def _digest(self, message_id: str) -> str:
        return hmac.new(
            self._thread_key, normalized_message_id(message_id).encode(), hashlib.sha256
        ).hexdigest()

    async def remember_message_id(self, case_id: str, message_id: str) -> None:
        if not normalized_message_id(message_id):
            return
        digest = self._digest(message_id)
        found = await MailThread.select(MailThread.id).where(MailThread.digest == digest).first()
        if found is None:
            await MailThread.insert(
                MailThread(digest=digest, case_id=uuid.UUID(case_id), created_at=_now())
            ).run()

    async def case_of_message_ids(self, message_ids: Sequence[str]) -> str | None:
        digests = [self._digest(m) for m in message_ids if normalized_message_id(m)][:50]
        if not digests:
            return None
        row = await (
            MailThread.select(MailThread.case_id)
            .where(MailThread.digest.is_in(digests))
            .order_by(MailThread.id, ascending=False)
            .first()
        )
        return str(row["case_id"]) if row else None

    async def customer_wrote(
        self, case_id: str, body: str, kind: str, *, now: dt.datetime | None = None
    ) -> Record:
        """A message from the person (an e-mail, or the portal) on their case; reopens a
        case that waited for them or was resolved."""
        if kind not in CUSTOMER_KINDS:
            raise DeskError("unknown_kind", "Not a customer message.")
        case = await self._gateway.read(self.actor, "case", case_id, purpose=PURPOSE)
        await self.desk_of(case)
        return await self._add(self.actor, case, body, kind, now)

    async def _from_customer(
        self, case: Record, message: Record, text: str, moment: dt.datetime
    ) -> None:
        changes: dict[Any, Any] = {DeskCase.last_customer_at: moment, DeskCase.updated_at: moment}
        desk = await DeskCase.select().where(DeskCase.case_id == uuid.UUID(case.id)).first()
        if desk is not None and desk["state"] != "open":
            changes[DeskCase.state] = "open"
            changes[DeskCase.resolved_at] = None
            await self._set_status(case.id, "open")
        await DeskCase.update(changes).where(DeskCase.case_id == uuid.UUID(case.id))
        await self.flag_if_request(case, message.id, text, moment)

    async def flag_if_request(
        self, case: Record, message_id: str | None, text: str, now: dt.datetime | None = None
    ) -> str | None:
        """Flag the case for compliance if the text reads like a data-subject request
        (the first such message flags; the kind is kept, never the text)."""
        kind = request_kind(str(case.values.get("title") or ""), text)
        if kind is None:
            return None
        moment = now or _now()
        async with db.write_transaction():
            changed = await (
                DeskCase.update(
                    {
                        DeskCase.dsr_kind: kind,
                        DeskCase.dsr_message_id: uuid.UUID(message_id) if message_id else None,
                        DeskCase.dsr_flagged_at: moment,
                        DeskCase.updated_at: moment,
                    }
                )
                .where((DeskCase.case_id == uuid.UUID(case.id)) & (DeskCase.dsr_kind == ""))
                .returning(DeskCase.case_id)
            )
            if changed:
                await self._event("desk.dsr_flag", case, detail={"kind": kind})
        return kind if changed else None

    async def _set_status(self, case_id: str, status: str) -> None:
        await self._gateway.update(self.actor, "case", case_id, {"status": status}, purpose=PURPOSE)

    async def set_state(self, actor: Actor, case_id: str, state: str) -> None:
        """Staff move a case: open, pending, resolved or closed (the case record's status
        changes through the gateway as them)."""
        if state not in (*OPEN_STATES, *DONE_STATES):
            raise DeskError("unknown_state", "Choose a state.")
        case = await self._gateway.read(actor, "case", case_id, purpose=PURPOSE)
        desk = await self.desk_of(case)
        await self._gateway.update(actor, "case", case_id, {"status": state}, purpose=PURPOSE)
        moment = _now()
        changes: dict[Any, Any] = {DeskCase.state: state, DeskCase.updated_at: moment}
        if state in DONE_STATES and desk["resolved_at"] is None:
            changes[DeskCase.resolved_at] = moment
            if desk["sla"] in {"ok", "warning"}:
                changes[DeskCase.sla] = "met"
        elif state in OPEN_STATES:
            changes[DeskCase.resolved_at] = None
        await DeskCase.update(changes).where(DeskCase.case_id == uuid.UUID(case_id))

    async def assign(self, actor: Actor, case_id: str, user_id: int) -> None:
        """Hand a case to an agent of its team (the record's owner changes as ``actor``,
        so the ownership rules of the policy apply)."""
        case = await self._gateway.read(actor, "case", case_id, purpose=PURPOSE)
        desk = await self.desk_of(case)
        if user_id not in await self.agents(str(desk["team"])):
            raise DeskError("not_an_agent", "Choose someone of the case's team.")
        await self._gateway.update(actor, "case", case_id, {}, purpose=PURPOSE, owner_id=user_id)
        await DeskCase.update({DeskCase.assignee_id: user_id, DeskCase.updated_at: _now()}).where(
            DeskCase.case_id == uuid.UUID(case_id)
        )

    # -- queue views ---------------------------------------------------------------------

    async def queue_page(
        self,
        *,
        assignee: int | None = None,
        team: str | None = None,
        states: Sequence[str] = OPEN_STATES,
        sort: str = "due",
        page: int = 1,
        page_size: int = 25,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of desk rows (ids, times, codes) and the total: the caller reads each
        case through the gateway as the user, which applies their record scope again."""
        where: Any = DeskCase.state.is_in(list(states))
        if assignee is not None:
            where = where & (DeskCase.assignee_id == assignee)
        if team is not None:
            where = where & (DeskCase.team == team)
        total = int(await DeskCase.count().where(where))
        query = DeskCase.select().where(where)
        if sort == "opened":
            query = query.order_by(DeskCase.opened_at, ascending=False)
        elif sort == "breached":
            query = query.order_by(DeskCase.breached_at, ascending=False)
        else:  # the nearest running deadline first
            query = query.order_by(DeskCase.next_due)
        rows = (
            await query.order_by(DeskCase.case_id).limit(page_size).offset((page - 1) * page_size)
        )
        return list(rows), total

    # -- the data-subject-request flag ---------------------------------------------------

    async def flagged(self, *, open_only: bool = True, limit: int = 100) -> list[dict[str, Any]]:
        query = DeskCase.select(
            DeskCase.case_id,
            DeskCase.case_ref,
            DeskCase.dsr_kind,
            DeskCase.dsr_flagged_at,
            DeskCase.dsr_request_id,
            DeskCase.channel,
            DeskCase.team,
        ).where(DeskCase.dsr_kind != "")
        if open_only:
            query = query.where(DeskCase.dsr_request_id == "")
        return list(await query.order_by(DeskCase.dsr_flagged_at).limit(limit))

    async def open_request(
        self, actor: Actor, case_id: str, verification: str, *, request_id: str = ""
    ) -> str:
        """Open the data-subject request a flagged case reads like (compliance, one
        click): the person, kind and time received come from the flag."""
        try:
            key = uuid.UUID(case_id)
        except ValueError:
            raise DeskError("not_found", "No such flag.", 404) from None
        row = await DeskCase.select().where(DeskCase.case_id == key).first()
        if row is None or not row["dsr_kind"]:
            raise DeskError("not_found", "No such flag.", 404)
        if row["dsr_request_id"]:
            return str(row["dsr_request_id"])
        channel = "portal" if row["channel"] == "portal" else "email"
        change = await self._requests.log(
            str(row["subject_id"]),
            str(row["dsr_kind"]),
            channel,
            verification=verification,
            by=actor.id,
            by_role=actor.role,
            contact_id=str(row["contact_id"]),
            received_at=row["dsr_flagged_at"],
            request_id=request_id,
        )
        await DeskCase.update(
            {DeskCase.dsr_request_id: change.request.id, DeskCase.updated_at: _now()}
        ).where(DeskCase.case_id == key)
        return change.request.id

    async def dismiss_flag(self, actor: Actor, case_id: str) -> None:
        """Not a request after all: the flag goes (audited, with the kind it had)."""
        row = await DeskCase.select().where(DeskCase.case_id == uuid.UUID(case_id)).first()
        if row is None or not row["dsr_kind"] or row["dsr_request_id"]:
            raise DeskError("not_found", "No such flag.", 404)
        async with db.write_transaction():
            await DeskCase.update(
                {DeskCase.dsr_kind: "", DeskCase.dsr_message_id: None, DeskCase.updated_at: _now()}
            ).where(DeskCase.case_id == row["case_id"])
            await self._audit.append(
                audit_event(
                    actor_id=actor.id,
                    actor_role=actor.role,
                    action="desk.dsr_flag_dismissed",
                    resource_type="case",
                    resource_id=str(row["case_id"]),
                    subject_ids=(str(row["subject_id"]),),
                    purpose="compliance",
                    outcome=Outcome.ALLOWED,
                    detail={"kind": str(row["dsr_kind"])},
                )
            )

    # -- portal --------------------------------------------------------------------------

    async def portal_allowance(self, subject_id: str, now: dt.datetime | None = None) -> bool:
        """Whether the person may post again now (``PORTAL_POSTS_PER_HOUR``); counts it."""
        moment = now or _now()
        subject = uuid.UUID(subject_id)
        recent = await PortalPost.count().where(
            (PortalPost.subject_id == subject) & (PortalPost.at > moment - dt.timedelta(hours=1))
        )
        if int(recent) >= PORTAL_POSTS_PER_HOUR:
            return False
        await PortalPost.insert(PortalPost(subject_id=subject, at=moment)).run()
        return True

    async def cases_of_contact(self, contact_id: str) -> list[tuple[Record, dict[str, Any]]]:
        page = await self._gateway.list(
            self.actor, "case", purpose=PURPOSE, filters={"contact_id": contact_id}, page_size=100
        )
        found: list[tuple[Record, dict[str, Any]]] = []
        for case in page.items:
            found.append((case, await self.desk_of(case)))
        return found

    async def case_of_contact(self, contact_id: str, case_id: str) -> tuple[Record, dict[str, Any]]:
        """A case of this contact, or ``DeskError`` 404 (someone else's case does not
        exist for them)."""
        try:
            case = await self._gateway.read(self.actor, "case", case_id, purpose=PURPOSE)
        except (NotFound, GatewayError):
            raise DeskError("not_found", "No such case.", 404) from None
        if str(case.values.get("contact_id")) != contact_id or case.erased:
            raise DeskError("not_found", "No such case.", 404)
        return case, await self.desk_of(case)

    # -- SLA sweep -----------------------------------------------------------------------

    async def sweep(self, now: dt.datetime | None = None) -> SweepRun:
        """Flag warnings and breaches of the cases whose time has come and escalate
        breaches to the queue's team lead; drop the desk state of erased cases. Bounded:
        the ``SWEEP_BATCH`` cases due soonest per run."""
        moment = now or _now()
        await PortalPost.delete().where(PortalPost.at < moment - dt.timedelta(days=1))
        rows = await (
            DeskCase.select()
            .where(
                DeskCase.state.is_in(list(OPEN_STATES))
                & DeskCase.sla.is_in(["ok", "warning"])
                & (DeskCase.next_due < NO_DEADLINE)
            )
            .order_by(DeskCase.next_due)
            .limit(SWEEP_BATCH)
        )
        warned = breached = escalated = closed = dropped = 0
        policies: dict[int, dict[str, Any] | None] = {}
        queues: dict[int, dict[str, Any] | None] = {}
        for row in rows:
            queue_id = row["queue_id"]
            if queue_id is None:
                continue
            if queue_id not in queues:
                queues[queue_id] = await DeskQueue.select().where(DeskQueue.id == queue_id).first()
            queue = queues[queue_id]
            policy_id = queue["sla_policy_id"] if queue else None
            if policy_id is None:
                continue
            if policy_id not in policies:
                policies[policy_id] = await self.sla_policy(policy_id)
            policy = policies[policy_id]
            if policy is None:
                continue
            target, due = self._running_target(row)
            if due is None:
                continue
            warn_at = self._warning_time(policy, row, target, due)
            if moment < warn_at or (row["sla"] == "warning" and moment < due):
                continue
            # Something changes: check the case is still there and still open first.
            status = await self._live_status(str(row["case_id"]))
            if status is None:
                await self._drop(row["case_id"])
                dropped += 1
                continue
            if status in DONE_STATES:
                await DeskCase.update(
                    {DeskCase.state: status, DeskCase.resolved_at: moment, DeskCase.sla: "met"}
                ).where(DeskCase.case_id == row["case_id"])
                closed += 1
                continue
            if moment >= due:
                told = await self._breach(row, queue, target, moment)
                breached += told >= 0
                escalated += told > 0
            else:
                warned += await self._warn(row, target, moment)
        if rows:
            log.info(
                "sla sweep",
                cases=len(rows),
                warned=warned,
                breached=breached,
                escalated=escalated,
                closed=closed,
                dropped=dropped,
            )
        return SweepRun(warned, breached, escalated, closed, dropped)

    @staticmethod
    def _running_target(row: Mapping[str, Any]) -> tuple[str, dt.datetime | None]:
        if row["first_response_at"] is None and row["first_response_due"] is not None:
            return "first_response", row["first_response_due"]
        return "resolution", row["resolution_due"]

    @staticmethod
    def _warning_time(
        policy: Mapping[str, Any], row: Mapping[str, Any], target: str, due: dt.datetime
    ) -> dt.datetime:
        """When ``warn_percent`` of the target's business time has passed."""
        first, resolution = _targets(policy, str(row["priority"]))
        minutes = first if target == "first_response" else resolution
        if minutes is None:
            return due
        share = max(0, min(100, int(policy["warn_percent"])))
        try:
            return _calendar(policy).add(row["opened_at"], minutes * share // 100)
        except CalendarError:
            return due

    async def _live_status(self, case_id: str) -> str | None:
        try:
            case = await self._gateway.read(
                self.actor, "case", case_id, purpose=PURPOSE, fields=("status",)
            )
        except GatewayError:
            return None
        return None if case.erased else str(case.values.get("status") or "open")

    async def _drop(self, case_id: uuid.UUID) -> None:
        await MailThread.delete().where(MailThread.case_id == case_id)
        await DeskCase.delete().where(DeskCase.case_id == case_id)

    @staticmethod
    def _unchanged(row: Mapping[str, Any]) -> Any:
        """The row as this sweep read it: a change is made only if no other worker made
        it first (a conditional update), so a lead is told once."""
        return (DeskCase.case_id == row["case_id"]) & (DeskCase.sla == row["sla"])

    async def _warn(self, row: Mapping[str, Any], target: str, moment: dt.datetime) -> bool:
        async with db.write_transaction():
            changed = await (
                DeskCase.update(
                    {
                        DeskCase.sla: "warning",
                        DeskCase.warned_at: moment,
                        DeskCase.updated_at: moment,
                    }
                )
                .where(self._unchanged(row))
                .returning(DeskCase.case_id)
            )
            if changed:
                await self._event_row("desk.sla_warning", row, {"target": target})
        return bool(changed)

    async def _breach(
        self,
        row: Mapping[str, Any],
        queue: Mapping[str, Any] | None,
        target: str,
        moment: dt.datetime,
    ) -> int:
        lead = queue["lead_id"] if queue else None
        async with db.write_transaction():
            changed = await (
                DeskCase.update(
                    {
                        DeskCase.sla: "breached",
                        DeskCase.breached_at: moment,
                        DeskCase.escalated_to: lead,
                        DeskCase.updated_at: moment,
                    }
                )
                .where(self._unchanged(row))
                .returning(DeskCase.case_id)
            )
            if changed:
                await self._event_row(
                    "desk.sla_breach", row, {"target": target, "escalated": int(lead is not None)}
                )
        if not changed:
            return -1  # another worker flagged it
        if lead is None:
            return 0
        await self._tell_lead(int(lead), row, target, moment)
        return 1

    async def _tell_lead(
        self, lead: int, row: Mapping[str, Any], target: str, moment: dt.datetime
    ) -> None:
        """E-mail the team lead: the reference, the target and a link; nothing the
        person wrote and not who they are."""
        if self._outbox is None:
            return
        person = await StaffUser.select(StaffUser.email).where(StaffUser.id == lead).first()
        if person is None:
            return
        words = "first response" if target == "first_response" else "resolution"
        link = f"{self._settings.public_url.rstrip('/')}/desk/cases/{row['case_id']}"
        await self._outbox.send(
            str(person["email"]),
            f"SLA breached: case {row['case_ref']} ({words})",
            f"Case {row['case_ref']} missed its {words} target at {moment:%Y-%m-%d %H:%M} UTC.\n"
            f"It was escalated to you as the team lead.\n\nOpen the case: {link}\n",
            purpose=ESCALATION_PURPOSE,
            reference=str(row["case_id"]),
        )

    async def _event(self, action: str, case: Record, detail: dict[str, Any]) -> None:
        await self._audit.append(
            audit_event(
                actor_id=self.actor.id,
                actor_role=self.actor.role,
                action=action,
                resource_type="case",
                resource_id=case.id,
                subject_ids=(case.subject_id,),
                purpose=PURPOSE,
                outcome=Outcome.ALLOWED,
                detail=detail,
            )
        )

    async def _event_row(self, action: str, row: Mapping[str, Any], detail: dict[str, Any]) -> None:
        await self._audit.append(
            audit_event(
                actor_id=self.actor.id,
                actor_role=self.actor.role,
                action=action,
                resource_type="case",
                resource_id=str(row["case_id"]),
                subject_ids=(str(row["subject_id"]),),
                purpose=PURPOSE,
                outcome=Outcome.ALLOWED,
                detail=detail,
            )
        )
