"""``MailOutbox``: alert and notification e-mails that survive an SMTP outage and a restart.

Write-ahead: a message is stored (sealed, see ``server.outbox.tables``) *before* the first
attempt, so a crash between the two loses nothing. The first attempt runs at once, as
before; if it fails for a reason that may pass (the server down, a timeout, a 4xx), the
row waits ``backoff(attempts)`` - 1, 2, 4 ... minutes, at most 6 hours - and the
background loop (``deliver_due``, every worker, every 30 s) tries again. A row is claimed
by a conditional UPDATE before each attempt, so two workers never send the same message.
After ``MAX_ATTEMPTS`` (about 17 hours in all), or at once for a permanent refusal (a
refused recipient, an invalid message), the row is ``dead``: the failure stays visible
where the caller recorded it. A message sealed under a person erased since is dropped
(``erased``): nobody can read it any more, which is the point of erasure.

When a retry delivers or is given up, the owner of the message's ``purpose`` is told
(``on_settled[purpose](reference, at, error)``: the alert engine marks the alerts).
Each retry is audited (``mail.deliver`` by ``system:mail-outbox``: purpose, attempt,
outcome code; never an address). Logs carry codes and counts only.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import SYSTEM_ROLE
from server import db
from server.gateway.sealing import Sealing
from server.logs import get_logger
from server.mail import NOT_CONFIGURED, Mailer, MailResult, MailStatus
from server.outbox.tables import QueuedMail

log = get_logger("consentry.outbox")

JOB = "mail-outbox"
ACTOR = f"system:{JOB}"
SEAL_LABEL = "mail_outbox.envelope"
FIRST_RETRY = dt.timedelta(minutes=1)
LONGEST_WAIT = dt.timedelta(hours=6)
MAX_ATTEMPTS = 10
CLAIM_FOR = dt.timedelta(minutes=5)  # a worker that dies mid-attempt frees the row then
BATCH = 50
QUEUED, SENT, DEAD = "queued", "sent", "dead"
# Refusals that a retry cannot change; everything else (connect, timeout, TLS, 4xx ...) may.
PERMANENT = frozenset(
    {"invalid_header", "invalid_message", "no_recipients", "smtp_recipients_refused"}
)
# The purpose each kind of message is sent under, for the audit log.
PURPOSES = {
    "alert": "compliance",
    "dsr_notice": "compliance",
    "feedback": "service_communication",  # the CSAT question after a case (server.feedback)
    # The service desk (server.servicedesk): replies to a case, SLA escalations to a lead.
    "support_reply": "customer_support",
    "desk_escalation": "customer_support",
}

Settled = Callable[[str, dt.datetime, str], Awaitable[object]]  # reference, when, error


def backoff(attempts: int) -> dt.timedelta:
    """The wait after ``attempts`` failed attempts: 1, 2, 4 ... minutes, at most 6 hours."""
    wait = FIRST_RETRY * (1 << max(attempts - 1, 0))
    return min(wait, LONGEST_WAIT)


@dataclass(frozen=True)
class DeliveryRun:
    sent: int = 0
    retrying: int = 0
    dead: int = 0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MailOutbox:
    def __init__(
        self,
        mailer: Mailer,
        sealing: Sealing,
        audit: AuditLog,
        *,
        on_settled: Mapping[str, Settled] | None = None,
    ) -> None:
        self._mailer = mailer
        self._sealing = sealing
        self._audit = audit
        # Per purpose, told when a retried message is delivered ("") or given up (the
        # error code).
        self.on_settled: Mapping[str, Settled] = dict(on_settled or {})

    @property
    def enabled(self) -> bool:
        return self._mailer.enabled

    async def send(
        self,
        to: str | Sequence[str],
        subject: str,
        text: str,
        *,
        purpose: str,
        reference: str = "",
        subject_id: str | None = None,
        now: dt.datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> MailResult:
        """Store the message, try it once, and leave it queued if that failed for a
        reason that may pass. ``MailStatus.QUEUED`` (not ``sent``) then says so; the
        error code is the first attempt's."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown mail purpose {purpose!r}")
        if not self._mailer.enabled:
            return NOT_CONFIGURED  # nothing to retry: no server is configured at all
        recipients = [to] if isinstance(to, str) else [a for a in to if a]
        moment = now or _now()
        key = uuid.uuid4()
        sealed_fields: dict[str, Any] = {"to": recipients, "subject": subject, "text": text}
        if headers:  # threading headers (Message-ID ...): kept so a retry sends the same
            sealed_fields["headers"] = dict(headers)
        envelope = json.dumps(sealed_fields)
        sealed = await self._seal(key, subject_id, envelope)
        if sealed is None:
            return MailResult(MailStatus.FAILED, "erased")
        await QueuedMail.insert(
            QueuedMail(
                id=key,
                purpose=purpose,
                reference=reference,
                subject_id=uuid.UUID(subject_id) if subject_id else None,
                envelope=sealed,
                state=QUEUED,
                attempts=0,
                next_attempt_at=moment + CLAIM_FOR,  # claimed by this first attempt
                last_error="",
                created_at=moment,
                updated_at=moment,
            )
        ).run()
        result = await self._mailer.send(recipients, subject, text, headers)
        state = await self._settle(key, 1, result, moment)
        if state == QUEUED:
            return MailResult(MailStatus.QUEUED, result.error, result.refused)
        return result

    async def deliver_due(self, now: dt.datetime | None = None) -> DeliveryRun:
        """Try every queued message whose wait is over (the background loop's job)."""
        moment = now or _now()
        rows = await (
            QueuedMail.select(QueuedMail.id, QueuedMail.next_attempt_at)
            .where((QueuedMail.state == QUEUED) & (QueuedMail.next_attempt_at <= moment))
            .order_by(QueuedMail.next_attempt_at)
            .limit(BATCH)
        )
        sent = retrying = dead = 0
        for row in rows:
            claimed = await (
                QueuedMail.update(
                    {QueuedMail.next_attempt_at: moment + CLAIM_FOR, QueuedMail.updated_at: moment}
                )
                .where(
                    (QueuedMail.id == row["id"])
                    & (QueuedMail.state == QUEUED)
                    & (QueuedMail.next_attempt_at == row["next_attempt_at"])
                )
                .returning(*QueuedMail.all_columns())
            )
            if not claimed:
                continue  # another worker has it
            state = await self._retry(claimed[0], moment)
            sent += state == SENT
            dead += state == DEAD
            retrying += state == QUEUED
        if rows:
            log.info("mail outbox run", sent=sent, retrying=retrying, dead=dead)
        return DeliveryRun(sent, retrying, dead)

    async def pending(self) -> int:
        """Messages still waiting for delivery (the console and /ready may show it)."""
        return int(await QueuedMail.count().where(QueuedMail.state == QUEUED))

    # -- internals -----------------------------------------------------------------------

    async def _retry(self, row: dict[str, Any], moment: dt.datetime) -> str:
        key, attempts = row["id"], int(row["attempts"]) + 1
        subject = str(row["subject_id"]) if row["subject_id"] else None
        envelope = await self._open(key, subject, str(row["envelope"]))
        if envelope is None:  # the person was erased since: nobody can read it, by design
            result = MailResult(MailStatus.FAILED, "erased")
            await self._finish(key, attempts, DEAD, "erased", moment)
            state = DEAD
        else:
            result = await self._mailer.send(
                envelope["to"], envelope["subject"], envelope["text"], envelope.get("headers")
            )
            state = await self._settle(key, attempts, result, moment)
        await self._record(row, subject, attempts, result)
        told = self.on_settled.get(str(row["purpose"]))
        if state != QUEUED and told is not None:
            await told(str(row["reference"]), moment, "" if state == SENT else result.error)
        return state

    async def _settle(
        self, key: uuid.UUID, attempts: int, result: MailResult, moment: dt.datetime
    ) -> str:
        if result.sent:
            await self._finish(key, attempts, SENT, "", moment, sent=True)
            return SENT
        code = result.error or "smtp_error"
        if code in PERMANENT or attempts >= MAX_ATTEMPTS:
            await self._finish(key, attempts, DEAD, code, moment)
            log.warning("mail given up", error=code, attempts=attempts)
            return DEAD
        await QueuedMail.update(
            {
                QueuedMail.attempts: attempts,
                QueuedMail.last_error: code[:32],
                QueuedMail.next_attempt_at: moment + backoff(attempts),
                QueuedMail.updated_at: moment,
            }
        ).where(QueuedMail.id == key)
        return QUEUED

    async def _finish(
        self,
        key: uuid.UUID,
        attempts: int,
        state: str,
        code: str,
        moment: dt.datetime,
        *,
        sent: bool = False,
    ) -> None:
        """Sent or given up: the sealed envelope is no longer needed, so it goes."""
        await QueuedMail.update(
            {
                QueuedMail.state: state,
                QueuedMail.attempts: attempts,
                QueuedMail.last_error: code[:32],
                QueuedMail.envelope: "",
                QueuedMail.updated_at: moment,
                QueuedMail.sent_at: moment if sent else None,
            }
        ).where(QueuedMail.id == key)

    async def _seal(self, key: uuid.UUID, subject_id: str | None, envelope: str) -> str | None:
        if subject_id:
            return await self._sealing.seal_for_subject(subject_id, _label(key), envelope)
        return self._sealing.seal_secret(SEAL_LABEL, str(key), envelope)

    async def _open(
        self, key: uuid.UUID, subject_id: str | None, sealed: str
    ) -> dict[str, Any] | None:
        if subject_id:
            plain = await self._sealing.open_for_subject(subject_id, _label(key), sealed)
        else:
            plain = self._sealing.open_secret(SEAL_LABEL, str(key), sealed)
        if plain is None:
            return None
        loaded: dict[str, Any] = json.loads(plain)
        return loaded

    async def _record(
        self, row: dict[str, Any], subject: str | None, attempts: int, result: MailResult
    ) -> None:
        async with db.write_transaction():
            await self._audit.append(
                audit_event(
                    actor_id=ACTOR,
                    actor_role=SYSTEM_ROLE,
                    action="mail.deliver",
                    resource_type="mail",
                    resource_id=str(row["id"]),
                    subject_ids=(subject,) if subject else (),
                    purpose=PURPOSES.get(str(row["purpose"]), "compliance"),
                    outcome=Outcome.ALLOWED if result.sent else Outcome.ERROR,
                    reason="" if result.sent else (result.error or "smtp_error"),
                    detail={"purpose": str(row["purpose"]), "attempt": attempts},
                )
            )


def _label(key: uuid.UUID) -> str:
    return f"{SEAL_LABEL}|{key}"


class PurposeMail:
    """The outbox seen as a plain mailer for one purpose (what the alert engine is given)."""

    def __init__(self, outbox: MailOutbox, purpose: str) -> None:
        self._outbox = outbox
        self._purpose = purpose

    @property
    def enabled(self) -> bool:
        return self._outbox.enabled

    async def send(
        self, to: Sequence[str], subject: str, text: str, *, reference: str = ""
    ) -> MailResult:
        return await self._outbox.send(
            to, subject, text, purpose=self._purpose, reference=reference
        )
