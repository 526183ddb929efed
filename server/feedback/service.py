"""Feedback: one CSAT question after a case is closed, NPS surveys sent as campaigns, and
the results under the small-group rule.

**CSAT** (service purpose). A background job (:func:`send_csat_due`, bounded per run)
looks through the gateway, as ``system:feedback-csat``, for cases resolved or closed in
the last ``CSAT_LOOKBACK`` that were not yet asked; for each it claims the case in
``case_survey`` (so a case is asked at most once, whichever worker runs), checks the
person's basis for ``service_communication`` on e-mail (a restricted person is not read,
so not asked), and sends
one question with a personal link through the durable mail outbox.

**NPS** (marketing). A survey is tied to an e-mail campaign (server.campaigns): the
campaign's own send - consent-gated like any campaign, asked again per person just
before sending - fills ``{survey_link}`` in its text with each person's link.

**Answers.** The link (``/portal/survey/<token>``) works once, for ``INVITATION_DAYS``;
only a keyed hash of its token is stored. A survey that is not anonymous keeps the answer
as a ``feedback`` record about the person (score and comment sealed under their key,
written through the gateway): exported, erased and kept like their other records. An
anonymous survey keeps nothing but ``+1`` on the count of that score: the invitation is
deleted, nothing records who answered or when (not even the day), no audit event names
the person, and no comment is asked for (free text could name its writer).

**Results** come from the counts alone (``feedback_tally``), for both kinds: a score's
count below the deployment's minimum group size is suppressed with the report builder's
algorithm (server.reports.small_groups), and the overall CSAT or NPS is shown only once a
survey has at least that many answers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import PolicyEngine
from server import db
from server.feedback.tables import CaseSurvey, FeedbackTally, Survey, SurveyInvitation
from server.gateway import Actor, Forbidden, Gateway, GatewayError, InvalidInput, NotFound
from server.logs import get_logger
from server.reports.small_groups import TOTAL, SmallGroups

if TYPE_CHECKING:
    from server.consent.service import ConsentEngine
    from server.outbox.service import MailOutbox
    from server.settings import Settings

log = get_logger("consentry.feedback")

JOB = "feedback-csat"
SYSTEM = Actor.system(JOB)
ANSWER_ACTOR = Actor.system("feedback-answer")
REPORT = ("feedback_report", "view")
MANAGE = ("survey", "manage")
SCALES: Mapping[str, tuple[int, ...]] = {"csat": tuple(range(1, 6)), "nps": tuple(range(0, 11))}
PURPOSE_OF = {"csat": "customer_support", "nps": "marketing"}
# How the overall score groups the scale (CSAT: share satisfied; NPS: promoters - detractors).
GROUPS: Mapping[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "csat": (("Unsatisfied", (1, 2)), ("Neutral", (3,)), ("Satisfied", (4, 5))),
    "nps": (("Detractors", tuple(range(7))), ("Passives", (7, 8)), ("Promoters", (9, 10))),
}
CSAT_SURVEY_ID = "c5a70000-0000-4000-8000-000000000001"  # made by the feedback migration
CSAT_STATUSES = ("resolved", "closed")
CSAT_LOOKBACK = dt.timedelta(days=14)
CSAT_BATCH = 50  # questions sent per run at most
CSAT_SCAN_PAGES = 10  # pages of closed cases looked through per run at most
INVITATION_DAYS = 30
MAIL_PURPOSE = "feedback"  # server.outbox PURPOSES: service_communication
MAX_NAME = 100
MAX_QUESTION = 300
MAX_COMMENT = 2000


class SurveyError(Exception):
    """A link that is not (or no longer) valid, or an answer that cannot be taken."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class SurveyInfo:
    id: str
    name: str
    question: str
    kind: str  # csat | nps
    anonymous: bool
    campaign_id: str | None
    created_at: dt.datetime

    @property
    def scale(self) -> tuple[int, ...]:
        return SCALES[self.kind]


