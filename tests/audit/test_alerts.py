"""Audit alerts: rules over the audit log, the alerts they raise, their e-mails and pages.

Every scenario is produced the way production produces it - staff acting through the
gateway, which writes the audit events - and then ``AlertEngine.evaluate()`` runs over
the log. Thresholds are made small through the rule API, and the other rules are switched
off so that each test sees only the rule it is about.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import replace
from typing import Any

import pytest

from audit.alert_tables import AuditAlert
from audit.alerts.engine import AlertEngine
from audit.alerts.evaluation import (
    _actor_episodes,  # the detector, tested on its own with chosen timestamps
    _Event,
)
from audit.alerts.model import AlertError, Changer, RuleInvalid
from audit.alerts.raised import Alert
from audit.alerts.rules import (
    DEFAULT_RULES,
    Rule,
    RuleKind,
    RuleSettings,
    format_work_days,
    parse_work_days,
)
from audit.entry_mac import EntryMac
from audit.events import AuditEvent, Outcome
from audit.log import GENESIS, AuditLog, entry_hash
from audit.tables import AuditRecord
from server import db
from server.auth.service import StaffIdentity
from server.gateway import Actor, Forbidden
from server.services import Services, build_services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, text_of, web_login
from tests.conftest import Staff, contact_values, http_client
from tests.server.test_mail import free_port, local_smtp

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --- helpers ------------------------------------------------------------------------------------


async def compliance_officer(staff: Staff) -> tuple[StaffIdentity, Changer]:
    identity = await staff.create("compliance")
    return identity, Changer(f"user:{identity.user_id}", "compliance", "test-request")


async def only_rule(alerts: AlertEngine, by: Changer, kind: RuleKind, **changes: Any) -> Rule:
    """Switch every rule off except the default rule of ``kind``, tuned with ``changes``."""
    await alerts.evaluate()  # first run: creates the default rules and the cursor
    chosen = None
    for rule in await alerts.list_rules():
        if rule.kind == kind and chosen is None:
            chosen = await alerts.update_rule(
                rule.id, replace(rule.settings, enabled=True, **changes), by=by
            )
        elif rule.enabled:
            await alerts.set_rule_enabled(rule.id, False, by=by)
    assert chosen is not None
    return chosen


def customer(**overrides: Any) -> dict[str, Any]:
    """Contact values a sales user may write (sales may not set birth dates)."""
    values = contact_values(**overrides)
    values.pop("birth_date")
    return values


async def new_contacts(services: Services, actor: Actor, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        record = await services.gateway.create(actor, "contact", customer())
        ids.append(record.id)
    return ids


async def read_all(services: Services, actor: Actor, ids: list[str]) -> None:
    for record_id in ids:
        await services.gateway.read(actor, "contact", record_id)


async def alert_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await AuditAlert.select().order_by(AuditAlert.id)
    return rows


async def audit_rows(*actions: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await AuditRecord.select()
        .where(AuditRecord.action.is_in(list(actions)))
        .order_by(AuditRecord.seq)
    )
    return rows


async def event(seq: int) -> dict[str, Any]:
    row = await AuditRecord.select().where(AuditRecord.seq == seq).first()
    assert row is not None
    return dict(row)


async def chain_is_intact() -> bool:
    """Every audit row links to the one before and matches its hash: the engine's own
    appends (alerts, rule changes) kept the log's chain whole, under concurrency too."""
    previous, expected = GENESIS, 1
    for row in await AuditRecord.select().order_by(AuditRecord.seq):
        if row["seq"] != expected or row["prev_hash"] != previous:
            return False
        if entry_hash(row) != row["hash"]:
            return False
        previous, expected = row["hash"], expected + 1
    return True


_TEST_MAC = EntryMac(b"\x07" * 32)  # these tests check alerts, not who wrote the entries


async def append(entry: AuditEvent) -> None:
    """An event written straight to the log (for actions the gateway has no API for yet)."""
    async with db.write_transaction():
        await AuditLog(_TEST_MAC).append(entry)


# --- bulk reads ---------------------------------------------------------------------------------


