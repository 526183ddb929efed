"""Retention rules: a dry run reports and changes nothing; the real run does what it said,
honouring legal holds; the periods in code agree with the data map's prose."""

from __future__ import annotations

import datetime as dt
import re

from server.datamap import RECORD_TYPES, Category
from server.dsr.retention import RULES, active_rules
from server.gateway import Actor
from server.services import Services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import sales_contact
from tests.conftest import Staff
from tests.dbutil import raw_sql
from tests.server.cli.test_cli import Install, consentry, install

__all__ = ["install"]
ADMIN = Actor.system("test-admin")
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=4 * 366)  # four years on


def test_rule_periods_match_the_data_map() -> None:
    assert {rule.resource for rule in active_rules()} <= set(RECORD_TYPES)
    for rule in RULES:
        rt = RECORD_TYPES.get(rule.resource)
        if rt is None:
            continue
        fields = [f for f in rt.fields if f.encrypted]
        if rule.action == "anonymise":
            fields = [f for f in fields if f.category is Category.FREE_TEXT]
        assert fields, rule.name
        for spec in fields:
            assert re.search(rf"\b{rule.years} years\b", spec.retention), (rule.name, spec.name)


async def seed(services: Services, staff: Staff) -> dict[str, str]:
    gw = services.gateway
    actor = staff.actor(await staff.create("sales"))
    lead = await gw.create(actor, "contact", sales_contact(lifecycle_stage="lead"))
    customer = await gw.create(actor, "contact", sales_contact(lifecycle_stage="customer"))
    former = await gw.create(actor, "contact", sales_contact(lifecycle_stage="former_customer"))
    talk = await gw.create(
        ADMIN,
        "interaction",
        {
            "channel": "phone_call",
            "occurred_at": "2026-01-05T10:00:00+00:00",
            "summary": "Asked about prices",
            "contact_id": customer.id,
        },
    )
    until = (LATER + dt.timedelta(days=365)).date()
    await services.erasure.holds.add(former.subject_id, "all", "contract", until, by="user:1")
    return {
        "lead": lead.id,
        "lead_subject": lead.subject_id,
        "customer": customer.id,
        "former": former.id,
        "former_subject": former.subject_id,
        "talk": talk.id,
    }


def table(report: object) -> dict[str, tuple[int, int, int, int]]:
    return {
        r.rule: (r.matched, r.erased, r.anonymised, r.held)
        for r in report.rules  # type: ignore[attr-defined]
    }


async def test_dry_run_reports_and_the_real_run_does_it(
    services: Services, settings: Settings, staff: Staff
) -> None:
    ids = await seed(services, staff)
    gw = services.gateway
    audit_before = await raw_sql(settings.database_url, "SELECT count(*) AS n FROM audit")

    dry = await services.retention.run(dry_run=True, now=LATER)

    expected = {
        "held_erasures": (0, 0, 0, 0),
        "inactive_contacts": (2, 1, 0, 1),
        "old_interactions": (1, 0, 1, 0),
    }
    assert {k: v for k, v in table(dry).items() if k in expected} == expected
    lead = await gw.read(ADMIN, "contact", ids["lead"], purpose="compliance")
    assert not lead.erased  # nothing changed
    assert await services.erasure.job_for_subject(ids["lead_subject"]) is None
    talk = await gw.read(ADMIN, "interaction", ids["talk"], purpose="compliance")
    assert talk.values["summary"] == "Asked about prices"
    audit_after = await raw_sql(settings.database_url, "SELECT count(*) AS n FROM audit")
    assert audit_after[0]["n"] > audit_before[0]["n"]  # the dry run itself is audited

    real = await services.retention.run(now=LATER)

    assert {k: v for k, v in table(real).items() if k in expected} == expected
    assert (await gw.read(ADMIN, "contact", ids["lead"], purpose="compliance")).erased
    held = await services.erasure.job_for_subject(ids["former_subject"])
    assert held is not None
    assert held.state == "held"
    assert await services.erasure.restrictions.is_restricted(ids["former_subject"])
    customer = await gw.read(ADMIN, "contact", ids["customer"], purpose="compliance")
    assert not customer.erased
    talk = await gw.read(ADMIN, "interaction", ids["talk"], purpose="compliance")
    assert talk.values["summary"] is None
    assert talk.values["channel"] == "phone_call"  # the record itself stays
    actors = await raw_sql(
        settings.database_url, "SELECT DISTINCT actor_id FROM audit WHERE action = 'erase'"
    )
    assert [a["actor_id"] for a in actors] == ["system:retention"]

    # Nothing left to do: a second run matches only the held erasure.
    again = await services.retention.run(now=LATER)
    assert table(again)["inactive_contacts"] == (1, 0, 0, 1)
    assert table(again)["old_interactions"] == (0, 0, 0, 0)