@dataclass(frozen=True)
class Results:
    survey: SurveyInfo
    answers: int  # all answers (shown as "fewer than" below the minimum group size)
    counts: dict[int, int | None]  # score -> answers, None where suppressed
    groups: dict[str, int | None]  # detractors/passives/promoters or unsatisfied/...: same
    score: float | None  # CSAT: % satisfied (4-5); NPS: promoters - detractors; None: hidden
    minimum: int

    @property
    def score_label(self) -> str:
        if self.score is None:
            return "not shown: too few answers in a group"
        return f"{self.score:.0f}%" if self.survey.kind == "csat" else f"{self.score:+.0f}"


@dataclass
class CsatRun:
    scanned: int = 0
    sent: int = 0
    skipped: int = 0  # no basis, no address, restricted or erased


def _utc(value: Any) -> dt.datetime:
    moment: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _survey(row: Mapping[str, Any]) -> SurveyInfo:
    return SurveyInfo(
        id=str(row["id"]),
        name=str(row["name"]),
        question=str(row["question"]),
        kind=str(row["kind"]),
        anonymous=bool(row["anonymous"]),
        campaign_id=str(row["campaign_id"]) if row["campaign_id"] else None,
        created_at=_utc(row["created_at"]),
    )


def _to_uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def overall_score(kind: str, counts: Mapping[int, int]) -> float | None:
    total = sum(counts.values())
    if not total:
        return None
    if kind == "csat":
        return 100 * sum(n for s, n in counts.items() if s >= 4) / total
    promoters = sum(n for s, n in counts.items() if s >= 9)
    detractors = sum(n for s, n in counts.items() if s <= 6)
    return 100 * (promoters - detractors) / total