async def test_reading_many_distinct_customers_raises_a_bulk_read_alert(
    services: Services, staff: Staff
) -> None:
    alerts = services.alerts
    _, officer = await compliance_officer(staff)
    await only_rule(alerts, officer, RuleKind.BULK_READ, threshold=3, window_minutes=10)
    seller = staff.actor(await staff.create("sales"))
    ids = await new_contacts(services, seller, 4)
    assert await alerts.evaluate() == []  # creating records is not reading them

    # The same customer five times and a second one: two distinct subjects, below 3.
    await read_all(services, seller, [ids[0]] * 5 + [ids[1]])
    assert await alerts.evaluate() == []

    await read_all(services, seller, [ids[2]])
    [alert] = await alerts.evaluate()
    assert alert.kind == RuleKind.BULK_READ
    assert alert.actor_id == seller.id
    assert alert.actor_role == "sales"
    assert alert.matched == 3
    assert alert.is_open
    first, last = await event(alert.first_seq), await event(alert.last_seq)
    assert (first["action"], first["actor_id"]) == ("read", seller.id)
    assert (last["action"], last["actor_id"]) == ("read", seller.id)
    assert alert.window_start <= alert.window_end


async def test_a_list_page_counts_every_customer_on_it(services: Services, staff: Staff) -> None:
    alerts = services.alerts
    _, officer = await compliance_officer(staff)
    await only_rule(alerts, officer, RuleKind.BULK_READ, threshold=4, window_minutes=10)
    seller = staff.actor(await staff.create("sales"))
    await new_contacts(services, seller, 4)
    page = await services.gateway.list(seller, "contact", page=1, page_size=10)
    assert page.total == 4
    [alert] = await alerts.evaluate()
    assert alert.matched == 4
    assert (await event(alert.first_seq))["action"] == "list"


async def test_no_duplicate_alerts_when_evaluating_again_or_concurrently(
    services: Services, staff: Staff
) -> None:
    alerts = services.alerts
    _, officer = await compliance_officer(staff)
    await only_rule(alerts, officer, RuleKind.BULK_READ, threshold=3, window_minutes=10)
    seller = staff.actor(await staff.create("sales"))
    ids = await new_contacts(services, seller, 5)
    await read_all(services, seller, ids[:3])

    # Two workers evaluating at the same moment: one alert between them.
    other_worker = AlertEngine(services.audit, services.alerts.mailer, services.settings)
    first, second = await asyncio.gather(alerts.evaluate(), other_worker.evaluate())
    assert len(first) + len(second) == 1
    assert await alerts.evaluate() == []
    assert len(await alert_rows()) == 1

    # The same reader going on while the alert is open extends it: still one alert.
    await read_all(services, seller, ids[3:])
    assert await alerts.evaluate() == []
    [row] = await alert_rows()
    assert row["matched"] == 5

    # Once acknowledged, renewed bulk reading is a new episode and a new alert.
    await alerts.acknowledge(row["id"], "investigating", by=officer)
    await read_all(services, seller, ids[:3])
    [again] = await alerts.evaluate()
    assert again.id != row["id"]
    assert again.matched == 3

    # Another reader is another alert.
    colleague = staff.actor(await staff.create("sales"))
    theirs = await new_contacts(services, colleague, 3)
    await read_all(services, colleague, theirs)
    [other] = await alerts.evaluate()
    assert other.actor_id == colleague.id
    assert len(await alert_rows()) == 3
    # Everything the engine wrote to the audit log kept the hash chain intact.
    assert await chain_is_intact()


def test_the_window_slides_and_reads_spread_wider_than_it_raise_nothing() -> None:
    """The detector on its own, with chosen timestamps (the log stamps real time)."""
    now = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)
    rule = Rule(
        id=1,
        settings=RuleSettings(RuleKind.BULK_READ, "Bulk", 3, 10).validated(),
        created_by="test",
        created_at=now,
        updated_by="test",
        updated_at=now,
    )

    def reads(*minutes: int) -> list[_Event]:
        return [
            _Event(
                seq,
                now + dt.timedelta(minutes=m),
                "user:5",
                "sales",
                "read",
                "allowed",
                (f"subject-{seq}",),
                0,
            )
            for seq, m in enumerate(minutes, start=1)
        ]

    # Three customers, but never three within ten minutes of each other.
    assert _actor_episodes(rule, "user:5", reads(0, 9, 19, 29), 0, None) == []
    # A burst across a clock boundary (minutes 8-12) is found: no fixed intervals.
    [found] = _actor_episodes(rule, "user:5", reads(0, 8, 10, 12, 40), 0, None)
    assert (found.start.seq, found.end.seq, found.matched) == (2, 4, 3)
    # Only windows ending at events after the cursor count: old events are context.
    assert _actor_episodes(rule, "user:5", reads(8, 10, 12), 3, None) == []
    [found] = _actor_episodes(rule, "user:5", reads(8, 10, 12, 13), 3, None)
    assert (found.start.seq, found.end.seq, found.matched) == (1, 4, 4)


