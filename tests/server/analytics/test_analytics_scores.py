"""Customer scores under profiling (issue 20, part C): computed only for people with a
basis for profiling, sealed under their key, gone at once when they withdraw or object,
explained in their export and on the 360 page; the documented validation figure is what
the command prints."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from audit.tables import AuditRecord
from server.analytics import model
from server.analytics.tables import CustomerScore
from server.cli import cli
from server.dsr.export import build_export
from server.services import Services
from server.settings import ConfigurationError, Settings
from tests.admin_ui.test_admin_ui import submit, text_of, web_login
from tests.conftest import Staff
from tests.server.crm.test_crm_records import deal_values, interaction_values, sales_contact

NOW = dt.datetime.now(dt.UTC)
DOC = Path(__file__).resolve().parents[3] / "docs" / "analytics-scores.md"
PEOPLE = 44  # enough history for the churn model (MIN_TRAINING = 40), small and quick


async def customers(services: Services, staff: Staff) -> tuple[Any, list[Any]]:
    """``PEOPLE`` customers with histories: every fourth went quiet 300 days ago."""
    rep = await staff.create("sales")
    actor = staff.actor(rep)
    gw = services.gateway
    made = await gw.create_many(
        actor,
        "contact",
        [sales_contact(first_name=f"Person{i}", email=f"p{i}@example.com") for i in range(PEOPLE)],
    )
    people = [await gw.read(actor, "contact", cid) for cid in made.created]
    rows = []
    for i, person in enumerate(people):
        quiet = i % 4 == 0
        # Everyone has a history; the loyal ones were active shortly before the snapshot too.
        for days in (400,) if quiet else (400, 200):
            when = (NOW - dt.timedelta(days=days)).isoformat()
            rows.append(interaction_values(person.id, occurred_at=when))
        for k in range(2 + i % 3):
            days = 300 + 30 * k if quiet else 10 + 60 * k
            when = (NOW - dt.timedelta(days=days)).isoformat()
            rows.append(interaction_values(person.id, occurred_at=when))
    await gw.create_many(actor, "interaction", rows)
    await gw.create_many(
        actor, "deal", [deal_values(p.id, stage="won", amount=50_000) for p in people[1::2]]
    )
    return actor, people


async def consent_to_profiling(services: Services, subject_ids: list[str]) -> None:
    notice = await services.consent.publish_notice(
        "Notice", "Profiling to tailor offers.", by="user:1"
    )
    for subject in subject_ids:
        await services.consent.grant(
            subject,
            "profiling",
            source="web_form",
            notice_version=notice.version,
            actor_id="subject",
        )


async def scored_subjects() -> set[str]:
    return {str(r["subject_id"]) for r in await CustomerScore.select(CustomerScore.subject_id)}


async def test_only_people_with_a_profiling_basis_are_scored(
    services: Services, staff: Staff
) -> None:
    _, people = await customers(services, staff)
    consenting = [p.subject_id for p in people[:-4]]  # the last four never consented
    await consent_to_profiling(services, consenting)
    run = await services.analytics.score_all()
    assert run.scored == len(consenting)
    assert await scored_subjects() == set(consenting)
    assert run.validation_auc is not None  # the model trained and was validated
    # Nor did the job process them: its audit events name only the people it scored.
    events = await AuditRecord.select(AuditRecord.subject_ids).where(
        AuditRecord.action == "profile.score"
    )
    named = {s for e in events for s in json.loads(e["subject_ids"])}
    assert named == set(consenting)
    # Sealed: the stored row reveals neither the segment nor the risk.
    row = await CustomerScore.select().first()
    assert row is not None
    assert "segment" not in row["sealed"]
    assert "churn" not in row["sealed"]
    held = await services.analytics.of_subject(
        staff.actor(await staff.create("sales")), consenting[0], why="test"
    )
    assert held is not None
    assert held.scores["segment"]
    assert len(held.scores["churn_factors"]) == 3
    assert 0.0 <= held.scores["churn_risk"] <= 1.0


async def test_withdrawal_and_objection_delete_scores_at_once_and_the_export_says_why(
    services: Services, staff: Staff
) -> None:
    _, people = await customers(services, staff)
    subjects = [p.subject_id for p in people]
    await consent_to_profiling(services, subjects)
    await services.analytics.score_all()
    withdrawn, objector = subjects[1], subjects[2]
    await services.consent.withdraw(withdrawn, "profiling", source="portal", actor_id="subject")
    await services.consent.object(objector, source="portal", actor_id="subject")
    left = await scored_subjects()
    assert withdrawn not in left
    assert objector not in left
    assert subjects[3] in left
    # A later run does not score them again.
    await services.analytics.score_all()
    left = await scored_subjects()
    assert withdrawn not in left
    assert objector not in left
    assert len(left) == len(subjects) - 2

    bundle = await build_export(services, objector, requested_by="system:test")
    data = json.loads(zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)).read("data.json"))
    assert data["profiling"]["scores"] is None
    assert data["profiling"]["basis"] == "objected"
    assert "objected" in data["profiling"]["explanation"]
    assert "gradient-boosted" in data["profiling"]["logic"]
    kept = await build_export(services, subjects[3], requested_by="system:test")
    data = json.loads(zipfile.ZipFile(io.BytesIO(kept.zip_bytes)).read("data.json"))
    assert data["profiling"]["scores"]["segment"]
    assert data["profiling"]["computed_at"]


async def test_the_360_page_shows_scores_with_their_explanation(
    services: Services, staff: Staff
) -> None:
    _, people = await customers(services, staff)
    await consent_to_profiling(services, [p.subject_id for p in people[:-1]])
    await services.analytics.score_all()
    admin = await staff.create("admin")
    client = await web_login(staff, admin)
    page = text_of(await client.get(f"/contacts/{people[0].id}/360"))
    assert "Scores (profiling)" in page
    assert "Churn risk" in page
    assert "What the churn risk rests on" in page
    assert "retained customers' median" in page
    assert re.search(r"Computed .*deals, interactions and cases", page)
    unscored = text_of(await client.get(f"/contacts/{people[-1].id}/360"))
    assert "has not consented to profiling" in unscored


def test_the_documented_validation_figure_is_what_the_command_prints() -> None:
    documented = re.search(
        r"`consentry analytics validate --generate (\d+)`.*?ROC AUC: (0\.\d{3})",
        DOC.read_text(),
        re.S,
    )
    assert documented is not None
    result = CliRunner().invoke(cli, ["analytics", "validate", "--generate", documented[1]])
    assert result.exit_code == 0, result.output
    assert f"held-out ROC AUC: {documented[2]}" in result.output


async def test_a_segment_may_filter_on_score_segments_only_where_scores_may_be_used(
    services: Services, staff: Staff
) -> None:
    import pytest

    from server.campaigns.service import SegmentInfo
    from server.gateway import Forbidden, InvalidInput

    _, people = await customers(services, staff)
    await consent_to_profiling(services, [p.subject_id for p in people])
    await services.analytics.score_all()
    marketer = staff.actor(await staff.create("marketing"))
    reader = staff.actor(await staff.create("sales"))
    everyone = {
        s: (await services.analytics.of_subject(reader, s, why="test"))
        for s in [p.subject_id for p in people]
    }
    hibernating = {
        s for s, held in everyone.items() if held and held.scores["segment"] == "hibernating"
    }
    assert hibernating  # the quiet quarter
    segment = await services.campaigns.create_segment(
        marketer, "Gone quiet", "", {"score_segment": ["hibernating"]}
    )
    assert await services.campaigns.segment_size(marketer, segment) == len(hibernating)
    with pytest.raises(InvalidInput):
        services.campaigns.clean_filters(marketer, {"score_segment": ["rich"]})
    support = staff.actor(await staff.create("support"))
    with pytest.raises(InvalidInput):  # a role that may not use profiling
        services.campaigns.clean_filters(support, {"score_segment": ["loyal"]})
    as_saved = SegmentInfo(**{**segment.__dict__})
    with pytest.raises(Forbidden):
        await services.campaigns.gateway_filters(marketer, as_saved, "service_communication")

    # The segment form offers the score segments to marketing, and the page counts them.
    marketer_login = await staff.create("marketing")
    web = await web_login(staff, marketer_login)
    saved = await submit(
        web,
        "/campaigns/segments/new",
        "/campaigns/segments/new",
        {"name": "Quiet ones", "score_segment": ["hibernating"]},
    )
    page = text_of(await web.get(saved.headers["location"]))
    assert f"Members now: {len(hibernating)}" in page
    assert "Score segment is Hibernating" in page


def test_the_record_of_processing_lists_the_profiling_activity(settings: Any) -> None:
    from policy.enforcer import PolicyEngine
    from server.processing_record import build_record

    record = build_record(settings, PolicyEngine()).to_json()
    profiling = next(p for p in record["purposes"] if p["name"] == "profiling")
    assert "churn risk" in profiling["derived_data"]
    used = {
        f["name"] for d in profiling["personal_data"] for c in d["categories"] for f in c["fields"]
    }
    assert {"stage", "occurred_at"} <= used
    assert all(p["derived_data"] is None for p in record["purposes"] if p["name"] != "profiling")


async def test_the_daily_job_scores_in_a_child_process_and_erasure_removes_the_scores(
    services: Services, staff: Staff, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daily job scores in ``consentry analytics score`` as a child process (so the
    server worker never carries scikit-learn), configured by the same environment."""
    from server.background import score_customers_in_child

    _, people = await customers(services, staff)
    subjects = [p.subject_id for p in people]
    await consent_to_profiling(services, subjects)
    for name, value in {
        "HOME": settings.home,
        "DATABASE_URL": settings.database_url,
        "MASTER_KEY_FILE": settings.master_key_file,
        "AUDIT_SIGNING_KEY_FILE": settings.audit_signing_key_file,
    }.items():
        monkeypatch.setenv(f"CONSENTRY_{name}", str(value))
    monkeypatch.setenv("CONSENTRY_SESSION_SECRET", "test-session-secret")
    assert await score_customers_in_child() == 0  # what the daily housekeeping runs
    assert await scored_subjects() == set(subjects)
    await services.erasure.erase(subjects[0], by="system:test")
    assert subjects[0] not in await scored_subjects()


