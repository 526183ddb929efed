"""Retention as code: what is kept how long, and what happens when the time is up.

``RULES`` is the one table of retention periods. Each rule names a record type, the age
that counts (``updated_at``: untouched for that long; ``created_at``: that old), the
plaintext classification values it applies to, and what happens:

- ``erase``: the person is erased exactly as on request (:class:`server.dsr.erasure.
  Erasure`): mentions scrubbed, records tombstoned, key shredded, legal holds honoured;
- ``anonymise``: only the free text of the matching records is erased; the records, and
  the person they are about, stay (so workload and pipeline figures keep adding up).

The data map's prose ``retention`` of every field a rule acts on must state the same
period (a test checks it), so the record of processing and subject exports say what the
code does. A run also finishes erasures that waited for a legal hold that has ended, and
erasures interrupted half-way (no progress for ``INTERRUPTED_AFTER``: the worker died).
Everything is done by the system actor ``system:retention``, and audited as such.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import asyncpg

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import SYSTEM_ROLE
from server import db
from server.datamap import RECORD_TYPES
from server.dsr.erasure import Erasure
from server.dsr.lapse import BasisReview
from server.dsr.tables import RetentionRun
from server.gateway import Actor, Gateway

JOB = "retention"
BY = f"system:{JOB}"
PURPOSE = "compliance"
BATCH = 500
FINISH_HELD = "held_erasures"
FINISH_INTERRUPTED = "interrupted_erasures"
BASIS_LAPSED = "basis_lapsed"  # erasure reviews past their grace period (server/dsr/lapse.py)
# An erasure with no progress for this long is taken to have died with its process.
INTERRUPTED_AFTER = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class StagesOfKind:
    """Deal stages are configuration (``server.pipelines``), not a fixed list: a rule names
    the stage *kind* (won, lost) and a run looks up which stage keys have it."""

    kind: str


StageKeys = Callable[[str], Awaitable[tuple[str, ...]]]  # kind -> stage keys of that kind


@dataclass(frozen=True)
class RetentionRule:
    name: str
    resource: str
    action: str  # erase | anonymise
    years: int
    age_column: str  # updated_at | created_at
    when: Mapping[str, tuple[str, ...] | StagesOfKind]
    description: str

    def cutoff(self, now: dt.datetime) -> dt.datetime:
        """``years`` calendar years before ``now`` (29 February -> 28 February)."""
        try:
            return now.replace(year=now.year - self.years)
        except ValueError:
            return now.replace(year=now.year - self.years, day=28)


RULES: tuple[RetentionRule, ...] = (
    RetentionRule(
        "inactive_contacts",
        "contact",
        "erase",
        3,
        "updated_at",
        {"lifecycle_stage": ("lead", "former_customer")},
        "Leads and former customers untouched for 3 years are erased.",
    ),
    RetentionRule(
        "stale_leads",
        "lead",
        "erase",
        2,
        "updated_at",
        # A converted lead's person lives on as a contact: the contact rules apply.
        {"status": ("new", "contacted", "qualified", "disqualified")},
        "Leads left unconverted and untouched for 2 years are erased.",
    ),
    RetentionRule(
        "old_interactions",
        "interaction",
        "anonymise",
        3,
        "created_at",
        {},
        "The free text (summary, participants) of interactions older than 3 years is erased.",
    ),
    RetentionRule(
        "closed_cases",
        "case",
        "anonymise",
        3,
        "updated_at",
        {"status": ("resolved", "closed")},
        "Titles and descriptions of cases closed for 3 years are erased.",
    ),
    RetentionRule(
        "lost_deals",
        "deal",
        "anonymise",
        3,
        "updated_at",
        {"stage": StagesOfKind("lost")},
        "Titles and notes of deals lost 3 years ago are erased; amounts stay in the totals.",
    ),
    RetentionRule(
        "old_tasks",
        "task",
        "anonymise",
        3,
        # Done or forgotten: either way nobody has touched it for 3 years. A task about
        # nobody has no person whose erasure would reach it, so only this rule ends it.
        "updated_at",
        {},
        "Titles of tasks untouched for 3 years are erased; due dates and status stay.",
    ),
    RetentionRule(
        "old_captured_mail",
        "mail",
        "anonymise",
        2,
        # Captured from a mailbox (server.mailcapture): kept as the person's correspondence
        # for 2 years, then only the fact, direction and time of the e-mail stay.
        "created_at",
        {},
        "The subject, body, addresses and attachment names of e-mail captured 2 years ago "
        "are erased; the direction and time stay.",
    ),
    RetentionRule(
        "old_feedback",
        "feedback",
        "anonymise",
        2,
        "created_at",
        {},
        "Comments on survey answers are erased 2 years after the answer; scores stay sealed.",
    ),
    RetentionRule(
        "old_case_messages",
        "case_message",
        "anonymise",
        3,
        # A case's conversation (server.servicedesk): e-mails, portal messages, replies and
        # internal notes lose their text 3 years after they were written.
        "created_at",
        {},
        "The text of case messages (e-mails, replies, notes) older than 3 years is erased.",
    ),
)


def active_rules() -> tuple[RetentionRule, ...]:
    """The rules whose record type exists in this installation's data map."""
    return tuple(rule for rule in RULES if rule.resource in RECORD_TYPES)