# --- outside working hours ----------------------------------------------------------------------


def test_working_time_follows_the_rule_time_zone_and_days() -> None:
    now = dt.datetime.now(dt.UTC)
    rule = Rule(
        id=1,
        settings=RuleSettings(
            RuleKind.OFF_HOURS, "Off hours", 1, 60, 7, 20, "mon-fri", "Europe/Berlin"
        ).validated(),
        created_by="test",
        created_at=now,
        updated_by="test",
        updated_at=now,
    )
    monday = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)  # a Monday; Berlin is UTC+1 in winter
    assert rule.is_working_time(monday.replace(hour=6, minute=30))  # 07:30 in Berlin
    assert not rule.is_working_time(monday.replace(hour=5, minute=59))  # 06:59 in Berlin
    assert rule.is_working_time(monday.replace(hour=18, minute=59))  # 19:59 in Berlin
    assert not rule.is_working_time(monday.replace(hour=19, minute=0))  # 20:00 in Berlin
    assert not rule.is_working_time(monday.replace(day=28, hour=10))  # Saturday


async def test_staff_working_on_customer_data_off_hours_raise_an_alert(
    services: Services, staff: Staff
) -> None:
    alerts = services.alerts
    _, officer = await compliance_officer(staff)
    today = dt.datetime.now(dt.UTC).weekday()
    # Today and tomorrow are days off, so this test's actions are off hours whenever it runs.
    working = ",".join(DAYS[d] for d in range(7) if d not in {today, (today + 1) % 7})
    await only_rule(
        alerts,
        officer,
        RuleKind.OFF_HOURS,
        threshold=2,
        window_minutes=60,
        work_days=working,
        work_start_hour=0,
        work_end_hour=24,
    )
    seller = staff.actor(await staff.create("sales"))
    [record_id] = await new_contacts(services, seller, 1)  # one action: below 2
    system = Actor.system("nightly-import")
    await services.gateway.create(system, "contact", customer())  # not a staff member
    assert await alerts.evaluate() == []

    await services.gateway.read(seller, "contact", record_id)
    [alert] = await alerts.evaluate()
    assert alert.kind == RuleKind.OFF_HOURS
    assert alert.actor_id == seller.id
    assert alert.matched == 2

    # The same work on a working day raises nothing.
    rule = next(r for r in await alerts.list_rules() if r.kind == RuleKind.OFF_HOURS)
    await alerts.update_rule(rule.id, replace(rule.settings, work_days="mon-sun"), by=officer)
    await read_all(services, seller, [record_id] * 3)
    assert await alerts.evaluate() == []


# --- bursts of denials --------------------------------------------------------------------------


async def test_a_burst_of_refused_requests_raises_an_alert(
    services: Services, staff: Staff
) -> None:
    alerts = services.alerts
    _, officer = await compliance_officer(staff)
    await only_rule(alerts, officer, RuleKind.DENIAL_BURST, threshold=3, window_minutes=5)
    marketer = staff.actor(await staff.create("marketing"))

    async def try_to_create() -> None:
        with pytest.raises(Forbidden):
            await services.gateway.create(marketer, "contact", customer())

    await try_to_create()
    await try_to_create()
    assert await alerts.evaluate() == []
    await try_to_create()
    [alert] = await alerts.evaluate()
    assert alert.kind == RuleKind.DENIAL_BURST
    assert (alert.actor_id, alert.actor_role, alert.matched) == (marketer.id, "marketing", 3)
    assert (await event(alert.last_seq))["outcome"] == "denied"


async def test_failed_sign_ins_count_as_refusals(services: Services, staff: Staff) -> None:
    alerts = services.alerts
    _, officer = await compliance_officer(staff)
    await only_rule(alerts, officer, RuleKind.DENIAL_BURST, threshold=3, window_minutes=5)
    target = await staff.create("sales")
    client = http_client(staff.app)
    staff.clients.append(client)
    for _ in range(3):
        response = await client.post(
            "/api/v1/auth/login", json={"email": target.email, "password": "not the password"}
        )
        assert response.status_code in {401, 429}
    [alert] = await alerts.evaluate()
    assert alert.actor_id == f"user:{target.user_id}"
    assert alert.matched >= 3


# --- large exports ------------------------------------------------------------------------------