async def test_a_restriction_deletes_scores_at_once_and_stops_scoring_until_lifted(
    services: Services, staff: Staff
) -> None:
    _, people = await customers(services, staff)
    subjects = [p.subject_id for p in people]
    await consent_to_profiling(services, subjects)
    await services.analytics.score_all()
    restricted = subjects[5]
    assert restricted in await scored_subjects()
    await services.erasure.restrictions.restrict(
        restricted, "data_subject_request", by="user:1", by_role="compliance"
    )
    # Gone from the database at once, not at the next scoring run.
    assert restricted not in await scored_subjects()
    bundle = await build_export(services, restricted, requested_by="system:test")
    data = json.loads(zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)).read("data.json"))
    assert data["profiling"]["scores"] is None
    assert data["profiling"]["basis"] == "restricted"
    assert "restricted" in data["profiling"]["explanation"]
    # Not computed again while it lasts; after it is lifted, the next run scores them.
    await services.analytics.score_all()
    assert restricted not in await scored_subjects()
    assert subjects[6] in await scored_subjects()
    await services.erasure.restrictions.lift(restricted, by="user:1", by_role="compliance")
    await services.analytics.score_all()
    assert restricted in await scored_subjects()


def test_customer_value_never_adds_amounts_of_different_currencies() -> None:
    """A customer who won 1,000 EUR and 1,000 USD of deals is not worth "2,000": without a
    rate the USD stays apart; with the configured rate it is converted."""
    when = NOW - dt.timedelta(days=10)
    facts = {
        "deal": [
            ("both", 100_000, "EUR", "won", None, when),
            ("both", 100_000, "USD", "won", None, when),
            ("euro", 100_000, "EUR", "won", None, when),
        ]
    }
    apart = model.score_everyone(model.activities(facts, rates=model.ValueRates("EUR")), NOW)
    both = apart.scores["both"]
    assert both.historical_value == 1000.0  # the EUR alone
    assert both.unconverted == {"USD": 1000.0}
    assert both.value_currency == "EUR"
    assert both.as_json()["unconverted"] == {"USD": 1000.0}
    assert both.monetary == apart.scores["euro"].monetary  # equal value, equal rank
    rates = model.ValueRates("EUR", {"USD": Decimal("0.5")})
    converted = model.score_everyone(model.activities(facts, rates=rates), NOW).scores["both"]
    assert converted.historical_value == 1500.0
    assert converted.unconverted == {}
    # The rate table is a documented setting, checked at start-up.
    settings = Settings.from_env({"CONSENTRY_SCORE_RATES": "usd=0.5, GBP=1.17"})
    assert settings.score_rates == (("GBP", Decimal("1.17")), ("USD", Decimal("0.5")))
    assert settings.score_currency == "EUR"
    for bad in ("USD", "USD=-1", "USD=x", "DOLLAR=1"):
        with pytest.raises(ConfigurationError, match="SCORE_RATES"):
            Settings.from_env({"CONSENTRY_SCORE_RATES": bad})
    doc = DOC.read_text()
    assert "CONSENTRY_SCORE_RATES" in doc
