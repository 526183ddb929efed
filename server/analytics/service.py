"""Customer scores: the scoring job, and reading a person's scores back.

The job (``consentry analytics score``, and daily in the background) asks the gateway for
the plaintext facts of everyone with a basis for ``profiling`` (``Gateway.behaviour``:
consent, objections and restrictions are compiled into its SQL), scores them
(:mod:`server.analytics.model`), and stores each person's scores sealed under their own
key, in batches. Each batch is written in one transaction with an audit event naming the
people scored, and in that transaction every score of someone who has no basis (any more)
(or whose processing is restricted) is deleted, so a withdrawal, objection or
restriction that lands mid-run still wins. Scores of people no longer
scored (no basis, or no activity left) are deleted at the end of the run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from piccolo.columns import Column
from piccolo.columns.combination import Where
from piccolo.query import Select

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from server import db
from server.analytics import model
from server.analytics.tables import CustomerScore
from server.gateway import Gateway
from server.gateway.actor import Actor
from server.gateway.sealing import Sealing
from server.pipelines.service import stage_kinds

PURPOSE = "profiling"
SEAL_LABEL = "customer_score"
JOB = "analytics-scoring"
BATCH = 2000
TRAINING_SAMPLE = 20_000  # people the churn model is fitted on at most (seeded sample)


@dataclass(frozen=True)
class ScoringRun:
    scored: int
    removed: int
    validation_auc: float | None
    trained_on: int
    seconds: float


@dataclass(frozen=True)
class StoredScore:
    computed_at: dt.datetime
    model: str
    scores: dict[str, Any]  # ``model.Score.as_json``


class Audience(Protocol):
    """Who has a basis for profiling, as a sub-select (``server.consent``'s
    ``AudienceFilter``)."""

    @property
    def include(self) -> bool: ...

    @property
    def query(self) -> Select[Any]: ...

    def where(self, subject_column: Column) -> Where: ...


class ProfilingBasis(Protocol):
    """The consent engine, as scoring needs it. Named by shape: the consent engine deletes
    scores when the basis ends (``server.analytics.store``), so this package does not
    import it back."""

    async def subjects_with_basis(self, purpose: str) -> Audience: ...


class CustomerScores:
    """Built once per process (``Services.analytics``)."""

    def __init__(
        self,
        gateway: Gateway,
        consent: ProfilingBasis,
        sealing: Sealing,
        audit: AuditLog,
        *,
        rates: model.ValueRates | None = None,
    ) -> None:
        self._rates = rates or model.ValueRates()
        self._gateway = gateway
        self._consent = consent
        self._sealing = sealing
        self._audit = audit

    async def score_all(
        self,
        *,
        now: dt.datetime | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ScoringRun:
        """Score everyone with a basis for profiling; ``progress(done, total)`` per batch."""
        started = time.monotonic()
        now = now or dt.datetime.now(dt.UTC)
        actor = Actor.system(JOB)
        facts = await self._gateway.behaviour(actor, purpose=PURPOSE)
        kinds = await stage_kinds()
        people = model.activities(
            facts,
            lambda pipeline, stage: (
                kinds.get((str(pipeline), str(stage))) == "won" or stage == "won"
            ),
            self._rates,
        )
        # CPU work (the model's fit) off the event loop: the worker keeps serving requests.
        scoring = await asyncio.to_thread(
            model.score_everyone,
            people,
            now,
            model.SEED,
            TRAINING_SAMPLE,
            self._rates.currency,
        )
        subjects = list(scoring.scores)
        if progress is not None:
            progress(0, len(subjects))
        for start in range(0, len(subjects), BATCH):
            batch = subjects[start : start + BATCH]
            plaintexts = {s: json.dumps(scoring.scores[s].as_json(), sort_keys=True) for s in batch}
            sealed = await self._sealing.seal_many(SEAL_LABEL, plaintexts)
            await self._store(actor, now, sealed)
            if progress is not None:
                progress(min(start + BATCH, len(subjects)), len(subjects))
        removed = await self._remove_stale(actor, now)
        found = scoring.model
        return ScoringRun(
            scored=len(subjects),
            removed=removed,
            validation_auc=found.validation_auc if found else None,
            trained_on=found.trained_on if found else 0,
            seconds=time.monotonic() - started,
        )

    async def _without_basis(self) -> Any:
        """A WHERE over the score table: the people who have no basis for profiling now."""
        audience = await self._consent.subjects_with_basis(PURPOSE)
        if audience.include:
            return CustomerScore.subject_id.not_in(audience.query)
        return CustomerScore.subject_id.is_in(audience.query)

    async def _drop_restricted(self, ids: list[uuid.UUID]) -> None:
        """Delete the scores of those of ``ids`` whose processing is restricted now."""
        register = self._gateway.restrictions
        if register is None or not ids:
            return
        unrestricted = await register.unrestricted_subjects()
        kept = await CustomerScore.select(CustomerScore.subject_id).where(
            CustomerScore.subject_id.is_in(ids) & unrestricted.where(CustomerScore.subject_id)
        )
        allowed = {str(r["subject_id"]) for r in kept}
        gone = [i for i in ids if str(i) not in allowed]
        if gone:
            await CustomerScore.delete().where(CustomerScore.subject_id.is_in(gone))

    async def _store(self, actor: Actor, now: dt.datetime, sealed: dict[str, str]) -> None:
        if not sealed:
            return
        ids = [uuid.UUID(s) for s in sealed]
        async with db.write_transaction():
            await CustomerScore.delete().where(CustomerScore.subject_id.is_in(ids))
            await CustomerScore.insert(
                *(
                    CustomerScore(
                        subject_id=uuid.UUID(s),
                        computed_at=now,
                        model=model.MODEL_VERSION,
                        sealed=token,
                    )
                    for s, token in sealed.items()
                )
            )
            # A withdrawal, objection or restriction committed since the facts were read wins.
            await CustomerScore.delete().where(await self._without_basis())
            await self._drop_restricted(ids)
            await self._audit.append(
                audit_event(
                    actor_id=actor.id,
                    actor_role=actor.role,
                    action="profile.score",
                    resource_type="customer_score",
                    outcome=Outcome.ALLOWED,
                    purpose=PURPOSE,
                    subject_ids=tuple(sealed),
                    detail={"records": len(sealed), "model": model.MODEL_VERSION},
                )
            )

    async def _remove_stale(self, actor: Actor, now: dt.datetime) -> int:
        async with db.write_transaction():
            stale = await CustomerScore.select(CustomerScore.subject_id).where(
                CustomerScore.computed_at < now
            )
            if not stale:
                return 0
            await CustomerScore.delete().where(CustomerScore.computed_at < now)
            await self._audit.append(
                audit_event(
                    actor_id=actor.id,
                    actor_role=actor.role,
                    action="profile.delete",
                    resource_type="customer_score",
                    outcome=Outcome.ALLOWED,
                    purpose=PURPOSE,
                    subject_ids=tuple(str(r["subject_id"]) for r in stale),
                    detail={"records": len(stale), "reason": "not_scored"},
                )
            )
        return len(stale)

    async def _open(self, rows: Iterable[dict[str, Any]]) -> dict[str, StoredScore]:
        found: dict[str, StoredScore] = {}
        for row in rows:
            subject = str(row["subject_id"])
            text = await self._sealing.open_for_subject(subject, SEAL_LABEL, row["sealed"])
            if text is None:  # erased: the key is gone
                continue
            found[subject] = StoredScore(row["computed_at"], str(row["model"]), json.loads(text))
        return found

    async def of_subject(self, actor: Actor, subject_id: str, *, why: str) -> StoredScore | None:
        """One person's scores (None if they have none), audited as a read by ``actor``."""
        subject = str(uuid.UUID(str(subject_id)))
        rows = await CustomerScore.select().where(CustomerScore.subject_id == uuid.UUID(subject))
        found = (await self._open(rows)).get(subject)
        await self._audit.append_committed(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action="profile.read",
                resource_type="customer_score",
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                subject_ids=(subject,),
                detail={"records": int(found is not None), "for": why},
            )
        )
        return found

    async def subjects_in_segments(self, actor: Actor, segments: Iterable[str]) -> set[str]:
        """The people whose current RFM segment is one of ``segments`` (a campaign
        segment's ``score_segment`` filter), audited as one read with the count."""
        wanted = set(segments)
        rows = await CustomerScore.select().where(await self._without_basis_negated())
        opened = await self._open(rows)
        chosen = {s for s, score in opened.items() if score.scores.get("segment") in wanted}
        await self._audit.append_committed(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action="profile.segment",
                resource_type="customer_score",
                outcome=Outcome.ALLOWED,
                purpose=PURPOSE,
                detail={"records": len(chosen), "segments": ",".join(sorted(wanted))},
            )
        )
        return chosen

    async def _without_basis_negated(self) -> Any:
        audience = await self._consent.subjects_with_basis(PURPOSE)
        return audience.where(CustomerScore.subject_id)

    async def count(self) -> int:
        return int(await CustomerScore.count())