async def test_an_export_above_the_size_raises_an_alert(services: Services, staff: Staff) -> None:
    alerts = services.alerts
    _, officer = await compliance_officer(staff)
    await only_rule(alerts, officer, RuleKind.LARGE_EXPORT, threshold=100, window_minutes=60)
    exporter = staff.actor(await staff.create("admin"))

    def export(rows: int) -> AuditEvent:
        return AuditEvent(
            exporter.id,
            "admin",
            "export",
            "contact",
            Outcome.ALLOWED,
            purpose="customer_relationship",
            detail={"rows": rows, "format": "csv"},
        )

    await append(export(99))
    assert await alerts.evaluate() == []
    await append(export(150))
    [alert] = await alerts.evaluate()
    assert (alert.kind, alert.actor_id, alert.matched) == (RuleKind.LARGE_EXPORT, exporter.id, 150)
    # A second large export soon after belongs to the same episode.
    await append(export(400))
    assert await alerts.evaluate() == []
    [row] = await alert_rows()
    assert row["matched"] == 550


# --- e-mail -------------------------------------------------------------------------------------


async def test_the_alert_email_arrives_and_carries_no_customer_data(
    settings: Settings, staff: Staff
) -> None:
    needles = {
        "first_name": "Philippa",
        "last_name": "Brackenridge-Osei",
        "email": "philippa.brackenridge@example.net",
        "phone": "+44 20 7946 0931",
        "city": "Kirkcudbright",
        "notes": "Call about the pergola",
    }
    with local_smtp() as smtp:
        mailing = build_services(
            smtp.settings(
                settings,
                alert_recipients=("dpo@controller.example", "security@controller.example"),
                mail_from="consentry@controller.example",
                public_url="https://crm.controller.example",
            )
        )
        _, officer = await compliance_officer(staff)
        await only_rule(mailing.alerts, officer, RuleKind.BULK_READ, threshold=2, window_minutes=10)
        seller = staff.actor(await staff.create("sales"))
        first = await mailing.gateway.create(seller, "contact", customer(**needles))
        second = await mailing.gateway.create(seller, "contact", customer())
        await read_all(mailing, seller, [first.id, second.id])
        [alert] = await mailing.alerts.evaluate()
        assert alert.email_status == "e-mailed"
        assert alert.notified_at is not None

    [message] = smtp.received
    assert sorted(message.recipients) == ["dpo@controller.example", "security@controller.example"]
    assert message.sender == "consentry@controller.example"
    assert "Bulk reads" in message.message["Subject"]
    body = message.text
    assert "Bulk reads" in body
    assert f"{seller.id} (role: sales)" in body
    assert "2 distinct data subjects" in body
    assert f"#{alert.first_seq} to #{alert.last_seq}" in body
    assert "https://crm.controller.example/compliance/alerts" in body
    everything = (message.message.as_string() + body).lower()
    for value in [*needles.values(), "7946 0931", "+442079460931", "brackenridge", "pergola"]:
        assert value.lower() not in everything, value
    for identifier in (first.id, second.id, first.subject_id, second.subject_id):
        assert identifier.lower() not in everything
    [row] = await alert_rows()
    assert row["notified_at"] is not None
    assert row["notify_error"] == ""


@pytest.mark.parametrize(
    ("setup", "status"),
    [
        ("no_smtp", "not sent: SMTP not configured"),
        ("no_recipients", "not sent: no alert recipients configured"),
        ("unreachable", "failed (smtp_connect), retrying"),
    ],
)
async def test_the_email_outcome_is_recorded_on_the_alert(
    settings: Settings, staff: Staff, setup: str, status: str
) -> None:
    configured = {
        "no_smtp": settings.with_overrides(alert_recipients=("dpo@controller.example",)),
        "no_recipients": settings.with_overrides(smtp_host="127.0.0.1", smtp_port=free_port()),
        "unreachable": settings.with_overrides(
            smtp_host="127.0.0.1", smtp_port=free_port(), alert_recipients=("dpo@x.example",)
        ),
    }[setup]
    services = build_services(configured)
    _, officer = await compliance_officer(staff)
    await only_rule(services.alerts, officer, RuleKind.DENIAL_BURST, threshold=1, window_minutes=5)
    marketer = staff.actor(await staff.create("marketing"))
    with pytest.raises(Forbidden):
        await services.gateway.create(marketer, "contact", customer())
    [alert] = await services.alerts.evaluate()
    assert alert.email_status == status
    assert alert.notified_at is None
    stored = await services.alerts.get_alert(alert.id)
    assert stored.email_status == status
    [notified] = await audit_rows("alert.notify")
    assert notified["resource_id"] == str(alert.id)


