"""Erasing one person (Art. 17): resumable, idempotent, honest about what was kept.

The steps, in this order, each recorded in ``erasure_job`` once it is complete:

1. ``mentions`` - scrub the person's names, e-mail addresses and phone numbers from the
   free text of other people's records. It needs the person's values, so it must happen
   while their key still exists; the job remembers it did, because after step 3 it could
   not be done again.
2. ``records`` - every record carrying their subject id becomes a tombstone (encrypted
   columns and blind indexes cleared; ids and business columns kept), except the record
   types under an active legal hold. With a hold the step stays open, the person is
   restricted instead (Art. 18) and the job waits in state ``held``.
3. ``keys`` - their data keys are shredded: any copy left anywhere becomes unreadable.

A crash at any point leaves the job ``running`` (or ``held``); running the erasure again
skips the finished steps and repeats the rest, each of which finds its own work done.
Only when all three are done is success reported. Erasing an erased person is a no-op.
The gateway does the touching (only it may); this module decides the order.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import SYSTEM_ROLE
from server import db
from server.analytics.store import forget_scores
from server.dsr.errors import DsrError
from server.dsr.holds import Hold, LegalHolds
from server.dsr.requests import DataRequest, RequestError
from server.dsr.restriction import Restrictions
from server.dsr.tables import ErasureJob
from server.feedback.store import forget_invitations
from server.gateway import Actor, Gateway, GatewayError
from server.gateway.erasure import WriteHook
from server.gateway.sealing import CiphertextError, MasterKeyMissing, RegisterError

PURPOSE = "compliance"
JOB = "erasure"
STEPS = ("mentions", "records", "keys")
RUNNING, HELD, DONE, FAILED = "running", "held", "done", "failed"


class ErasureError(DsrError):
    """An erasure that cannot start; ``code`` is machine-readable, the message one line."""


@dataclass
class ReapplyReport:
    """What re-applying the erasure register to a restored database did, per person."""

    erased: int = 0  # erased again (the backup was older than their erasure)
    held: int = 0  # erased again but for records under a legal hold in the backup
    shredded: int = 0  # no records, but a key was left: shredded
    already: int = 0  # the restored database already shows them erased
    failed: list[str] = field(default_factory=list)  # "subject: error type", no values


@dataclass(frozen=True)
class ErasureResult:
    subject_id: str
    job_id: str
    request_id: str | None
    state: str  # running | held | done
    steps: tuple[str, ...]
    erased: dict[str, int]  # records turned into tombstones, per record type
    mentions: int  # other people's records whose free text named the person
    holds: tuple[Hold, ...] = ()  # what was kept, why and until when
    already_done: bool = False  # nothing to do: the person was erased before
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    extra: dict[str, int] = field(default_factory=dict)
    updated_at: dt.datetime | None = None
    error: str = ""  # a background run that stopped: why (a code)

    @property
    def complete(self) -> bool:
        return self.state == DONE

    def held_lines(self) -> list[str]:
        """What the person is told about records kept under a hold."""
        return [
            f"Kept until {hold.held_until:%Y-%m-%d}: your {_scope_words(hold.scope)} "
            f"({hold.label.lower()}). They are restricted: used for nothing else, and erased "
            "when the obligation ends."
            for hold in self.holds
        ]


def _scope_words(scope: str) -> str:
    return "records" if scope == "all" else f"{scope} records"


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise ErasureError("invalid_subject", "the subject is not a valid id") from None


def _counts(row: Mapping[str, Any]) -> dict[str, int]:
    loaded = json.loads(str(row["counts"] or "{}"))
    return {str(k): int(v) for k, v in loaded.items()}


def _steps(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(s for s in str(row["steps"]).split(",") if s)


StepHook = Callable[[str], Awaitable[None]]


class Erasure:
    """Runs erasures; built once per process (``Services.erasure``)."""

    def __init__(
        self,
        gateway: Gateway,
        audit: AuditLog,
        holds: LegalHolds,
        restrictions: Restrictions,
        *,
        batch_size: int = 500,
    ) -> None:
        self._gateway = gateway
        self._audit = audit
        self.holds = holds
        self.restrictions = restrictions
        self.batch_size = batch_size
        # Called after each completed step; tests inject a crash here.
        self.after_step: StepHook | None = None
        # Called just before the mention scrub writes a record; tests change it there.
        self.before_mention_write: WriteHook | None = None

    # -- reading -------------------------------------------------------------------------

    async def job_for_subject(self, subject_id: str) -> ErasureResult | None:
        row = await ErasureJob.select().where(ErasureJob.subject_id == _uuid(subject_id)).first()
        return None if row is None else await self._result(row)

    async def job_for_request(self, request_id: str) -> ErasureResult | None:
        row = await ErasureJob.select().where(ErasureJob.request_id == str(request_id)).first()
        return None if row is None else await self._result(row)

    async def held_jobs(self) -> list[str]:
        """Subjects whose erasure waits for a legal hold to end."""
        rows = await ErasureJob.select(ErasureJob.subject_id).where(ErasureJob.state == HELD)
        return [str(row["subject_id"]) for row in rows]

    async def interrupted_jobs(self, before: dt.datetime) -> list[str]:
        """Subjects whose erasure stopped half-way (a crash, a killed worker): still
        ``running`` with no progress since ``before``. Running it again finishes it."""
        rows = await ErasureJob.select(ErasureJob.subject_id).where(
            (ErasureJob.state == RUNNING) & (ErasureJob.updated_at < before)
        )
        return [str(row["subject_id"]) for row in rows]

    async def _result(self, row: Mapping[str, Any], *, already: bool = False) -> ErasureResult:
        counts = _counts(row)
        mentions = counts.pop("mentions", 0)
        state = str(row["state"])
        holds = await self.holds.active(str(row["subject_id"])) if state == HELD else []
        return ErasureResult(
            subject_id=str(row["subject_id"]),
            job_id=str(row["id"]),
            request_id=row["request_id"],
            state=state,
            steps=_steps(row),
            erased=counts,
            mentions=mentions,
            holds=tuple(holds),
            already_done=already,
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"],
            error=str(row.get("error") or ""),
        )

    # -- erasing -------------------------------------------------------------------------

    async def prepare(self, subject_id: str, *, by: str, request_id: str) -> ErasureResult:
        """The job row of an erasure about to run in the background (so its progress page
        has something to show at once); a stopped run is marked running again."""
        subject = str(_uuid(subject_id))
        row = await ErasureJob.select().where(ErasureJob.subject_id == uuid.UUID(subject)).first()
        if row is None:
            row = await self._start(subject, by, request_id)
        elif row["state"] == FAILED:
            await ErasureJob.update(
                {
                    ErasureJob.state: RUNNING,
                    ErasureJob.error: "",
                    ErasureJob.updated_at: dt.datetime.now(dt.UTC),
                }
            ).where(ErasureJob.id == row["id"])
            row = {**row, "state": RUNNING, "error": ""}
        return await self._result(row)

    async def record_failure(self, subject_id: str, code: str) -> None:
        """A background run stopped before finishing: say so on the job (steps done stay
        done; starting it again carries on from there)."""
        await ErasureJob.update(
            {
                ErasureJob.state: FAILED,
                ErasureJob.error: code[:32],
                ErasureJob.updated_at: dt.datetime.now(dt.UTC),
            }
        ).where((ErasureJob.subject_id == _uuid(subject_id)) & (ErasureJob.state != DONE))

    async def erase(
        self, subject_id: str, *, by: str, request_id: str | None = None
    ) -> ErasureResult:
        """Erase the person, or carry on with an unfinished erasure of them."""
        subject = str(_uuid(subject_id))
        # Retention erases as itself; requests and the CLI as the erasure job.
        actor = Actor.system(by.removeprefix("system:") if by.startswith("system:") else JOB)
        row = await ErasureJob.select().where(ErasureJob.subject_id == uuid.UUID(subject)).first()
        if row is not None and row["state"] == DONE:
            return await self._result(row, already=True)
        if row is None:
            if not await self._gateway.subject_record_counts(subject):
                raise ErasureError("no_records", "no records for this subject")
            row = await self._start(subject, by, request_id)
        steps = list(_steps(row))
        counts = _counts(row)
        # A job a hold stopped: staff may have written about the person since. Scrub again
        # (with the identity it remembered: the records naming them may be tombstones now).
        resumed = str(row["state"]) == HELD and "mentions" in steps

        if "mentions" not in steps or resumed:
            scrub = await self._gateway.erase_mentions(
                actor,
                subject,
                batch_size=self.batch_size,
                remembered=str(row.get("identity") or ""),
                before_write=self.before_mention_write,
            )
            counts["mentions"] = counts.get("mentions", 0) + scrub.changed
            if "mentions" not in steps:
                steps.append("mentions")
            await self._save(row["id"], steps, counts, HELD if resumed else RUNNING)
            await self._after("mentions")

        if "records" not in steps:
            holds = await self.holds.active(subject)
            if holds and not row.get("identity"):
                await self._remember(row["id"], subject)
            erased = await self._gateway.erase_subject(
                actor, subject, keep={hold.scope for hold in holds}
            )
            for resource, n in erased.items():
                counts[resource] = counts.get(resource, 0) + n
            if holds:
                await self.restrictions.restrict(
                    subject, "legal_hold", by=f"system:{JOB}", request_id=request_id
                )
                await self._save(row["id"], steps, counts, HELD)
                await self._after("records")
                held = await ErasureJob.select().where(ErasureJob.id == row["id"]).first()
                assert held is not None  # written just above
                return await self._result(held)
            steps.append("records")
            await self._save(row["id"], steps, counts, RUNNING)
            await self._after("records")

        if "keys" not in steps:
            await forget_scores(subject)  # sealed under the key anyway; the row goes too
            await forget_invitations(subject)  # open survey links (server.feedback)
            await self._gateway.shred_subject(actor, subject)
            steps.append("keys")
            await self._finish(row["id"], subject, steps, counts, by, row["request_id"])
            await self._after("keys")
            await self.restrictions.lift(subject, by=f"system:{JOB}", reason="legal_hold")

        done = await ErasureJob.select().where(ErasureJob.id == row["id"]).first()
        assert done is not None  # the job row is never deleted
        return await self._result(done)

    async def reapply(
        self,
        subject_ids: Iterable[str],
        *,
        by: str = "system:restore",
        progress: Callable[[int], None] | None = None,
    ) -> ReapplyReport:
        """Erase again everyone in ``subject_ids`` (the erasure register) whose erasure the
        database does not show as done: what ``consentry restore`` runs, so a backup taken
        before an erasure never brings the person back. Idempotent."""
        report = ReapplyReport()
        for subject in dict.fromkeys(subject_ids):
            try:
                row = (
                    await ErasureJob.select(ErasureJob.state)
                    .where(ErasureJob.subject_id == _uuid(subject))
                    .first()
                )
                if row is not None and row["state"] == DONE:
                    report.already += 1
                elif await self._gateway.subject_record_counts(subject):
                    result = await self.erase(subject, by=by)
                    if result.complete:
                        report.erased += 1
                    else:
                        report.held += 1
                elif await self._gateway.holds_key(subject):
                    await self._gateway.shred_subject(Actor.system(JOB), subject)
                    report.shredded += 1
                else:
                    report.already += 1
            except (ErasureError, GatewayError, MasterKeyMissing, CiphertextError) as exc:
                report.failed.append(f"{subject}: {type(exc).__name__}")
            if progress is not None:
                progress(1)
        return report

    async def fulfil(self, request: DataRequest, by: str) -> list[str]:
        """The ``erasure`` fulfiller of the request workflow: erase, and return the lines
        the fulfilment e-mail adds (records kept under a hold, why and until when)."""
        try:
            result = await self.erase(request.subject_id, by=by, request_id=request.id)
        except ErasureError as exc:
            raise RequestError(exc.code, exc.message) from None
        except GatewayError as exc:
            raise RequestError("erasure_failed", exc.message) from None
        except RegisterError:
            raise RequestError(
                "erasure_failed", "the erasure register cannot be written; nothing was shredded"
            ) from None
        return result.held_lines()

    async def _start(self, subject: str, by: str, request_id: str | None) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "subject_id": uuid.UUID(subject),
            "request_id": request_id,
            "state": RUNNING,
            "steps": "",
            "counts": "{}",
            "started_by": by,
            "started_at": now,
            "updated_at": now,
            "finished_at": None,
            "identity": "",
            "error": "",
        }
        async with db.write_transaction():
            await ErasureJob.insert(ErasureJob(**row)).run()
            await self._event(
                "dsr.erase_start", subject, by, RUNNING, {"request": request_id or ""}
            )
        return row

    async def _save(
        self, job_id: Any, steps: list[str], counts: dict[str, int], state: str
    ) -> None:
        await ErasureJob.update(
            {
                ErasureJob.steps: ",".join(steps),
                ErasureJob.counts: json.dumps(counts, sort_keys=True),
                ErasureJob.state: state,
                ErasureJob.error: "",
                ErasureJob.updated_at: dt.datetime.now(dt.UTC),
            }
        ).where(ErasureJob.id == job_id)

    async def _finish(
        self,
        job_id: Any,
        subject: str,
        steps: list[str],
        counts: dict[str, int],
        by: str,
        request_id: str | None,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        async with db.write_transaction():
            await ErasureJob.update(
                {
                    ErasureJob.steps: ",".join(steps),
                    ErasureJob.counts: json.dumps(counts, sort_keys=True),
                    ErasureJob.state: DONE,
                    ErasureJob.updated_at: now,
                    ErasureJob.finished_at: now,
                    ErasureJob.identity: "",  # unreadable after the shred; not kept either
                }
            ).where(ErasureJob.id == job_id)
            # The request (if any) lets the outbox tell an erasure of its own from one
            # whose request will be fulfilled next (server.recipients.notices).
            detail: dict[str, int | str] = {**counts, "request": str(request_id or "")}
            await self._event("dsr.erase", subject, by, DONE, detail)

    async def _remember(self, job_id: Any, subject: str) -> None:
        """Seal the person's identifying values into the job before a hold stops it."""
        sealed = await self._gateway.remembered_identity(subject)
        await ErasureJob.update({ErasureJob.identity: sealed}).where(ErasureJob.id == job_id)

    async def _after(self, step: str) -> None:
        if self.after_step is not None:
            await self.after_step(step)

    async def _event(
        self, action: str, subject: str, by: str, state: str, detail: dict[str, int | str]
    ) -> None:
        await self._audit.append(
            audit_event(
                actor_id=by,
                actor_role=SYSTEM_ROLE if by.startswith("system:") else "",
                action=action,
                resource_type="data_subject",
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                subject_ids=(subject,),
                reason=state,
                detail=detail,
            )
        )
