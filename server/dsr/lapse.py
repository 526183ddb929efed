"""When the last basis lapses: a person we may no longer keep goes to erasure review.

Consent is one legal basis among several. When a person's consent is withdrawn or
expires (``ConsentEngine`` tells its lapse listeners once the change is committed), the
review asks what else still makes keeping their data lawful (:meth:`BasisReview.standing`):

- ``consent``: another grant still in force (any purpose, any channel);
- ``contract``: they are a customer (a contact in lifecycle stage ``customer``), or have
  a deal that is not lost (open deals are pre-contract steps, won deals the contract);
- ``open_case``: a support case still open or pending;
- ``legal_hold``: a legal hold in force.

If nothing does, an ``erasure`` request is put on the compliance queue with channel
``basis_lapsed``, the reason (``last_consent_withdrawn`` / ``last_consent_expired``) and no
e-mail to the person (they did not ask). Compliance can review it like any request; if
they have not answered it when the grace period (``CONSENTRY_BASIS_LAPSE_GRACE_DAYS``,
default 30) has passed, the retention run asks again and either erases the person
through the ordinary erasure fulfiller (holds honoured, mentions scrubbed, key shredded)
or, if a basis came back meanwhile, rejects the review as ``basis_restored``.
Everything is done by ``system:basis-review`` / ``system:retention`` and audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from policy.enforcer import SYSTEM_ROLE
from server.consent.model import ConsentEventKind
from server.consent.service import ConsentEngine
from server.datamap import CASE_STATUSES, RecordType
from server.dsr.holds import LegalHolds
from server.dsr.people import own_record
from server.dsr.requests import (
    ANSWERED,
    LAPSED_CHANNEL,
    NOT_A_PERSON,
    DataRequest,
    DataSubjectRequests,
    RequestError,
)
from server.gateway import Actor, Gateway

JOB = "basis-review"
BY = f"system:{JOB}"
PURPOSE = "compliance"
CUSTOMER_STAGE = "customer"
OPEN_CASE_STATUSES = tuple(s for s in CASE_STATUSES if s in {"open", "pending"})
SWEEP_WINDOW = dt.timedelta(days=2)  # the run is daily: each lapse is looked at twice
MAX_RECORDS = 100  # deals or cases looked at per person (one is enough to keep them)

StageKeys = Callable[[str], Awaitable[tuple[str, ...]]]  # kind -> stage keys of that kind


@dataclass(frozen=True)
class LapseRun:
    """What one retention run did with the reviews past their grace period."""

    due: int = 0
    erased: int = 0
    restored: int = 0  # a basis came back: the review was rejected
    failed: int = 0  # the erasure could not run (retried by the next run)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _stage_only(rt: RecordType) -> tuple[str, ...]:
    return ("lifecycle_stage",) if "lifecycle_stage" in rt.by_name else ()


class BasisReview:
    def __init__(
        self,
        gateway: Gateway,
        consent: ConsentEngine,
        requests: DataSubjectRequests,
        holds: LegalHolds,
        *,
        grace_days: int,
        stage_keys: StageKeys | None = None,
    ) -> None:
        self._gateway = gateway
        self._consent = consent
        self._requests = requests
        self._holds = holds
        self.grace = dt.timedelta(days=grace_days)
        self._stage_keys = stage_keys
        self._actor = Actor.system(JOB)

    async def standing(self, subject_id: str, *, now: dt.datetime | None = None) -> tuple[str, ...]:
        """What still keeps this person's data lawful (codes, see the module docstring);
        empty when nothing does."""
        moment = now or dt.datetime.now(dt.UTC)
        keeps: list[str] = []
        for status in await self._consent.state(subject_id):
            if status.state is ConsentEventKind.GRANTED and (
                status.expires_at is None or status.expires_at > moment
            ):
                keeps.append("consent")
                break
        own = await own_record(
            self._gateway, self._actor, subject_id, purpose=PURPOSE, fields=_stage_only
        )
        if (
            own is not None and own.values.get("lifecycle_stage") == CUSTOMER_STAGE
        ) or await self._live_deals(subject_id):
            keeps.append("contract")
        cases = await self._gateway.list(
            self._actor,
            "case",
            purpose=PURPOSE,
            filters={"subject_id": subject_id, "status": list(OPEN_CASE_STATUSES)},
            page_size=1,
        )
        if cases.total:
            keeps.append("open_case")
        if await self._holds.active(subject_id, today=moment.date()):
            keeps.append("legal_hold")
        return tuple(keeps)

    async def _live_deals(self, subject_id: str) -> bool:
        lost = set(await self._stage_keys("lost")) if self._stage_keys else {"lost"}
        deals = await self._gateway.list(
            self._actor,
            "deal",
            purpose=PURPOSE,
            filters={"subject_id": subject_id},
            page_size=MAX_RECORDS,
        )
        return any(d.values.get("stage") not in lost for d in deals.items)

    async def consider(self, subject_id: str, because: str) -> DataRequest | None:
        """After ``because`` (a consent withdrawn or expired): if nothing keeps the person,
        put one erasure review on the compliance queue. None when one is already open, the
        person has no record left, or something still keeps them."""
        for existing in await self._requests.for_subject(subject_id):
            if existing.channel == LAPSED_CHANNEL and existing.open:
                return None
        own = await own_record(
            self._gateway, self._actor, subject_id, purpose=PURPOSE, fields=_stage_only
        )
        if own is None or await self.standing(subject_id):
            return None
        change = await self._requests.log(
            subject_id,
            "erasure",
            LAPSED_CHANNEL,
            verification=NOT_A_PERSON,
            by=BY,
            by_role=SYSTEM_ROLE,
            contact_id=own.record_id,
            notify=False,  # nobody asked: the person is not written to about a review
            opened_because=because,
        )
        return change.request

    async def sweep(self, *, now: dt.datetime | None = None) -> int:
        """The retention run's safety net: every withdrawal or expiry of the last
        ``SWEEP_WINDOW`` that has no review opened since is considered again (a listener
        that failed at the time, a worker that died right after the commit). A review that
        compliance already answered after the lapse is left answered. How many were queued."""
        moment = now or dt.datetime.now(dt.UTC)
        queued = 0
        for subject, because, when in await self._consent.lapses_since(moment - SWEEP_WINDOW):
            reviews = [
                r
                for r in await self._requests.for_subject(subject)
                if r.channel == LAPSED_CHANNEL and r.received_at >= _utc(when)
            ]
            if not reviews and await self.consider(subject, because) is not None:
                queued += 1
        return queued

    async def erase_due(
        self, *, by: str, now: dt.datetime | None = None, dry_run: bool = False
    ) -> LapseRun:
        """The retention run's part: every open review older than the grace period is
        erased, or rejected as ``basis_restored`` if a basis came back."""
        moment = now or dt.datetime.now(dt.UTC)
        due = [
            r
            for r in await self._requests.queue(open_only=True, now=moment)
            if r.channel == LAPSED_CHANNEL and r.received_at <= moment - self.grace
        ]
        erased = restored = failed = 0
        for review in due:
            if dry_run:
                continue
            if await self.standing(review.subject_id, now=moment):
                await self._walk(review, ("in_review", "rejected"), by, reason="basis_restored")
                restored += 1
                continue
            try:  # the erasure fulfiller runs on "fulfilled" (holds honoured there)
                await self._walk(review, ("in_review", "approved", "fulfilled"), by)
            except RequestError:
                failed += 1  # stays approved; the next run tries again
            else:
                erased += 1
        return LapseRun(due=len(due), erased=erased, restored=restored, failed=failed)

    async def _walk(
        self, review: DataRequest, path: tuple[str, ...], by: str, *, reason: str = ""
    ) -> DataRequest:
        """Move the review along ``path`` from wherever compliance left it."""
        current = review
        for state in path[path.index(review.state) + 1 if review.state in path else 0 :]:
            if current.state in ANSWERED:
                break
            change = await self._requests.transition(
                current.id,
                state,
                by=by,
                by_role=SYSTEM_ROLE,
                reason=reason if state == "rejected" else "",
                notify=False,
            )
            current = change.request
        return current