# --- rules, acknowledgements and their audit trail ----------------------------------------------


async def test_default_rules_are_created_once_and_audited(services: Services) -> None:
    alerts = services.alerts
    assert not await alerts.initialised()
    await asyncio.gather(alerts.evaluate(), alerts.evaluate())
    rules = await alerts.list_rules()
    assert [(r.kind, r.settings.threshold) for r in rules] == [
        (s.kind, s.threshold) for s in DEFAULT_RULES
    ]
    assert rules[0].settings.window_minutes == 10
    created = await audit_rows("alert_rule.create")
    assert len(created) == len(DEFAULT_RULES)
    assert {r["actor_id"] for r in created} == {"system:alerts"}
    assert {r["reason"] for r in created} == {"default_rule"}


async def test_rule_changes_and_acknowledgements_are_audited(
    services: Services, staff: Staff
) -> None:
    alerts = services.alerts
    _, officer = await compliance_officer(staff)
    rule = await alerts.create_rule(
        RuleSettings(RuleKind.DENIAL_BURST, "  Probing   by one account ", 1, 5), by=officer
    )
    assert rule.name == "Probing by one account"
    assert rule.created_by == officer.actor_id
    [created] = [
        r for r in await audit_rows("alert_rule.create") if r["actor_id"] != "system:alerts"
    ]
    assert created["actor_id"] == officer.actor_id
    assert created["actor_role"] == "compliance"
    assert created["resource_type"] == "alert_rule"
    assert created["resource_id"] == str(rule.id)
    assert created["purpose"] == "compliance"
    assert created["request_id"] == "test-request"
    assert "Probing" not in created["detail"]  # the name is free text: not in the log

    changed = await alerts.update_rule(
        rule.id, replace(rule.settings, threshold=4, window_minutes=15), by=officer
    )
    assert (changed.settings.threshold, changed.updated_by) == (4, officer.actor_id)
    [update] = await audit_rows("alert_rule.update")
    assert json.loads(update["fields"]) == ["threshold", "window_minutes"]
    assert json.loads(update["detail"])["threshold"] == 4
    # Saving without a change writes nothing.
    await alerts.update_rule(rule.id, changed.settings, by=officer)
    assert len(await audit_rows("alert_rule.update")) == 1
    with pytest.raises(RuleInvalid) as refused:
        await alerts.update_rule(
            rule.id, replace(changed.settings, kind=RuleKind.BULK_READ), by=officer
        )
    assert "kind" in refused.value.problems

    await alerts.update_rule(rule.id, replace(changed.settings, threshold=1), by=officer)
    marketer = staff.actor(await staff.create("marketing"))
    with pytest.raises(Forbidden):
        await services.gateway.create(marketer, "contact", customer())
    raised = [a for a in await alerts.evaluate() if a.rule_id == rule.id]
    [alert] = raised
    assert alert.rule_name == "Probing by one account"
    with pytest.raises(AlertError):
        await alerts.acknowledge(alert.id, "it was fine, trust me", by=officer)
    acknowledged = await alerts.acknowledge(alert.id, "false_positive", by=officer)
    assert not acknowledged.is_open
    assert acknowledged.acknowledged_by == officer.actor_id
    assert acknowledged.acknowledgement_label == "False positive"
    [ack] = await audit_rows("alert.acknowledge")
    assert (ack["actor_id"], ack["resource_type"], ack["resource_id"]) == (
        officer.actor_id,
        "alert",
        str(alert.id),
    )
    assert json.loads(ack["detail"])["acknowledgement"] == "false_positive"
    assert await chain_is_intact()


def test_rule_settings_are_validated_with_clear_messages() -> None:
    with pytest.raises(RuleInvalid) as refused:
        RuleSettings("mass_deletion", " ", 0, 0, 25, 3, "weekdays", "Mars/Olympus_Mons").validated()
    problems = refused.value.problems
    assert set(problems) == {
        "kind",
        "name",
        "threshold",
        "window_minutes",
        "work_start_hour",
        "work_days",
        "timezone",
    }
    assert problems["kind"].startswith("must be one of: bulk_read")
    with pytest.raises(RuleInvalid) as refused:
        RuleSettings(RuleKind.OFF_HOURS, "Nights", 1, 60, 20, 7).validated()
    assert refused.value.problems == {
        "work_end_hour": "must be later than the start of working hours"
    }
    with pytest.raises(RuleInvalid) as refused:
        RuleSettings.from_text({"kind": "bulk_read", "name": "x", "threshold": "lots"})
    assert refused.value.problems["threshold"] == "must be a whole number"
    parsed = RuleSettings.from_text(
        {
            "kind": "off_hours",
            "name": "n",
            "threshold": "2",
            "window_minutes": "30",
            "work_days": "Sat-Sun",
            "timezone": "Europe/Lisbon",
            "enabled": "1",
        }
    )
    assert (parsed.work_days, parsed.enabled) == ("sat,sun", True)
    assert not RuleSettings.from_text(
        {"kind": "bulk_read", "name": "n", "threshold": "2", "window_minutes": "30"}
    ).enabled  # an unticked checkbox is not sent: switched off