class Feedback:
    def __init__(
        self,
        gateway: Gateway,
        policy: PolicyEngine,
        audit: AuditLog,
        consent: ConsentEngine,
        outbox: MailOutbox | None,
        token_key: bytes,
        *,
        public_url: str,
        min_group_size: int,
    ) -> None:
        self._gateway = gateway
        self._policy = policy
        self._audit = audit
        self._consent = consent
        self._outbox = outbox
        self._token_key = token_key
        self._public_url = public_url.rstrip("/")
        self.min_group_size = min_group_size

    # --- who may do what ---------------------------------------------------------------

    def may_view(self, role: str) -> bool:
        return self._policy.allows(role, *REPORT)

    def may_manage(self, role: str) -> bool:
        return self._policy.allows(role, *MANAGE)

    async def _record(
        self, actor: Actor, action: str, resource_id: str, outcome: Outcome = Outcome.ALLOWED
    ) -> None:
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action=f"survey.{action}",
                resource_type="survey",
                resource_id=resource_id or None,
                outcome=outcome,
                reason="" if outcome is Outcome.ALLOWED else "not_allowed",
                request_id=actor.request_id,
            )
        )

    # --- surveys -----------------------------------------------------------------------

    async def surveys(self) -> list[SurveyInfo]:
        rows = await Survey.select().order_by(Survey.created_at, ascending=False)
        return [_survey(r) for r in rows]

    async def survey(self, survey_id: str) -> SurveyInfo:
        wanted = _to_uuid(survey_id)
        row = None if wanted is None else await Survey.select().where(Survey.id == wanted).first()
        if row is None:
            raise NotFound("no such survey")
        return _survey(row)

    async def csat_survey(self) -> SurveyInfo:
        """The CSAT survey every closed case is asked (made by the feedback migration)."""
        return await self.survey(CSAT_SURVEY_ID)

    async def create_nps_survey(self, actor: Actor, data: Mapping[str, Any]) -> SurveyInfo:
        """An NPS survey sent by an e-mail campaign (``campaign_id``): its text must hold
        ``{survey_link}``, filled in per person when the campaign is sent."""
        if not self.may_manage(actor.role):
            await self._record(actor, "create", "", Outcome.DENIED)
            raise Forbidden("your role may not create surveys")
        name = " ".join(str(data.get("name") or "").split())
        question = " ".join(str(data.get("question") or "").split())
        problems: dict[str, str] = {}
        if not name or len(name) > MAX_NAME:
            problems["name"] = f"give a name of 1 to {MAX_NAME} characters"
        if not question or len(question) > MAX_QUESTION:
            problems["question"] = f"give a question of 1 to {MAX_QUESTION} characters"
        campaign = _to_uuid(data.get("campaign_id") or "")
        if campaign is None:
            problems["campaign_id"] = "choose the e-mail campaign that sends the survey"
        elif await Survey.exists().where(Survey.campaign_id == campaign):
            problems["campaign_id"] = "that campaign already sends a survey"
        if problems:
            raise InvalidInput(
                "; ".join(f"{k}: {v}" for k, v in problems.items()), problems=problems
            )
        survey_id = uuid.uuid4()
        async with db.write_transaction():
            await Survey.insert(
                Survey(
                    id=survey_id,
                    name=name,
                    question=question,
                    kind="nps",
                    anonymous=bool(data.get("anonymous")),
                    campaign_id=campaign,
                    created_at=dt.datetime.now(dt.UTC),
                    created_by=actor.id,
                )
            ).run()
            await self._record(actor, "create", str(survey_id))
        return await self.survey(str(survey_id))

    # --- invitations -------------------------------------------------------------------

    def _hash(self, token: str) -> str:
        return hmac.new(self._token_key, token.encode(), hashlib.sha256).hexdigest()

    async def invite(self, survey: SurveyInfo, subject_id: str, case_id: str | None = None) -> str:
        """A new one-time link for this person and survey (its token is not stored)."""
        token = secrets.token_urlsafe(32)
        await SurveyInvitation.insert(
            SurveyInvitation(
                id=uuid.uuid4(),
                token_hash=self._hash(token),
                survey_id=uuid.UUID(survey.id),
                subject_id=uuid.UUID(subject_id),
                case_id=uuid.UUID(case_id) if case_id else None,
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=INVITATION_DAYS),
            )
        ).run()
        return f"{self._public_url}/portal/survey/{token}"

    async def campaign_link(self, campaign_id: str, subject_id: str) -> str | None:
        """The ``{survey_link}`` of a campaign's message to one person (None: the campaign
        sends no survey). Called by the campaign send, after its consent check."""
        wanted = _to_uuid(campaign_id)
        row = (
            None
            if wanted is None
            else await Survey.select().where(Survey.campaign_id == wanted).first()
        )
        return None if row is None else await self.invite(_survey(row), subject_id)

    async def open_invitation(self, token: str) -> SurveyInfo:
        """The survey a live link is for (``SurveyError`` if it is used, expired or unknown)."""
        if not token or len(token) > 100:
            raise SurveyError("This link is not valid.")
        row = (
            await SurveyInvitation.select()
            .where(
                (SurveyInvitation.token_hash == self._hash(token))
                & (SurveyInvitation.expires_at > dt.datetime.now(dt.UTC))
            )
            .first()
        )
        if row is None:
            raise SurveyError("This link is not valid: it was used already or has expired.")
        return await self.survey(str(row["survey_id"]))

    async def answer(self, token: str, raw_score: object, raw_comment: object = "") -> SurveyInfo:
        """Take the answer of a live link, once; see the module docstring for what is kept."""
        survey = await self.open_invitation(token)
        try:
            score = int(str(raw_score))
        except ValueError:
            score = -1
        if score not in survey.scale:
            raise SurveyError(
                f"Choose a score from {survey.scale[0]} to {survey.scale[-1]}.", code="bad_input"
            )
        comment = "" if survey.anonymous else str(raw_comment or "").strip()
        if len(comment) > MAX_COMMENT:
            raise SurveyError(
                f"The comment is longer than {MAX_COMMENT} characters.", code="bad_input"
            )
        async with db.write_transaction():
            spent = (
                await SurveyInvitation.delete()
                .where(SurveyInvitation.token_hash == self._hash(token))
                .returning(SurveyInvitation.subject_id, SurveyInvitation.case_id)
            )
            if not spent:  # a second click that lost the race
                raise SurveyError("This link is not valid: it was used already or has expired.")
            if not survey.anonymous:
                await self._keep_answer(survey, spent[0], score, comment)
            await self.count_answer(survey.id, score)
        return survey

    async def _keep_answer(
        self, survey: SurveyInfo, invitation: Mapping[str, Any], score: int, comment: str
    ) -> None:
        subject = str(invitation["subject_id"])
        try:
            contacts = await self._gateway.subject_records(
                ANSWER_ACTOR, "contact", subject, purpose=PURPOSE_OF[survey.kind]
            )
            if not contacts:
                raise SurveyError("This link is not valid any more.")
            values: dict[str, Any] = {
                "survey_id": survey.id,
                "kind": survey.kind,
                "score": score,
                "contact_id": contacts[0],
            }
            if comment:
                values["comment"] = comment
            if invitation["case_id"]:
                values["case_id"] = str(invitation["case_id"])
            await self._gateway.create(
                ANSWER_ACTOR, "feedback", values, purpose=PURPOSE_OF[survey.kind]
            )
        except GatewayError:
            raise SurveyError("We could not record your answer.", code="refused") from None

    async def count_answer(self, survey_id: str, score: int) -> None:
        """``+1`` on the count of ``score`` (no person, no time): what results are read from."""
        survey = uuid.UUID(survey_id)
        await (
            FeedbackTally.insert(
                FeedbackTally(id=uuid.uuid4(), survey_id=survey, score=score, answers=0)
            )
            .on_conflict(action="DO NOTHING")
            .run()
        )
        await FeedbackTally.update({FeedbackTally.answers: FeedbackTally.answers + 1}).where(
            (FeedbackTally.survey_id == survey) & (FeedbackTally.score == score)
        )

    async def remove_expired(self, now: dt.datetime | None = None) -> int:
        now = now or dt.datetime.now(dt.UTC)
        gone = (
            await SurveyInvitation.delete()
            .where(SurveyInvitation.expires_at <= now)
            .returning(SurveyInvitation.id)
        )
        return len(gone)

    # --- results -----------------------------------------------------------------------

    async def results(self, actor: Actor, survey_id: str) -> Results:
        if not self.may_view(actor.role):
            await self._record(actor, "results", survey_id[:64], Outcome.DENIED)
            raise Forbidden("your role may not see survey results")
        survey = await self.survey(survey_id)
        rows = await FeedbackTally.select(FeedbackTally.score, FeedbackTally.answers).where(
            FeedbackTally.survey_id == uuid.UUID(survey.id)
        )
        counts = {s: 0 for s in survey.scale}
        for row in rows:
            counts[int(row["score"])] = int(row["answers"])
        return self.suppressed(survey, counts)

    def suppressed(self, survey: SurveyInfo, counts: Mapping[int, int]) -> Results:
        """The small-group rule over a grid of score groups (rows) by scores (columns):
        every score is in exactly one group, so the row totals are the group counts the
        overall score is computed from. Suppression hides small cells and whatever would
        give them away (server.reports.suppression), and the overall score is shown only
        when no group count is hidden: it is a function of the group counts and the total,
        so it would otherwise undo the suppression."""
        total = sum(counts.values())
        group_of = {s: name for name, scores in GROUPS[survey.kind] for s in scores}
        rows = [name for name, _ in GROUPS[survey.kind]]
        columns = [str(s) for s in survey.scale]
        rule = SmallGroups(minimum=self.min_group_size, exact=False)
        hidden = rule.hidden(rows, columns, {(group_of[s], str(s)): n for s, n in counts.items()})
        shown: dict[int, int | None] = {
            s: None if (group_of[s], str(s)) in hidden else n for s, n in counts.items()
        }
        groups: dict[str, int | None] = {
            name: None if (name, TOTAL) in hidden else sum(counts[s] for s in scores)
            for name, scores in GROUPS[survey.kind]
        }
        too_few = (
            total < self.min_group_size
            or (TOTAL, TOTAL) in hidden
            or any(n is None for n in groups.values())
        )
        return Results(
            survey=survey,
            answers=total,
            counts=shown,
            groups=groups,
            score=None if too_few else overall_score(survey.kind, counts),
            minimum=self.min_group_size,
        )

    # --- the CSAT job ------------------------------------------------------------------

    async def _claim_case(self, case_id: str) -> bool:
        async with db.write_transaction():
            inserted = (
                await CaseSurvey.insert(
                    CaseSurvey(
                        id=uuid.uuid4(),
                        case_id=uuid.UUID(case_id),
                        sent_on=dt.datetime.now(dt.UTC).date(),
                    )
                )
                .on_conflict(action="DO NOTHING")
                .returning(CaseSurvey.id)
            )
        return bool(inserted)

    async def _closed_cases(self, now: dt.datetime) -> list[tuple[str, str, str]]:
        """(case id, contact id, subject id) of cases resolved or closed since the lookback,
        most recently changed first, not yet asked; at most ``CSAT_BATCH``."""
        found: list[tuple[str, str, str]] = []
        since = now - CSAT_LOOKBACK
        for page in range(1, CSAT_SCAN_PAGES + 1):
            batch = await self._gateway.list(
                SYSTEM,
                "case",
                purpose="customer_support",
                filters={"status": list(CSAT_STATUSES)},
                sort="-updated_at",
                page=page,
                page_size=100,
            )
            ids = [uuid.UUID(r.id) for r in batch.items]
            asked = {
                str(r["case_id"])
                for r in (
                    await CaseSurvey.select(CaseSurvey.case_id).where(CaseSurvey.case_id.is_in(ids))
                    if ids
                    else []
                )
            }
            for record in batch.items:
                if _utc(record.updated_at) < since:
                    return found
                contact = record.values.get("contact_id")
                if record.id not in asked and contact and not record.erased:
                    found.append((record.id, str(contact), record.subject_id))
                    if len(found) >= CSAT_BATCH:
                        return found
            if page * 100 >= batch.total or not batch.items:
                break
        return found

    async def send_csat_due(self, now: dt.datetime | None = None) -> CsatRun:
        """Send the CSAT question for cases closed recently and not yet asked (bounded)."""
        run = CsatRun()
        if self._outbox is None or not self._outbox.enabled:
            return run  # no mail server: try again once one is configured
        now = now or dt.datetime.now(dt.UTC)
        survey = await self.csat_survey()
        for case_id, contact_id, subject_id in await self._closed_cases(now):
            run.scanned += 1
            basis = await self._consent.has_basis(subject_id, "service_communication", "email")
            if not basis.ok or not await self._claim_case(case_id):
                run.skipped += 1
                continue
            try:
                contact = await self._gateway.read(
                    SYSTEM, "contact", contact_id, purpose="service_communication"
                )
            except GatewayError:  # restricted, erased or gone meanwhile
                run.skipped += 1
                continue
            address = contact.values.get("email")
            if not address or contact.erased:
                run.skipped += 1
                continue
            link = await self.invite(survey, subject_id, case_id)
            await self._outbox.send(
                str(address),
                "How did we do?",
                f"{survey.question}\n\nYour request with us was closed. One click tells us how "
                f"we did (the link works once, for {INVITATION_DAYS} days):\n{link}\n\n"
                "You receive this once per closed request. Not interested? Ignore it.",
                purpose=MAIL_PURPOSE,
                reference=case_id,
                subject_id=subject_id,
            )
            run.sent += 1
        return run


def build_feedback(
    gateway: Gateway,
    policy: PolicyEngine,
    audit: AuditLog,
    consent: ConsentEngine,
    outbox: MailOutbox | None,
    settings: Settings,
) -> Feedback:
    return Feedback(
        gateway,
        policy,
        audit,
        consent,
        outbox,
        gateway.derived_key(b"consentry/feedback/links/v1"),
        public_url=settings.public_url,
        min_group_size=settings.report_min_group_size,
    )


def scale_labels(kind: str) -> Sequence[str]:
    if kind == "csat":
        return ("Very unsatisfied", "Unsatisfied", "Neutral", "Satisfied", "Very satisfied")
    return tuple(str(s) for s in SCALES["nps"])
