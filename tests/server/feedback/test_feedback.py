"""Feedback (issue 21, item 6): the CSAT question after a case is closed, NPS surveys sent
as consent-gated campaigns, named answers as sealed records about the person, anonymous
answers as counts with no link back, results under the small-group rule, and the rights
(export, erasure, retention) reaching the answers.

Mail goes to a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from httpx import AsyncClient
from litestar import Litestar

from server.app import create_app
from server.feedback.service import CSAT_SURVEY_ID
from server.gateway import Actor, Record
from server.requests import loggable_path
from server.services import Services, build_services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, text_of
from tests.conftest import PASSWORD, Staff, contact_values, http_client
from tests.dbutil import raw_sql
from tests.server.campaigns.test_campaigns import _grant, _notice
from tests.server.test_mail import LocalSmtp, local_smtp

SEED = Actor.system("test-seed")
ADMIN = Actor.system("test-admin")
SURVEY_LINK = re.compile(r"http://testserver(/portal/survey/\S+)")


@pytest.fixture
def smtp() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture
def mail_services(settings: Settings, smtp: LocalSmtp) -> Services:
    return build_services(smtp.settings(settings, public_url="http://testserver"))


@pytest.fixture
def mail_app(mail_services: Services) -> Litestar:
    return create_app(mail_services.settings, mail_services)


@pytest.fixture
async def web(mail_app: Litestar) -> AsyncIterator[AsyncClient]:
    async with http_client(mail_app) as client:
        yield client


async def _closed_case(services: Services, **contact: Any) -> tuple[Record, Record]:
    person = await services.gateway.create(SEED, "contact", contact_values(**contact))
    case = await services.gateway.create(
        SEED,
        "case",
        {"title": "Broken kettle", "kind": "complaint", "contact_id": person.id},
    )
    await services.gateway.update(SEED, "case", case.id, {"status": "resolved"})
    return person, case


def _links(smtp: LocalSmtp) -> list[str]:
    return [m.group(1) for r in smtp.received if (m := SURVEY_LINK.search(r.text))]


async def _answer(web: AsyncClient, link: str, score: int, comment: str = "") -> Any:
    page = await web.get(link)
    assert page.status_code == 200, page.text[:300]
    return await web.post(
        link, data={"score": str(score), "comment": comment, "_csrf_token": csrf_of(page)}
    )


async def test_a_closed_case_gets_one_csat_question_and_the_answer_is_a_sealed_record(
    mail_services: Services, settings: Settings, smtp: LocalSmtp, web: AsyncClient
) -> None:
    services = mail_services
    person, case = await _closed_case(services, email="kettle.owner@example.org")
    open_person = await services.gateway.create(SEED, "contact", contact_values())
    await services.gateway.create(
        SEED, "case", {"title": "Still open", "kind": "complaint", "contact_id": open_person.id}
    )
    feedback = services.feedback

    first = await feedback.send_csat_due()
    assert (first.sent, first.skipped) == (1, 0)
    assert [r.message["To"] for r in smtp.received] == ["kettle.owner@example.org"]
    assert (await feedback.send_csat_due()).sent == 0  # asked once, never twice
    [link] = _links(smtp)

    thanks = await _answer(web, link, 2, "The kettle still leaks")
    assert thanks.status_code == 200
    assert "kept with your customer record" in text_of(thanks)
    again = await web.get(link)
    assert again.status_code == 410  # the link works once
    assert "used already or has expired" in text_of(again)

    answers = await services.gateway.list(ADMIN, "feedback", filters={"contact_id": person.id})
    [answer] = answers.items
    assert answer.values["score"] == 2
    assert answer.values["comment"] == "The kettle still leaks"
    assert answer.values["case_id"] == case.id
    assert answer.values["kind"] == "csat"
    stored = await raw_sql(settings.database_url, "SELECT * FROM feedback_answer")
    assert str(stored[0]["score"]).startswith("cs1.")  # the score too is sealed
    assert "leaks" not in json.dumps(stored, default=str)
    assert await raw_sql(settings.database_url, "SELECT * FROM survey_invitation") == []


async def test_no_csat_question_for_a_restricted_person_and_a_bad_score_is_refused(
    mail_services: Services, smtp: LocalSmtp, web: AsyncClient
) -> None:
    services = mail_services
    restricted, _ = await _closed_case(services)
    await services.erasure.restrictions.restrict(
        restricted.subject_id, "data_subject_request", by="system:test"
    )
    run = await services.feedback.send_csat_due()
    assert run.sent == 0
    assert smtp.received == []

    await _closed_case(services)
    await services.feedback.send_csat_due()
    [link] = _links(smtp)
    bad = await _answer(web, link, 9)  # CSAT is 1 to 5
    assert bad.status_code == 400
    assert "Choose a score from 1 to 5." in text_of(bad)
    assert (await _answer(web, link, 5)).status_code == 200


async def test_an_anonymous_nps_survey_goes_only_to_consenting_people_and_keeps_only_a_count(
    mail_services: Services, settings: Settings, smtp: LocalSmtp, web: AsyncClient
) -> None:
    services = mail_services
    identity, _ = await services.accounts.create_user(
        "mia.marketing@staff.example.com", "marketing", team="north", password=PASSWORD
    )
    marketer = Actor.staff(identity.user_id, identity.role, identity.team, "test")
    agreed = await services.gateway.create(
        SEED, "contact", contact_values(email="yes.please@example.org", lifecycle_stage="customer")
    )
    await services.gateway.create(
        SEED, "contact", contact_values(email="no.thanks@example.org", lifecycle_stage="customer")
    )
    await _grant(services, agreed, await _notice(services), "marketing_email")
    segment = await services.campaigns.create_segment(
        marketer, "Customers", "", {"lifecycle_stage": ["customer"]}
    )
    campaign = await services.campaigns.create_campaign(
        marketer,
        {
            "name": "NPS winter",
            "purpose": "marketing_email",
            "segment_id": segment.id,
            "subject_line": "One question",
            "body": "Hello {first_name}, would you recommend us? {survey_link}",
        },
    )
    survey = await services.feedback.create_nps_survey(
        marketer,
        {
            "name": "NPS winter",
            "question": "How likely are you to recommend us?",
            "campaign_id": campaign.id,
            "anonymous": "yes",
        },
    )
    sent = await services.campaigns.send(marketer, campaign.id, 1)
    assert sent.sent == 1
    assert [r.message["To"] for r in smtp.received] == ["yes.please@example.org"]
    [link] = _links(smtp)

    page = await web.get(link)
    assert "This survey is anonymous" in text_of(page)
    assert 'name="comment"' not in page.text
    assert (await _answer(web, link, 10, "my name is Ada")).status_code == 200

    assert await raw_sql(settings.database_url, "SELECT * FROM feedback_answer") == []
    assert await raw_sql(settings.database_url, "SELECT * FROM survey_invitation") == []
    tally = await raw_sql(
        settings.database_url, "SELECT * FROM feedback_tally WHERE survey_id = ?", survey.id
    )
    assert [(r["score"], r["answers"]) for r in tally] == [(10, 1)]
    # No link back: no subject, no time, nothing typed, in the count or the audit trail.
    assert set(tally[0]) == {"id", "survey_id", "score", "answers"}
    audit = await raw_sql(
        settings.database_url,
        "SELECT * FROM audit WHERE resource_type IN ('feedback', 'survey') AND action <> ?",
        "survey.create",
    )
    assert audit == []
    assert "Ada" not in json.dumps(tally, default=str)
    assert loggable_path(link) == "/portal/survey/[token]"  # the access log cuts the token


async def test_results_hide_small_groups_and_the_score_until_there_are_enough_answers(
    services: Services, settings: Settings
) -> None:
    feedback = services.feedback
    assert feedback.min_group_size == 5
    survey = await feedback.csat_survey()
    for score in (5, 5, 4):
        await feedback.count_answer(survey.id, score)
    viewer = Actor.staff(1, "support", "north")
    few = await feedback.results(viewer, survey.id)
    assert few.answers == 3
    assert few.score is None
    assert few.score_label == "not shown: too few answers in a group"
    assert few.counts[4] is None  # small counts are hidden
    assert few.counts[5] is None
    assert few.counts[3] == 0  # nobody answered 3: nothing to protect
    for score in (5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 1, 1, 1, 1, 1, 1):
        await feedback.count_answer(survey.id, score)
    enough = await feedback.results(viewer, survey.id)
    assert enough.answers == 19
    assert enough.groups == {"Unsatisfied": 6, "Neutral": 0, "Satisfied": 13}
    assert enough.counts == {1: 6, 2: 0, 3: 0, 4: 6, 5: 7}
    assert enough.score_label == "68%"  # 13 of 19 satisfied
    # One person alone in a group hides their count, what would give it away, and the
    # score (it would tell the group counts).
    scattered = feedback.suppressed(survey, {1: 6, 2: 0, 3: 1, 4: 6, 5: 7})
    assert scattered.counts[3] is None
    assert scattered.groups["Neutral"] is None
    assert scattered.score is None
    shown = [n for n in scattered.counts.values() if n is not None]
    assert sum(shown) < 20  # not everything else is shown: 3 is not "the rest"


async def test_the_persons_page_opens_after_they_answered_a_survey(
    mail_services: Services, smtp: LocalSmtp, web: AsyncClient, staff: Staff
) -> None:
    """A survey answer has no page of its own; the person's 360 page must still open (it
    once failed with a 500 for everyone as soon as the person had answered)."""
    from tests.admin_ui.test_admin_ui import web_login

    person, _case = await _closed_case(mail_services, email="kettle.owner@example.org")
    await mail_services.feedback.send_csat_due()
    [link] = _links(smtp)
    assert (await _answer(web, link, 4, "Fixed quickly")).status_code == 200

    admin = await web_login(staff, await staff.create("admin"))
    page = await admin.get(f"/contacts/{person.id}")
    assert page.status_code == 200, page.text[:300]
    assert "Broken kettle" in page.text  # the case is still listed on the person's page


async def test_the_results_page_and_who_may_see_it(services: Services, staff: Staff) -> None:
    from tests.admin_ui.test_admin_ui import web_login

    support = await web_login(staff, await staff.create("support"))
    page = await support.get("/feedback")
    assert page.status_code == 200
    assert "Customer satisfaction after a case" in page.text
    assert "New NPS survey" not in page.text  # support may not create surveys
    sales = await web_login(staff, await staff.create("sales"))
    assert (await sales.get("/feedback")).status_code == 403


async def test_export_erasure_and_retention_reach_named_answers(
    mail_services: Services, settings: Settings, smtp: LocalSmtp, web: AsyncClient
) -> None:
    services = mail_services
    person, _ = await _closed_case(services)
    await services.feedback.send_csat_due()
    [link] = _links(smtp)
    await _answer(web, link, 4, "Friendly staff")
    exported = await services.gateway.export_subject(ADMIN, person.subject_id)
    answers = [r for r in exported if r.resource == "feedback"]
    assert [(a.values["score"], a.values["comment"]) for a in answers] == [(4, "Friendly staff")]

    # Retention: two years on, the comment goes and the sealed score stays.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2 * 366)
    await services.retention.run(now=later)
    [kept] = (
        await services.gateway.list(ADMIN, "feedback", filters={"contact_id": person.id})
    ).items
    assert kept.values["comment"] is None
    assert kept.values["score"] == 4

    # A second link still open when the person is erased is deleted with them.
    await services.feedback.invite(await services.feedback.csat_survey(), person.subject_id)
    await services.erasure.erase(person.subject_id, by="user:1")
    rows = await raw_sql(
        settings.database_url,
        "SELECT * FROM feedback_answer WHERE subject_id = ?",
        person.subject_id,
    )
    assert len(rows) == 1
    assert all(not (isinstance(v, str) and v.startswith("cs1.")) for v in rows[0].values())
    assert rows[0]["score"] in (None, "")
    assert await raw_sql(settings.database_url, "SELECT * FROM survey_invitation") == []
    assert await services.gateway.vault.keys_for([person.subject_id]) == {}
    await services.audit_trail.seal_all()
    assert (await services.audit_trail.verify()).ok
    assert CSAT_SURVEY_ID  # the survey the migration made