def test_working_days_are_parsed_and_written_canonically() -> None:
    assert parse_work_days("mon-fri") == frozenset(range(5))
    assert parse_work_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert format_work_days(parse_work_days("fri-mon")) == "mon,fri-sun"
    assert format_work_days(parse_work_days("mon, wed,fri")) == "mon,wed,fri"
    assert format_work_days(range(7)) == "mon-sun"
    with pytest.raises(ValueError, match="three-letter"):
        parse_work_days("monday")


# --- pages --------------------------------------------------------------------------------------


async def raise_denial_alert(services: Services, staff: Staff, by: Changer) -> int:
    await only_rule(services.alerts, by, RuleKind.DENIAL_BURST, threshold=1, window_minutes=5)
    marketer = staff.actor(await staff.create("marketing"))
    with pytest.raises(Forbidden):
        await services.gateway.create(marketer, "contact", customer())
    [alert] = await services.alerts.evaluate()
    return alert.id


async def test_compliance_lists_and_acknowledges_alerts(services: Services, staff: Staff) -> None:
    identity, officer = await compliance_officer(staff)
    alert_id = await raise_denial_alert(services, staff, officer)
    client = await web_login(staff, identity)

    page = await client.get("/compliance/alerts")
    assert page.status_code == 200
    text = text_of(page)
    assert f"#{alert_id}" in text
    assert "Burst of refused requests" in text
    assert "not sent: SMTP not configured" in text
    assert "1 open alert" in text

    response = await client.post(
        f"/compliance/alerts/{alert_id}/acknowledge",
        data={"acknowledgement": "expected", "_csrf_token": csrf_of(page)},
    )
    assert response.status_code == 303
    after = await client.get(response.headers["location"])
    assert f"Alert {alert_id} acknowledged: expected activity." in text_of(after)
    assert "No open alerts." in text_of(after)
    done = text_of(await client.get("/compliance/alerts?state=acknowledged"))
    assert "Expected activity" in done
    assert f"by {officer.actor_id}" in done
    [ack] = await audit_rows("alert.acknowledge")
    assert ack["actor_id"] == officer.actor_id

    # A made-up outcome is refused and nothing changes.
    response = await client.post(
        f"/compliance/alerts/{alert_id}/acknowledge",
        data={"acknowledgement": "nothing to see", "_csrf_token": csrf_of(page)},
    )
    assert response.status_code == 303
    assert "Choose one of" in text_of(await client.get("/compliance/alerts"))
    assert len(await audit_rows("alert.acknowledge")) == 1
    missing = await client.post(
        "/compliance/alerts/99999/acknowledge",
        data={"acknowledgement": "expected", "_csrf_token": csrf_of(page)},
    )
    assert missing.status_code == 404