@dataclass
class RuleReport:
    rule: str
    resource: str
    action: str
    matched: int = 0  # people (erase) or records (anonymise) past their period
    erased: int = 0  # people erased completely
    anonymised: int = 0  # records whose free text was erased
    held: int = 0  # kept back by a legal hold


@dataclass(frozen=True)
class RetentionReport:
    at: dt.datetime
    dry_run: bool
    rules: list[RuleReport] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        return {
            "matched": sum(r.matched for r in self.rules),
            "erased": sum(r.erased for r in self.rules),
            "anonymised": sum(r.anonymised for r in self.rules),
            "held": sum(r.held for r in self.rules),
        }


Progress = Callable[[str, int, int], None]  # rule name, done, total


class Retention:
    def __init__(
        self,
        gateway: Gateway,
        erasure: Erasure,
        audit: AuditLog,
        *,
        stage_keys: StageKeys | None = None,
        lapse: BasisReview | None = None,
    ) -> None:
        self._gateway = gateway
        self._lapse = lapse
        self._erasure = erasure
        self._audit = audit
        # Without the pipelines service, a stage kind stands for the stage key of the same
        # name (the default pipeline's ``won`` and ``lost``).
        self._stage_keys = stage_keys

    async def _values(
        self, when: Mapping[str, tuple[str, ...] | StagesOfKind]
    ) -> dict[str, tuple[str, ...]]:
        resolved: dict[str, tuple[str, ...]] = {}
        for name, wanted in when.items():
            if isinstance(wanted, StagesOfKind):
                keys = await self._stage_keys(wanted.kind) if self._stage_keys else ()
                resolved[name] = keys or (wanted.kind,)
            else:
                resolved[name] = wanted
        return resolved

    async def run(
        self,
        *,
        dry_run: bool = False,
        now: dt.datetime | None = None,
        progress: Progress | None = None,
    ) -> RetentionReport:
        """Apply every rule. A dry run reads and reports, and changes nothing."""
        moment = now or dt.datetime.now(dt.UTC)
        today = moment.date()
        actor = Actor.system(JOB)
        report = RetentionReport(moment, dry_run)
        report.rules.append(await self._finish_held(dry_run, today, progress))
        report.rules.append(await self._finish_interrupted(dry_run, moment, progress))
        if self._lapse is not None:
            if not dry_run:  # reviews a failed lapse listener missed (server/dsr/lapse.py)
                await self._lapse.sweep(now=moment)
            lapsed = await self._lapse.erase_due(by=BY, now=moment, dry_run=dry_run)
            line = RuleReport(BASIS_LAPSED, "all", "erase", matched=lapsed.due)
            line.erased = lapsed.erased
            report.rules.append(line)
        for rule in active_rules():
            line = RuleReport(rule.name, rule.resource, rule.action)
            report.rules.append(line)
            found = await self._gateway.expired_records(
                actor,
                rule.resource,
                older_than=rule.cutoff(moment),
                age_column=rule.age_column,
                when=await self._values(rule.when),
                free_text_only=rule.action == "anonymise",
            )
            if rule.action == "erase":
                await self._erase(rule, line, found, dry_run, today, progress)
            else:
                await self._anonymise(rule, line, found, dry_run, today, progress)
        async with db.write_transaction():
            await self._audit.append(
                audit_event(
                    actor_id=BY,
                    actor_role=SYSTEM_ROLE,
                    action="retention.run",
                    resource_type="retention",
                    outcome=Outcome.ALLOWED,
                    purpose=PURPOSE,
                    reason="dry_run" if dry_run else "",
                    detail={
                        f"{r.rule}.{k}": v
                        for r in report.rules
                        for k, v in (
                            ("matched", r.matched),
                            ("erased", r.erased),
                            ("anonymised", r.anonymised),
                            ("held", r.held),
                        )
                    },
                )
            )
        return report

    async def _finish_held(
        self, dry_run: bool, today: dt.date, progress: Progress | None
    ) -> RuleReport:
        line = RuleReport(FINISH_HELD, "all", "erase")
        subjects = await self._erasure.held_jobs()
        # Still held: nothing to resume (the part not held was erased when it started).
        await self._erase_each(line, subjects, dry_run, today, progress, held_first=True)
        return line

    async def _finish_interrupted(
        self, dry_run: bool, moment: dt.datetime, progress: Progress | None
    ) -> RuleReport:
        """Nobody may be left half-erased because a worker died mid-way: resume them."""
        line = RuleReport(FINISH_INTERRUPTED, "all", "erase")
        subjects = await self._erasure.interrupted_jobs(moment - INTERRUPTED_AFTER)
        await self._erase_each(line, subjects, dry_run, moment.date(), progress, held_first=False)
        return line

    async def _erase_each(
        self,
        line: RuleReport,
        subjects: list[str],
        dry_run: bool,
        today: dt.date,
        progress: Progress | None,
        *,
        held_first: bool,
    ) -> None:
        """Erase each person (or count what would be erased); a person under a hold counts
        as held. With ``held_first`` a held person is not touched at all; otherwise the
        erasure runs and erases what no hold covers, as an erasure request would."""
        line.matched = len(subjects)
        for done, subject in enumerate(subjects, 1):
            if (held_first or dry_run) and await self._erasure.holds.active(subject, today=today):
                line.held += 1
            elif dry_run or (await self._erasure.erase(subject, by=BY)).complete:
                line.erased += 1
            else:
                line.held += 1
            if progress:
                progress(line.rule, done, len(subjects))

    async def _erase(
        self,
        rule: RetentionRule,
        line: RuleReport,
        found: list[tuple[str, str]],
        dry_run: bool,
        today: dt.date,
        progress: Progress | None,
    ) -> None:
        subjects = list(dict.fromkeys(subject for _, subject in found))
        await self._erase_each(line, subjects, dry_run, today, progress, held_first=False)

    async def _anonymise(
        self,
        rule: RetentionRule,
        line: RuleReport,
        found: list[tuple[str, str]],
        dry_run: bool,
        today: dt.date,
        progress: Progress | None,
    ) -> None:
        line.matched = len(found)
        held_subjects: set[str] = set()
        for subject in {s for _, s in found}:
            holds = await self._erasure.holds.active(subject, today=today)
            if any(hold.covers(rule.resource) for hold in holds):
                held_subjects.add(subject)
        ids = [record for record, subject in found if subject not in held_subjects]
        line.held = len(found) - len(ids)
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            if dry_run:
                line.anonymised += len(batch)
            else:
                line.anonymised += await self._gateway.anonymise_records(
                    Actor.system(JOB), rule.resource, batch
                )
            if progress:
                progress(rule.name, start + len(batch), len(ids))

    # -- the daily run inside the server ------------------------------------------------

    async def claim_day(self, day: dt.date) -> bool:
        """Take today's run: True for exactly one worker (the unique ``day`` is the lock)."""
        try:
            async with db.write_transaction():
                taken = await RetentionRun.exists().where(RetentionRun.day == day.isoformat())
                if taken:
                    return False
                await RetentionRun.insert(
                    RetentionRun(
                        id=uuid.uuid4(), day=day.isoformat(), started_at=dt.datetime.now(dt.UTC)
                    )
                ).run()
        except (sqlite3.IntegrityError, asyncpg.UniqueViolationError):
            return False  # another worker inserted it first
        return True

    async def run_daily(self, now: dt.datetime | None = None) -> RetentionReport | None:
        """Run once per UTC day across all workers; None when today's run was taken."""
        moment = now or dt.datetime.now(dt.UTC)
        if not await self.claim_day(moment.date()):
            return None
        report = await self.run(now=moment)
        await RetentionRun.update({RetentionRun.finished_at: dt.datetime.now(dt.UTC)}).where(
            RetentionRun.day == moment.date().isoformat()
        )
        return report
