"""The service desk (issue 21, items 3 and 5; docs/service-desk.md).

Real RFC 5322 messages built with Python's email package go into the intake; replies go
out through the mail outbox to a real aiosmtpd server; SLA clocks are run with a fixed
clock (a Friday afternoon in Berlin, a Monday holiday). The portal is driven through its
one-time-link sign-in like a customer would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib
import pytest
from httpx import AsyncClient
from litestar import Litestar

from server.app import create_app
from server.auth.service import StaffIdentity
from server.dsr.export import build_export
from server.gateway import Actor, GatewayError, Record
from server.mailcapture.jobs import start_receiver
from server.mailcapture.receiver import unregister_recipient
from server.servicedesk import canned, config
from server.servicedesk.config import Targets
from server.servicedesk.detection import request_kind
from server.servicedesk.hours import BusinessCalendar, calendar_from
from server.servicedesk.inbound import receive_support_message
from server.servicedesk.service import PORTAL_POSTS_PER_HOUR, DeskError, ServiceDesk
from server.services import Services, build_services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, text_of, web_login
from tests.conftest import Staff, contact_values, http_client
from tests.dbutil import raw_sql
from tests.server.dsr.test_retention import table
from tests.server.test_mail import LocalSmtp, free_port, local_smtp

BERLIN = "Europe/Berlin"
SUPPORT = "support@shop.example"
SEED = Actor.system("test-seed")
ADMIN = Actor.system("test-admin")
WORKDAYS = {str(day): ["09:00", "17:00"] for day in range(5)}
FRIDAY_4PM = dt.datetime(2026, 12, 4, 15, 0, tzinfo=dt.UTC)  # 16:00 in Berlin (CET)
HOLIDAY = "2026-12-07"  # the Monday after
TUESDAY = dt.date(2026, 12, 8)


def berlin(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    from zoneinfo import ZoneInfo

    local = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZoneInfo(BERLIN))
    return local.astimezone(dt.UTC)


# --- business hours and detection (no database) --------------------------------------------


def test_eight_business_hours_from_friday_4pm_end_on_tuesday_4pm_after_a_holiday() -> None:
    calendar = calendar_from(BERLIN, json.dumps(WORKDAYS), json.dumps([HOLIDAY]))
    due = calendar.add(FRIDAY_4PM, 8 * 60)
    assert due == berlin(TUESDAY, 16)  # 1 h on Friday, Monday off, 7 h on Tuesday
    assert calendar.elapsed(FRIDAY_4PM, due) == dt.timedelta(hours=8)
    # Without the holiday the same target ends on Monday.
    plain = calendar_from(BERLIN, json.dumps(WORKDAYS), "[]")
    assert plain.add(FRIDAY_4PM, 8 * 60) == berlin(dt.date(2026, 12, 7), 16)


def test_business_hours_keep_local_opening_times_across_daylight_saving() -> None:
    calendar = calendar_from(BERLIN, json.dumps(WORKDAYS), "[]")
    # Friday 27 March 2026 16:00 CET; clocks go forward on Sunday 29 March.
    friday = dt.datetime(2026, 3, 27, 15, 0, tzinfo=dt.UTC)
    assert calendar.add(friday, 2 * 60) == berlin(dt.date(2026, 3, 30), 10)  # 08:00 UTC


def test_a_calendar_without_opening_hours_is_refused() -> None:
    from server.servicedesk.hours import CalendarError

    closed = BusinessCalendar(calendar_from(BERLIN, "{}", "[]").zone, {})
    with pytest.raises(CalendarError):
        closed.add(FRIDAY_4PM, 60)
    with pytest.raises(CalendarError):
        calendar_from(BERLIN, json.dumps({"0": ["17:00", "09:00"]}), "[]")
    with pytest.raises(CalendarError):
        calendar_from("Mars/Olympus", json.dumps(WORKDAYS), "[]")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Please delete all my personal data.", "erasure"),
        ("Bitte löschen Sie meine Daten und mein Konto.", "erasure"),
        ("Je souhaite supprimer mes données.", "erasure"),
        ("What personal data do you hold about me?", "access"),
        ("Ich bitte um Auskunft über meine gespeicherten Daten (Art. 15 DSGVO).", "access"),
        ("Demande d'accès à mes données", "access"),
        ("I object to the processing of my data for marketing.", "objection"),
        ("Hiermit lege ich Widerspruch gegen die Verarbeitung ein.", "objection"),
        ("Please correct my address, it is wrong.", "rectification"),
        ("My printer stopped working after the update.", None),
        ("Where is my order? The delivery is late.", None),
        ("Bitte senden Sie mir eine neue Rechnung.", None),
    ],
)
def test_messages_that_read_like_a_request_are_recognised(text: str, kind: str | None) -> None:
    assert request_kind(text) == kind


def test_canned_responses_must_not_carry_an_address_or_a_phone_number() -> None:
    assert canned.personal_data_in("Call me on +44 20 7946 0001", "GB") == "a phone number"
    assert canned.personal_data_in("Write to jane.doe@example.org", "GB") == "an e-mail address"
    assert (
        canned.personal_data_in("Thanks! Version 2.4.1 fixes it (since 2026-12-01).", "GB") is None
    )


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture
def desk_services(settings: Settings, smtp: LocalSmtp) -> Services:
    return build_services(
        smtp.settings(settings, public_url="http://testserver", mail_from=SUPPORT)
    )


@pytest.fixture
def desk_app(desk_services: Services) -> Litestar:
    return create_app(desk_services.settings, desk_services)


@pytest.fixture
async def people(desk_services: Services, desk_app: Litestar) -> AsyncIterator[Staff]:
    helper = Staff(desk_services, desk_app)
    yield helper
    for client in helper.clients:
        await client.aclose()


@dataclass
class World:
    services: Services
    desk: ServiceDesk
    lead: int
    agents: list[int]
    agent: Actor
    identities: dict[int, StaffIdentity]
    lead_email: str
    customer: Record
    address: str
    queue_id: int
    policy_id: int


async def world(services: Services, people: Staff) -> World:
    lead = await people.create("support", "north")
    first = await people.create("support", "north")
    second = await people.create("support", "north")
    await people.create("marketing", "north")  # not an agent: never routed to
    policy_id = await config.save_policy(
        services.audit,
        ADMIN,
        name="Berlin office",
        time_zone=BERLIN,
        hours=WORKDAYS,
        holidays=[HOLIDAY],
        targets={"normal": Targets(8 * 60, 40 * 60), "urgent": Targets(60, 4 * 60)},
        warn_percent=75,
    )
    queue_id = await config.save_queue(
        services.audit,
        ADMIN,
        name="North support",
        team="north",
        routing="round_robin",
        sla_policy_id=policy_id,
        lead_id=lead.user_id,
    )
    address = f"grace.{uuid.uuid4().hex[:8]}@example.org"
    customer = await services.gateway.create(
        SEED, "contact", contact_values(email=address), owner_id=first.user_id, team="north"
    )
    return World(
        services,
        services.service_desk,
        lead.user_id,
        sorted([lead.user_id, first.user_id, second.user_id]),
        people.actor(first),
        {i.user_id: i for i in (lead, first, second)},
        lead.email,
        customer,
        address,
        queue_id,
        policy_id,
    )


def mail(
    sender: str,
    subject: str,
    body: str,
    *,
    in_reply_to: str = "",
    auto: str = "",
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Grace Hopper <{sender}>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="example.org")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    if auto:
        message["Auto-Submitted"] = auto
    message.set_content(body)
    return message


def sent_to(smtp: LocalSmtp, address: str) -> list[EmailMessage]:
    return [r.message for r in smtp.received if address in r.recipients]


# --- e-mail in, reply out, reply in ---------------------------------------------------------


async def test_a_customer_reply_to_the_case_email_lands_on_the_same_case(
    desk_services: Services, people: Staff, smtp: LocalSmtp, settings: Settings
) -> None:
    w = await world(desk_services, people)
    first = await receive_support_message(
        desk_services, mail(w.address, "Printer broken", "It prints blank pages since Tuesday.")
    )
    assert first.outcome == "opened"
    assert first.ref.startswith("C-")
    assert len(first.ref) == 10

    result = await w.desk.reply(w.agent, first.case_id, "Please clean the print head.")
    assert result.mail is not None
    assert result.mail.sent
    (ours,) = sent_to(smtp, w.address)
    assert f"[#{first.ref}]" in str(ours["Subject"])
    assert ours["Message-ID"]
    assert first.ref.replace("-", "") in str(ours["Message-ID"])
    assert "Please clean the print head." in str(ours.get_body(("plain",)).get_content())  # type: ignore[union-attr]

    # The customer answers from their mail client: no reference in the subject, only the
    # In-Reply-To header pointing at our message.
    answer = await receive_support_message(
        desk_services,
        mail(
            w.address,
            "Re: Printer broken",
            "Did that, still blank.",
            in_reply_to=str(ours["Message-ID"]),
        ),
    )
    assert (answer.outcome, answer.case_id) == ("threaded", first.case_id)
    # Delivered twice (an IMAP re-sync): kept once.
    twice = mail(
        w.address,
        "Re: Printer broken",
        "Did that, still blank.",
        in_reply_to=str(ours["Message-ID"]),
    )
    twice.replace_header("Message-ID", "<again.1@example.org>")
    assert (await receive_support_message(desk_services, twice)).outcome == "threaded"
    assert (await receive_support_message(desk_services, twice)).outcome == "duplicate"
    # ... and a message with only the reference in the subject threads too.
    by_ref = await receive_support_message(
        desk_services, mail(w.address, f"Printer [#{first.ref}]", "Any news?")
    )
    assert (by_ref.outcome, by_ref.case_id) == ("threaded", first.case_id)

    talk = await w.desk.conversation(w.agent, first.case_id)
    assert [(m.kind, m.body) for m in talk] == [
        ("email", "It prints blank pages since Tuesday."),
        ("reply", "Please clean the print head."),
        ("email", "Did that, still blank."),
        ("email", "Did that, still blank."),
        ("email", "Any news?"),
    ]
    # The case waited for the customer after the reply and is open again now.
    row = await w.desk.desk_row(first.case_id)
    assert row is not None
    assert row["state"] == "open"
    assert row["first_response_at"] is not None
    # Stored sealed: the text is nowhere in the table in clear.
    rows = await raw_sql(settings.database_url, "SELECT body FROM case_message")
    assert rows
    assert all(str(r["body"]).startswith("cs1.") for r in rows)
    assert not any("blank" in str(r["body"]) for r in rows)


async def test_a_message_always_takes_its_cases_team(
    desk_services: Services, people: Staff
) -> None:
    """Nobody names a message's owner or team: it belongs to the case's team whoever
    writes it, so an admin from another team cannot file it where the agents can't see
    it, and an agent from another team cannot write on the case at all."""
    w = await world(desk_services, people)
    intake = await receive_support_message(
        desk_services, mail(w.address, "Printer broken", "It prints blank pages.")
    )
    outsider_admin = people.actor(await people.create("admin", "south"))
    await w.desk.note(outsider_admin, intake.case_id, "Checked the warranty.")
    await w.desk.reply(w.agent, intake.case_id, "Please clean the print head.")
    rows = await raw_sql(
        desk_services.settings.database_url, "SELECT team FROM case_message ORDER BY created_at"
    )
    assert {r["team"] for r in rows} == {"north"}
    assert len(rows) == 3  # the customer's e-mail, the note, the reply
    # The north agent sees the admin's note in the conversation.
    kinds = [m.kind for m in await w.desk.conversation(w.agent, intake.case_id)]
    assert "note" in kinds

    outsider_agent = people.actor(await people.create("support", "south"))
    with pytest.raises(GatewayError):
        await w.desk.reply(outsider_agent, intake.case_id, "Let me take this one.")
    after = await raw_sql(desk_services.settings.database_url, "SELECT id FROM case_message")
    assert len(after) == 3


async def test_mail_to_the_support_address_over_smtp_opens_and_continues_a_case(
    desk_services: Services, people: Staff, smtp: LocalSmtp
) -> None:
    """The real path: a customer's mail client speaks SMTP to the receiver, which hands
    mail for CONSENTRY_SUPPORT_ADDRESS to the desk; their reply to our answer lands on the
    same case, and mail for an address nobody registered is refused."""
    w = await world(desk_services, people)
    port = free_port()
    settings = desk_services.settings.with_overrides(
        smtp_receiver_port=port, smtp_receiver_host="127.0.0.1", support_address=SUPPORT
    )
    server = await start_receiver(dataclasses.replace(desk_services, settings=settings))
    assert server is not None
    try:
        await aiosmtplib.send(
            mail(w.address, "Parcel missing", "The parcel never arrived."),
            hostname="127.0.0.1",
            port=port,
        )
        [case] = (
            await desk_services.gateway.list(SEED, "case", filters={"contact_id": w.customer.id})
        ).items
        await w.desk.reply(w.agent, case.id, "We are sending a new one.")
        (ours,) = sent_to(smtp, w.address)
        await aiosmtplib.send(
            mail(
                w.address, "Re: Parcel missing", "Thank you!", in_reply_to=str(ours["Message-ID"])
            ),
            hostname="127.0.0.1",
            port=port,
        )
        talk = await w.desk.conversation(w.agent, case.id)
        assert [(m.kind, m.body) for m in talk] == [
            ("email", "The parcel never arrived."),
            ("reply", "We are sending a new one."),
            ("email", "Thank you!"),
        ]
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await aiosmtplib.send(
                mail(w.address, "Hello", "Anyone?"),
                recipients=["sales@shop.example"],
                hostname="127.0.0.1",
                port=port,
            )
    finally:
        server.close()
        await server.wait_closed()
        unregister_recipient(SUPPORT)


async def test_a_reference_quoted_by_someone_else_opens_their_own_case(
    desk_services: Services, people: Staff
) -> None:
    w = await world(desk_services, people)
    first = await receive_support_message(desk_services, mail(w.address, "Invoice", "Wrong VAT."))
    other_address = f"ada.{uuid.uuid4().hex[:8]}@example.org"
    await desk_services.gateway.create(
        SEED, "contact", contact_values(email=other_address), owner_id=w.agents[0], team="north"
    )
    intruder = await receive_support_message(
        desk_services, mail(other_address, f"Re: Invoice [#{first.ref}]", "Me too.")
    )
    assert intruder.outcome == "opened"
    assert intruder.case_id != first.case_id
    talk = await w.desk.conversation(w.agent, first.case_id)
    assert [m.body for m in talk] == ["Wrong VAT."]


async def test_unknown_senders_and_automatic_mail_are_not_stored(
    desk_services: Services, people: Staff, settings: Settings
) -> None:
    w = await world(desk_services, people)
    stranger = await receive_support_message(
        desk_services, mail("nobody@elsewhere.example", "Hello", "Who are you?")
    )
    assert (stranger.outcome, stranger.kept) == ("unknown_sender", False)
    auto = await receive_support_message(
        desk_services, mail(w.address, "Out of office", "I am away.", auto="auto-replied")
    )
    assert auto.outcome == "automatic"
    assert await raw_sql(settings.database_url, "SELECT id FROM case_message") == []
    assert await raw_sql(settings.database_url, "SELECT case_id FROM desk_case") == []


# --- routing ------------------------------------------------------------------------------


async def test_new_cases_go_round_the_team_then_to_the_least_loaded(
    desk_services: Services, people: Staff
) -> None:
    w = await world(desk_services, people)
    opened = []
    for n in range(3):
        case, row = await w.desk.open_case(w.customer.id, title=f"Question {n}", channel="staff")
        opened.append((case, row))
    assert [row["assignee_id"] for _, row in opened] == w.agents  # each agent once, in turn
    assert all(case.owner_id == row["assignee_id"] for case, row in opened)
    # The second agent's case is resolved: least loaded now picks them.
    resolver = people.actor(w.identities[w.agents[1]])
    await w.desk.set_state(resolver, opened[1][0].id, "resolved")
    await config.save_queue(
        desk_services.audit,
        ADMIN,
        name="North support",
        team="north",
        routing="least_loaded",
        sla_policy_id=w.policy_id,
        lead_id=w.lead,
        queue_id=w.queue_id,
    )
    _, row = await w.desk.open_case(w.customer.id, title="Another", channel="staff")
    assert row["assignee_id"] == w.agents[1]


# --- SLA: warnings, breaches and escalation on a fixed clock --------------------------------


async def test_an_sla_breach_is_flagged_and_escalated_at_the_right_business_hour(
    desk_services: Services, people: Staff, smtp: LocalSmtp, settings: Settings
) -> None:
    w = await world(desk_services, people)
    case, row = await w.desk.open_case(
        w.customer.id, title="Cannot log in", channel="email", now=FRIDAY_4PM
    )
    assert row["first_response_due"] == berlin(TUESDAY, 16)
    assert row["next_due"] == berlin(TUESDAY, 16)

    async def sweep_at(moment: dt.datetime) -> tuple[int, int, int]:
        run = await w.desk.sweep(now=moment)
        return run.warned, run.breached, run.escalated

    assert await sweep_at(berlin(dt.date(2026, 12, 7), 12)) == (0, 0, 0)  # the holiday
    assert await sweep_at(berlin(TUESDAY, 13, 59)) == (0, 0, 0)
    assert await sweep_at(berlin(TUESDAY, 14)) == (1, 0, 0)  # 75 % of 8 h: 6 h in
    assert await sweep_at(berlin(TUESDAY, 15, 59)) == (0, 0, 0)  # warned once only
    assert sent_to(smtp, w.lead_email) == []
    assert await sweep_at(berlin(TUESDAY, 16)) == (0, 1, 1)
    assert await sweep_at(berlin(TUESDAY, 17)) == (0, 0, 0)  # flagged once only

    state = await w.desk.desk_row(case.id)
    assert state is not None
    assert (state["sla"], state["escalated_to"]) == ("breached", w.lead)
    assert state["breached_at"] == berlin(TUESDAY, 16)
    (escalation,) = sent_to(smtp, w.lead_email)
    text = str(escalation.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert row["case_ref"] in str(escalation["Subject"])
    assert f"/desk/cases/{case.id}" in text
    for private in (w.address, "Cannot log in", "Grace", "Hopper"):
        assert private not in text
        assert private not in str(escalation["Subject"])
    events = await raw_sql(
        settings.database_url,
        "SELECT action FROM audit WHERE action IN ('desk.sla_warning', 'desk.sla_breach') "
        "ORDER BY seq",
    )
    assert [e["action"] for e in events] == ["desk.sla_warning", "desk.sla_breach"]


async def test_a_first_response_in_time_stops_the_first_response_clock(
    desk_services: Services, people: Staff
) -> None:
    w = await world(desk_services, people)
    case, _ = await w.desk.open_case(
        w.customer.id, title="Question", channel="email", now=FRIDAY_4PM
    )
    await w.desk.reply(w.agent, case.id, "We are looking into it.", now=berlin(TUESDAY, 10))
    run = await w.desk.sweep(now=berlin(TUESDAY, 16, 30))
    assert (run.warned, run.breached) == (0, 0)  # resolution (40 h) is still far away
    state = await w.desk.desk_row(case.id)
    assert state is not None
    assert state["sla"] == "ok"


# --- data-subject requests hidden in support mail -------------------------------------------


async def test_a_message_reading_like_an_erasure_request_is_flagged_and_opened_in_one_click(
    desk_services: Services, people: Staff, settings: Settings
) -> None:
    w = await world(desk_services, people)
    text = "Hallo, bitte löschen Sie alle meine Daten bei Ihnen."
    intake = await receive_support_message(desk_services, mail(w.address, "Meine Daten", text))
    (flag,) = await w.desk.flagged()
    assert (str(flag["case_id"]), flag["dsr_kind"]) == (intake.case_id, "erasure")
    # The flag and its audit event hold the kind, never the words.
    events = await raw_sql(
        settings.database_url, "SELECT * FROM audit WHERE action = 'desk.dsr_flag'"
    )
    assert len(events) == 1
    assert "löschen" not in json.dumps(events[0], default=str)

    officer_identity = await people.create("compliance")
    web = await web_login(people, officer_identity)
    page = await web.get("/desk/flags")
    assert page.status_code == 200
    assert intake.ref in page.text
    assert "löschen" not in page.text
    opened = await web.post(
        f"/desk/flags/{intake.case_id}/open",
        data={"verification": "email_link", "_csrf_token": csrf_of(page)},
    )
    assert opened.status_code == 303
    request_id = opened.headers["location"].rsplit("/", 1)[1]
    request = await desk_services.requests.get(request_id)
    assert (request.kind, request.subject_id) == ("erasure", w.customer.subject_id)
    assert await w.desk.flagged() == []
    # Support staff do not get the flag page.
    agent_web = await web_login(people, await people.create("support", "north"))
    assert (await agent_web.get("/desk/flags")).status_code == 404


# --- the customer portal --------------------------------------------------------------------


async def portal_client(app: Litestar, smtp: LocalSmtp, address: str) -> AsyncClient:
    from tests.server.portal.test_portal import ask_for_link, enter, last_link

    web = http_client(app)
    await ask_for_link(web, address)
    entered = await enter(web, last_link(smtp))
    assert entered.status_code == 303
    return web


async def test_customers_open_follow_and_answer_their_cases_in_the_portal(
    desk_services: Services, desk_app: Litestar, people: Staff, smtp: LocalSmtp
) -> None:
    w = await world(desk_services, people)
    web = await portal_client(desk_app, smtp, w.address)
    try:
        listing = await web.get("/portal/cases")
        assert listing.status_code == 200
        assert "You have no cases with us." in text_of(listing)
        created = await web.post(
            "/portal/cases",
            data={
                "kind": "complaint",
                "title": "Parcel arrived damaged",
                "description": "The box was crushed.",
                "_csrf_token": csrf_of(listing),
            },
        )
        assert created.status_code == 303, created.text
        case_path = created.headers["location"]
        case_id = case_path.rsplit("/", 1)[1]
        assert (await w.desk.desk_row(case_id))["channel"] == "portal"  # type: ignore[index]

        await w.desk.note(w.agent, case_id, "Customer sounds upset; check the courier.")
        await w.desk.reply(w.agent, case_id, "Sorry! A replacement is on its way.")
        page = await web.get(case_path)
        shown = text_of(page)
        assert "Parcel arrived damaged" in shown
        assert "The box was crushed." in shown
        assert "A replacement is on its way." in shown
        assert "Support team" in shown
        assert "check the courier" not in shown  # internal notes stay internal

        answered = await web.post(
            f"{case_path}/reply", data={"body": "Thank you!", "_csrf_token": csrf_of(page)}
        )
        assert answered.status_code == 303
        talk = await w.desk.conversation(w.agent, case_id)
        assert [m.kind for m in talk] == ["note", "reply", "portal"]

        empty = await web.post(
            f"{case_path}/reply", data={"body": "  ", "_csrf_token": csrf_of(page)}
        )
        assert empty.status_code == 400
        bad_kind = await web.post(
            "/portal/cases",
            data={"kind": "lawsuit", "title": "x", "_csrf_token": csrf_of(page)},
        )
        assert bad_kind.status_code == 400
        too_long = await web.post(
            "/portal/cases",
            data={"kind": "complaint", "title": "x" * 201, "_csrf_token": csrf_of(page)},
        )
        assert too_long.status_code == 400

        # Someone else's case does not exist for this person.
        other, _ = await w.desk.open_case(
            (
                await desk_services.gateway.create(
                    SEED,
                    "contact",
                    contact_values(email=f"x{uuid.uuid4().hex[:6]}@example.org"),
                    owner_id=w.agents[0],
                    team="north",
                )
            ).id,
            title="Private matter",
            channel="staff",
        )
        assert (await web.get(f"/portal/cases/{other.id}")).status_code == 404
        assert (await web.get("/portal/cases/not-a-uuid")).status_code == 404
        refused = await web.post(
            f"/portal/cases/{other.id}/reply", data={"body": "hi", "_csrf_token": csrf_of(page)}
        )
        assert refused.status_code == 404
    finally:
        await web.aclose()


async def test_portal_posts_are_rate_limited(desk_services: Services, people: Staff) -> None:
    w = await world(desk_services, people)
    subject = w.customer.subject_id
    moment = dt.datetime.now(dt.UTC)
    for _ in range(PORTAL_POSTS_PER_HOUR):
        assert await w.desk.portal_allowance(subject, now=moment)
    assert not await w.desk.portal_allowance(subject, now=moment)
    assert await w.desk.portal_allowance(subject, now=moment + dt.timedelta(hours=1, seconds=1))


# --- the staff pages ------------------------------------------------------------------------


async def test_agents_work_cases_from_the_queue_page(
    desk_services: Services, people: Staff, smtp: LocalSmtp
) -> None:
    w = await world(desk_services, people)
    intake = await receive_support_message(
        desk_services, mail(w.address, "Wrong size", "The shoes are too small.")
    )
    row = await w.desk.desk_row(intake.case_id)
    assert row is not None
    me = w.identities[int(row["assignee_id"])]
    # A case a colleague opened with the Cases form joins the team's queue too.
    await desk_services.gateway.create(
        people.actor(w.identities[w.agents[1]]),
        "case",
        {"title": "Phoned in: broken zip", "kind": "complaint", "contact_id": w.customer.id},
    )
    web = await web_login(people, me)
    queue = await web.get("/desk?view=mine")
    assert queue.status_code == 200
    assert intake.ref in queue.text
    assert "Wrong size" in queue.text
    assert "Phoned in" not in queue.text  # not mine
    team_queue = await web.get("/desk?view=team&sort=opened")
    assert "Phoned in: broken zip" in team_queue.text
    assert "Wrong size" in team_queue.text
    case_page = await web.get(f"/desk/cases/{intake.case_id}")
    assert "The shoes are too small." in text_of(case_page)
    replied = await web.post(
        f"/desk/cases/{intake.case_id}/reply",
        data={"body": "We will send a bigger pair.", "_csrf_token": csrf_of(case_page)},
    )
    assert replied.status_code == 303
    assert len(sent_to(smtp, w.address)) == 1
    blank = await web.post(
        f"/desk/cases/{intake.case_id}/note", data={"body": "", "_csrf_token": csrf_of(case_page)}
    )
    assert blank.status_code == 400
    canned_page = await web.get("/desk/canned")
    refused = await web.post(
        "/desk/canned",
        data={
            "title": "Call us",
            "body": "Ring +44 20 7946 0001",
            "_csrf_token": csrf_of(canned_page),
        },
    )
    assert refused.status_code == 400
    assert "phone number" in text_of(refused)
    saved = await web.post(
        "/desk/canned",
        data={
            "title": "Bigger size",
            "body": "A bigger pair is on its way.",
            "_csrf_token": csrf_of(canned_page),
        },
    )
    assert saved.status_code == 303
    (template,) = await canned.responses("north")
    prefilled = await web.get(f"/desk/cases/{intake.case_id}?canned={template.id}")
    assert "A bigger pair is on its way." in prefilled.text
    marketer = await web_login(people, await people.create("marketing", "north"))
    assert (await marketer.get("/desk")).status_code == 404
    assert (await marketer.get(f"/desk/cases/{intake.case_id}")).status_code == 404


# --- rights: export, erasure, retention -----------------------------------------------------


async def test_export_holds_the_conversation_and_erasure_leaves_nothing_readable(
    desk_services: Services, people: Staff, settings: Settings
) -> None:
    w = await world(desk_services, people)
    intake = await receive_support_message(
        desk_services, mail(w.address, "Broken kettle", "The kettle leaks water.")
    )
    await w.desk.reply(w.agent, intake.case_id, "A new kettle is on its way.")
    await w.desk.note(w.agent, intake.case_id, "Second kettle this year.")

    bundle = await build_export(desk_services, w.customer.subject_id, requested_by="system:test")
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        data = json.loads(archive.read("data.json"))
    messages = data["records"]["case_message"]
    assert sorted(m["kind"] for m in messages) == ["email", "note", "reply"]
    assert {m["body"] for m in messages} >= {"The kettle leaks water.", "Second kettle this year."}

    result = await desk_services.erasure.erase(w.customer.subject_id, by="user:1")
    assert result.complete
    for message in await raw_sql(settings.database_url, "SELECT id FROM case_message"):
        record = await desk_services.gateway.read(
            ADMIN, "case_message", str(message["id"]), purpose="compliance"
        )
        assert record.erased
        assert record.values["body"] is None
    with pytest.raises(DeskError):
        await w.desk.case_of_contact(w.customer.id, intake.case_id)
    # Their address no longer reaches a case; the desk forgets the erased case.
    again = await receive_support_message(desk_services, mail(w.address, f"[#{intake.ref}]", "Hi"))
    assert again.outcome == "unknown_sender"
    # The next sweep that looks at the case finds it erased and forgets it.
    run = await w.desk.sweep(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    assert run.dropped == 1
    assert await w.desk.desk_row(intake.case_id) is None
    await desk_services.audit_trail.seal_all()
    assert (await desk_services.audit_trail.verify()).ok


async def test_retention_erases_the_text_of_old_case_messages(
    desk_services: Services, people: Staff
) -> None:
    w = await world(desk_services, people)
    intake = await receive_support_message(desk_services, mail(w.address, "Old", "Old words."))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4 * 366)
    report = await desk_services.retention.run(now=later)
    assert table(report)["old_case_messages"][:3] == (1, 0, 1)
    (message,) = await w.desk.conversation(ADMIN, intake.case_id)
    assert message.body == ""


def test_desk_receive_refuses_input_that_is_not_an_email() -> None:
    from click.testing import CliRunner

    from server.cli import cli

    result = CliRunner().invoke(cli, ["desk", "receive", "-"], input=b"just some words\n")
    assert result.exit_code == 1
    assert "not an e-mail message" in result.output