async def test_compliance_manages_rules_through_the_pages(services: Services, staff: Staff) -> None:
    identity, _ = await compliance_officer(staff)
    await services.alerts.evaluate()
    client = await web_login(staff, identity)
    page = await client.get("/compliance/alerts/rules")
    assert page.status_code == 200
    text = text_of(page)
    assert "200 or more distinct data subjects read within 10 minutes" in text
    assert "outside 07:00-20:00, mon-fri (UTC)" in text

    form = await client.get("/compliance/alerts/rules/new?kind=large_export")
    assert form.status_code == 200
    bad = await client.post(
        "/compliance/alerts/rules/new",
        data={
            "kind": "large_export",
            "name": "",
            "threshold": "many",
            "window_minutes": "60",
            "enabled": "1",
            "_csrf_token": csrf_of(form),
        },
    )
    assert bad.status_code == 400
    assert "Name is required." in text_of(bad)
    assert "Threshold must be a whole number." in text_of(bad)

    created = await client.post(
        "/compliance/alerts/rules/new",
        data={
            "kind": "large_export",
            "name": "Exports over 500 rows",
            "threshold": "500",
            "window_minutes": "60",
            "work_start_hour": "7",
            "work_end_hour": "20",
            "work_days": "mon-fri",
            "timezone": "UTC",
            "enabled": "1",
            "_csrf_token": csrf_of(form),
        },
    )
    assert created.status_code == 303
    rule = next(r for r in await services.alerts.list_rules() if r.name == "Exports over 500 rows")
    assert (rule.kind, rule.settings.threshold, rule.enabled) == ("large_export", 500, True)

    edit = await client.get(f"/compliance/alerts/rules/{rule.id}")
    assert edit.status_code == 200
    saved = await client.post(
        f"/compliance/alerts/rules/{rule.id}",
        data={
            "name": "Exports over 800 rows",
            "threshold": "800",
            "window_minutes": "30",
            "enabled": "1",
            "work_start_hour": "7",
            "work_end_hour": "20",
            "work_days": "mon-fri",
            "timezone": "UTC",
            "_csrf_token": csrf_of(edit),
        },
    )
    assert saved.status_code == 303
    assert (await services.alerts.get_rule(rule.id)).settings.threshold == 800

    switched = await client.post(
        f"/compliance/alerts/rules/{rule.id}/enabled",
        data={"enabled": "0", "_csrf_token": csrf_of(edit)},
    )
    assert switched.status_code == 303
    assert not (await services.alerts.get_rule(rule.id)).enabled
    after = text_of(await client.get("/compliance/alerts/rules"))
    assert "Rule switched off" in after
    changes = await audit_rows("alert_rule.create", "alert_rule.update")
    mine = [r for r in changes if r["actor_id"] == f"user:{identity.user_id}"]
    assert [r["action"] for r in mine] == [
        "alert_rule.create",
        "alert_rule.update",
        "alert_rule.update",
    ]
    assert (await client.get("/compliance/alerts/rules/99999")).status_code == 404


async def test_the_alert_list_is_paginated(services: Services, staff: Staff) -> None:
    identity, officer = await compliance_officer(staff)
    await only_rule(services.alerts, officer, RuleKind.DENIAL_BURST, threshold=1, window_minutes=5)
    for number in range(30):  # thirty accounts, each refused once: thirty alerts
        await append(
            AuditEvent(f"user:{1000 + number}", "sales", "read", "contact", Outcome.DENIED)
        )
    assert len(await services.alerts.evaluate()) == 30
    client = await web_login(staff, identity)
    first = await client.get("/compliance/alerts")
    assert "30 open alerts" in text_of(first)
    assert "Page 1 of 2" in text_of(first)
    assert first.text.count('<tr id="alert-') == 25
    second = await client.get("/compliance/alerts?state=open&page=2")
    assert "Page 2 of 2" in text_of(second)
    assert second.text.count('<tr id="alert-') == 5
    assert 'id="alert-1"' in second.text  # newest first: the first alert is last


@pytest.mark.parametrize("role", ["admin", "sales", "support", "marketing"])
async def test_alert_pages_do_not_exist_for_other_roles(
    services: Services, staff: Staff, role: str
) -> None:
    _, officer = await compliance_officer(staff)
    alert_id = await raise_denial_alert(services, staff, officer)
    rule_id = next(r.id for r in await services.alerts.list_rules() if r.enabled)
    client = await web_login(staff, await staff.create(role))
    token = csrf_of(await client.get("/account"))
    for path in (
        "/compliance/alerts",
        "/compliance/alerts/rules",
        "/compliance/alerts/rules/new",
        f"/compliance/alerts/rules/{rule_id}",
    ):
        assert (await client.get(path)).status_code == 404, path
    for path, data in (
        (f"/compliance/alerts/{alert_id}/acknowledge", {"acknowledgement": "expected"}),
        (f"/compliance/alerts/rules/{rule_id}/enabled", {"enabled": "0"}),
    ):
        response = await client.post(path, data={**data, "_csrf_token": token})
        assert response.status_code == 404, path
    assert (await services.alerts.get_alert(alert_id)).is_open
    assert (await services.alerts.get_rule(rule_id)).enabled


async def test_acknowledging_without_a_csrf_token_is_refused(
    services: Services, staff: Staff
) -> None:
    identity, officer = await compliance_officer(staff)
    alert_id = await raise_denial_alert(services, staff, officer)
    client = await web_login(staff, identity)
    response = await client.post(
        f"/compliance/alerts/{alert_id}/acknowledge", data={"acknowledgement": "expected"}
    )
    assert response.status_code == 403
    assert (await services.alerts.get_alert(alert_id)).is_open