async def test_tasks_untouched_for_three_years_lose_their_titles(
    services: Services, staff: Staff
) -> None:
    """Tasks about nobody have no person whose erasure would reach them: the retention
    rule is what ends their free text, and tasks about people go the same way."""
    gw = services.gateway
    rep = staff.actor(await staff.create("sales"))
    person = await gw.create(rep, "contact", sales_contact())
    loose = await gw.create(
        rep, "task", {"title": "Book the stand at the trade fair", "due_at": "2026-03-01"}
    )
    theirs = await gw.create(
        rep,
        "task",
        {"title": "Call back about the invoice", "due_at": "2026-03-02", "contact_id": person.id},
    )

    soon = await services.retention.run(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=365))
    assert table(soon)["old_tasks"] == (0, 0, 0, 0)
    later = await services.retention.run(now=LATER)

    assert table(later)["old_tasks"] == (2, 0, 2, 0)
    for task_id in (loose.id, theirs.id):
        task = await gw.read(ADMIN, "task", task_id, purpose="compliance")
        assert task.values["title"] is None
        assert task.values["due_at"] is not None  # the record stays, without its text
    assert not (await gw.read(ADMIN, "contact", person.id, purpose="compliance")).erased


async def test_only_one_worker_claims_the_daily_run(services: Services) -> None:
    today = dt.date(2026, 11, 29)
    assert await services.retention.claim_day(today)
    assert not await services.retention.claim_day(today)
    assert await services.retention.claim_day(today + dt.timedelta(days=1))
    moment = dt.datetime(2026, 12, 1, 3, tzinfo=dt.UTC)
    assert await services.retention.run_daily(moment) is not None
    assert await services.retention.run_daily(moment) is None


def test_cli_retention_run(install: Install) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    dry = consentry("retention", "run", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing was changed" in dry.stdout
    assert "inactive_contacts (erase contact): 0 matched, 0 would erase" in dry.stdout
    real = consentry("retention", "run")
    assert real.exit_code == 0, real.output
    assert "0 erased" in real.stdout


async def test_stale_unconverted_leads_are_erased_and_converted_ones_left_to_the_contact(
    services: Services,
) -> None:
    from tests.server.leads.test_leads import lead_values

    gw = services.gateway
    stale = await gw.create(ADMIN, "lead", lead_values(), purpose="customer_relationship")
    won = await gw.create(ADMIN, "lead", lead_values(), purpose="customer_relationship")
    converted = await gw.convert_lead(ADMIN, won.id, purpose="customer_relationship")

    report = await services.retention.run(now=LATER)

    assert table(report)["stale_leads"] == (1, 1, 0, 0)
    assert (await gw.read(ADMIN, "lead", stale.id, purpose="compliance")).erased
    # The converted lead's person is a contact now (a customer): the contact rules decide.
    contact = await gw.read(ADMIN, "contact", converted.contact_id, purpose="compliance")
    assert not contact.erased
    assert contact.values["first_name"]