async def test_the_alert_email_is_readable_without_the_console(services: Services) -> None:
    """The e-mail text alone says what happened and where to look."""
    alerts = services.alerts
    now = dt.datetime(2026, 11, 29, 22, 15, tzinfo=dt.UTC)
    alert = Alert(
        id=7,
        rule_id=1,
        rule_name="Bulk reads",
        kind="bulk_read",
        actor_id="user:12",
        actor_role="sales",
        window_start=now,
        window_end=now + dt.timedelta(minutes=9),
        matched=1234,
        first_seq=100,
        last_seq=180,
        created_at=now,
        notified_at=None,
        notify_error="",
        acknowledged_by=None,
        acknowledged_at=None,
        acknowledgement="",
    )
    subject, body = alerts.compose_email([alert])
    assert subject == "[Consentry] Audit alert: Bulk reads (user:12)"
    assert "1,234 distinct data subjects" in body
    assert "2026-11-29 22:15:00 UTC to 2026-11-29 22:24:00 UTC" in body
    subject, _ = alerts.compose_email([alert, replace(alert, id=8)])
    assert subject == "[Consentry] 2 new audit alerts"


# --- cost on day 100 as on day 1 ------------------------------------------------------------


async def night_owl_runs(
    services: Services, staff: Staff, *, window_minutes: int, runs: int, events: int
) -> list[int]:
    """One sales rep reading off hours, two seconds apart (timestamps laid out by a test
    clock), under the off-hours rule alone with a threshold of 1; the alert engine runs
    after each ``events`` of them. Returns the audit rows each run read."""
    alerts = services.alerts
    _, officer = await compliance_officer(staff)
    today = dt.datetime.now(dt.UTC).weekday()
    working = ",".join(DAYS[d] for d in range(7) if d not in {today, (today + 1) % 7})
    await only_rule(
        alerts, officer, RuleKind.OFF_HOURS, threshold=1, window_minutes=window_minutes,
        work_days=working, work_start_hour=0, work_end_hour=24,
    )  # fmt: skip
    moment = [dt.datetime.now(dt.UTC)]

    def clock() -> dt.datetime:
        moment[0] += dt.timedelta(seconds=2)
        return moment[0]

    log = AuditLog(services.audit.mac, clock=clock)
    night_owl = AuditEvent(
        actor_id="user:4242", actor_role="sales", action="read", resource_type="contact",
        outcome=Outcome.ALLOWED, purpose="customer_relationship", subject_ids=("s-1",),
    )  # fmt: skip
    read_per_run: list[int] = []
    for _ in range(runs):
        async with db.write_transaction():
            for _ in range(events):
                await log.append(night_owl)
        before = alerts.rows_read
        await alerts.evaluate()
        read_per_run.append(alerts.rows_read - before)
    return read_per_run


async def test_an_open_alert_does_not_make_later_evaluations_read_more(
    services: Services, staff: Staff
) -> None:
    """Thousands of events of one actor, an alert that stays open and unacknowledged the
    whole time: every evaluation reads the new events and one window before them, never
    the alert's whole history again (which made each run slower than the last)."""
    # A one-minute window: 500 events (16 minutes) a run.
    read_per_run = await night_owl_runs(services, staff, window_minutes=1, runs=6, events=500)
    (alert,) = await alert_rows()
    assert alert["acknowledged_at"] is None  # one episode, open all along
    assert alert["matched"] == 3000
    # The batch of 500 new events and at most a minute (30 events) before them - the same
    # run after run, not 500 more each time.
    assert all(500 <= n <= 500 + 31 for n in read_per_run), read_per_run


async def test_a_busy_window_is_judged_on_its_newest_events_and_still_one_alert(
    services: Services, staff: Staff
) -> None:
    """A window holding far more events than a rule needs to decide (an hour of steady
    work off hours): each run reads the batch and only what can decide a window before
    it, and the open alert goes on being extended rather than a second one raised."""
    # An hour's window holds 1,800 events.
    read_per_run = await night_owl_runs(services, staff, window_minutes=60, runs=5, events=300)
    (alert,) = await alert_rows()
    assert alert["matched"] == 1500
    # 300 new events (and a few of the engine's and the rule set-up's), and one before: a
    # threshold of 1 needs no more context, however busy the window.
    assert all(n <= 300 + 4 + 1 for n in read_per_run), read_per_run
