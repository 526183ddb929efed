"""Segments and campaigns: saved filters re-evaluated through the gateway, audiences computed
under the campaign's purpose (consent, withdrawal, objection, restriction), a confirmed
send that mails each person once, with a working one-click withdrawal link, and no
address in the logs. Sending writes to the demo outbox (``Mailer.outbox``).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog
from httpx import AsyncClient
from litestar import Litestar

from server.campaigns.tables import Campaign, CampaignDelivery
from server.gateway import Actor, InvalidInput, Record
from server.services import Services
from tests.admin_ui.test_admin_ui import location, submit, text_of, web_login
from tests.conftest import Staff, contact_values
from tests.dbutil import audit_rows, last_seq, raw_sql

SEGMENTS = "/api/v1/segments"
CAMPAIGNS = "/api/v1/campaigns"
LINK = re.compile(r"https?://[^\s>]+(/consent/withdraw/[^\s>]+)")


def _values(**overrides: Any) -> dict[str, Any]:
    return {k: v for k, v in contact_values(**overrides).items() if k != "birth_date"}


async def _person(services: Services, seller: Actor, stage: str, **overrides: Any) -> Record:
    email_address = f"{uuid.uuid4().hex[:10]}@example.net"
    return await services.gateway.create(
        seller, "contact", _values(email=email_address, lifecycle_stage=stage, **overrides)
    )


async def _notice(services: Services) -> int:
    notice = await services.consent.publish_notice(
        "Privacy notice", "We send offers only to people who ask for them.", by="system:test"
    )
    return notice.version


async def _grant(services: Services, record: Record, version: int, purpose: str) -> None:
    channel = {"marketing_email": "email", "marketing_phone": "phone"}[purpose]
    await services.consent.grant(
        record.subject_id,
        purpose,
        channel,
        source="web_form",
        notice_version=version,
        actor_id="subject",
        evidence={"form_id": "newsletter"},
    )


@pytest.fixture
def outbox(services: Services, tmp_path: Path) -> Path:
    """Demo-mode delivery: one .eml file per message."""
    services.mailer.outbox = tmp_path / "outbox"
    return services.mailer.outbox


def _mails(outbox: Path) -> list[EmailMessage]:
    if not outbox.exists():
        return []
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted(outbox.iterdir())
    ]


def _recipients(outbox: Path) -> list[str]:
    return sorted(str(m["To"]) for m in _mails(outbox))


class World:
    """Five prospects and customers of one rep, with different consent situations."""

    def __init__(self, services: Services, staff: Staff) -> None:
        self.services = services
        self.staff = staff

    async def build(self) -> World:
        services = self.services
        self.seller = self.staff.actor(await self.staff.create("sales"))
        self.granted = await _person(services, self.seller, "prospect")
        self.customer = await _person(services, self.seller, "customer")
        self.withdrawn = await _person(services, self.seller, "prospect")
        self.objector = await _person(services, self.seller, "prospect")
        self.restricted = await _person(services, self.seller, "customer")
        self.silent = await _person(services, self.seller, "prospect")  # never consented
        self.lead = await _person(services, self.seller, "lead")  # outside the segment
        version = await _notice(services)
        for record in (
            self.granted,
            self.customer,
            self.withdrawn,
            self.objector,
            self.restricted,
            self.lead,
        ):
            await _grant(services, record, version, "marketing_email")
        await services.consent.withdraw(
            self.withdrawn.subject_id,
            "marketing_email",
            "email",
            source="web_form",
            actor_id="subject",
        )
        await services.consent.object(
            self.objector.subject_id, source="web_form", actor_id="subject"
        )
        await services.erasure.restrictions.restrict(
            self.restricted.subject_id, "data_subject_request", by="system:test"
        )
        self.marketer_identity = await self.staff.create("marketing")
        self.marketer = self.staff.actor(self.marketer_identity)
        return self

    def email_of(self, record: Record) -> str:
        return str(record.values["email"])


async def _segment(services: Services, actor: Actor, *stages: str) -> str:
    segment = await services.campaigns.create_segment(
        actor, "Prospects and customers", "", {"lifecycle_stage": list(stages)}
    )
    return segment.id


async def _email_campaign(services: Services, actor: Actor, segment_id: str) -> str:
    campaign = await services.campaigns.create_campaign(
        actor,
        {
            "name": "Spring offer",
            "purpose": "marketing_email",
            "segment_id": segment_id,
            "subject_line": "Our spring offer",
            "body": "Hello {first_name},\n\nSpring is here.",
        },
    )
    return campaign.id


# --- segments ------------------------------------------------------------------------------


async def test_a_segment_is_re_evaluated_when_a_contact_changes_stage(
    services: Services, staff: Staff
) -> None:
    seller = staff.actor(await staff.create("sales"))
    ada = await _person(services, seller, "prospect")
    await _person(services, seller, "customer")
    await _person(services, seller, "lead")
    marketer = staff.actor(await staff.create("marketing"))
    campaigns = services.campaigns
    segment = await campaigns.segment(
        marketer, await _segment(services, marketer, "prospect", "customer")
    )
    assert await campaigns.segment_size(marketer, segment) == 2

    await services.gateway.update(seller, "contact", ada.id, {"lifecycle_stage": "former_customer"})
    assert await campaigns.segment_size(marketer, segment) == 1
    members = await campaigns.segment_members(marketer, segment)
    assert ada.id not in {m.id for m in members.items}

    # Changing the segment's filters changes who is in it; nothing is frozen.
    await campaigns.update_segment(
        marketer, segment.id, {"filters": {"lifecycle_stage": ["former_customer"]}}
    )
    segment = await campaigns.segment(marketer, segment.id)
    assert [m.id for m in (await campaigns.segment_members(marketer, segment)).items] == [ada.id]


async def test_segment_members_show_only_fields_marketing_may_read(
    services: Services, staff: Staff
) -> None:
    seller = staff.actor(await staff.create("sales"))
    await _person(services, seller, "prospect")
    marketer = await staff.login(await staff.create("marketing"))
    created = await marketer.post(
        SEGMENTS, json={"name": "Prospects", "filters": {"lifecycle_stage": "prospect"}}
    )
    assert created.status_code == 201, created.text
    segment = created.json()
    assert segment["filters"] == {"lifecycle_stage": ["prospect"]}
    size = await marketer.get(f"{SEGMENTS}/{segment['id']}/size")
    assert size.json() == {"size": 1}
    members = await marketer.get(f"{SEGMENTS}/{segment['id']}/members?page_size=10")
    assert members.status_code == 200
    [member] = members.json()["items"]
    assert member["email"].endswith("@example.net")
    for hidden in ("phone", "notes", "job_title", "city", "birth_date"):
        assert hidden not in member
        assert hidden in member["restricted_fields"]


async def test_bad_filters_are_refused_naming_the_field_and_nothing_is_saved(
    services: Services, staff: Staff
) -> None:
    marketer = await staff.login(await staff.create("marketing"))
    for filters, field in (
        ({"email": ["a@example.org"]}, "email"),
        ({"favourite_colour": ["blue"]}, "favourite_colour"),
        ({"lifecycle_stage": ["prospect", "astronaut"]}, "lifecycle_stage"),
        ({"organization_id": ["not-an-id"]}, "organization_id"),
    ):
        bad = await marketer.post(SEGMENTS, json={"name": "Bad", "filters": filters})
        assert bad.status_code == 400, bad.text
        assert [e["field"] for e in bad.json()["errors"]] == [field]
        assert "a@example.org" not in bad.text
    no_name = await marketer.post(SEGMENTS, json={"name": " ", "filters": {}})
    assert no_name.status_code == 400
    assert no_name.json()["errors"][0]["field"] == "name"
    assert (await marketer.get(SEGMENTS)).json() == {"items": []}
    assert (await marketer.get(f"{SEGMENTS}/{uuid.uuid4()}")).status_code == 404
    assert (await marketer.get(f"{SEGMENTS}/nonsense/members")).status_code == 404


async def test_gateway_filters_accept_several_values_and_count_takes_filters(
    services: Services, staff: Staff
) -> None:
    seller = staff.actor(await staff.create("sales"))
    for stage in ("lead", "prospect", "customer", "customer"):
        await _person(services, seller, stage)
    gateway = services.gateway
    page = await gateway.list(seller, "contact", filters={"lifecycle_stage": ["lead", "customer"]})
    assert page.total == 3
    assert {r.values["lifecycle_stage"] for r in page.items} == {"lead", "customer"}
    assert await gateway.count(seller, "contact", filters={"lifecycle_stage": "customer"}) == 2
    assert await gateway.count(seller, "contact", filters={"lifecycle_stage": ["prospect"]}) == 1
    with pytest.raises(InvalidInput) as refused:
        await gateway.count(seller, "contact", filters={"lifecycle_stage": ["customer", "x"]})
    assert set(refused.value.problems) == {"lifecycle_stage"}


async def test_sales_may_not_use_segments_or_campaigns(
    services: Services, staff: Staff, database_url: str
) -> None:
    marketer = staff.actor(await staff.create("marketing"))
    segment_id = await _segment(services, marketer, "prospect")
    campaign_id = await _email_campaign(services, marketer, segment_id)
    seller = await staff.login(await staff.create("sales"))
    before = await last_seq(database_url)
    for method, url, body in (
        ("GET", SEGMENTS, None),
        ("POST", SEGMENTS, {"name": "Mine", "filters": {}}),
        ("GET", f"{SEGMENTS}/{segment_id}/members", None),
        ("GET", CAMPAIGNS, None),
        ("GET", f"{CAMPAIGNS}/{campaign_id}/audience", None),
        ("POST", f"{CAMPAIGNS}/{campaign_id}/send", {"confirm_audience": 0}),
    ):
        response = await seller.request(method, url, json=body)
        assert response.status_code == 403, (method, url, response.text)
    denied = [r for r in await audit_rows(database_url, before) if r["outcome"] == "denied"]
    assert len(denied) == 6
    assert (await seller.get("/api/v1/campaigns")).json()["detail"].startswith("your role")


# --- audience and sending -----------------------------------------------------------------


async def test_the_audience_leaves_out_no_consent_withdrawn_objected_and_restricted(
    services: Services, staff: Staff
) -> None:
    world = await World(services, staff).build()
    marketer = await staff.login(world.marketer_identity)
    segment = await _segment(services, world.marketer, "prospect", "customer")
    campaign = await _email_campaign(services, world.marketer, segment)
    audience = await marketer.get(f"{CAMPAIGNS}/{campaign}/audience")
    assert audience.status_code == 200, audience.text
    # Segment (planning purpose): all prospects and customers but the objector and the
    # restricted person = granted, customer, withdrawn, silent. Audience: granted, customer.
    assert audience.json() == {"segment_size": 4, "audience_size": 2, "excluded": 2}


async def test_audience_size_before_sending_equals_the_messages_sent_and_resending_sends_nothing(
    services: Services, staff: Staff, outbox: Path, database_url: str
) -> None:
    world = await World(services, staff).build()
    marketer = await staff.login(world.marketer_identity)
    segment = await _segment(services, world.marketer, "prospect", "customer")
    campaign = await _email_campaign(services, world.marketer, segment)
    shown = (await marketer.get(f"{CAMPAIGNS}/{campaign}/audience")).json()["audience_size"]

    missing = await marketer.post(f"{CAMPAIGNS}/{campaign}/send", json={})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "confirm_audience"
    sent = await marketer.post(f"{CAMPAIGNS}/{campaign}/send", json={"confirm_audience": shown})
    assert sent.status_code == 200, sent.text
    assert sent.json()["sent"] == shown == 2
    assert sent.json()["status"] == "sent"
    assert _recipients(outbox) == sorted(
        [world.email_of(world.granted), world.email_of(world.customer)]
    )
    mail = _mails(outbox)[0]
    assert mail["Subject"] == "Our spring offer"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Hello Grace," in mail.get_content()

    details = (await marketer.get(f"{CAMPAIGNS}/{campaign}")).json()
    assert details["status"] == "sent"
    assert details["sent_count"] == 2
    assert details["deliveries"] == {"sent": 2}
    # Sent is sent: a second click sends nothing, and says why.
    again = await marketer.post(f"{CAMPAIGNS}/{campaign}/send", json={"confirm_audience": 2})
    assert again.status_code == 409
    assert len(_mails(outbox)) == 2
    # Deliveries hold ids and a status, never an address.
    rows = await raw_sql(database_url, "SELECT * FROM campaign_delivery")
    assert len(rows) == 2
    assert "@" not in json.dumps(rows, default=str)
    audit = await raw_sql(database_url, "SELECT * FROM audit WHERE action = 'campaign.send'")
    assert len(audit) == 1
    assert "@" not in json.dumps(audit, default=str)


async def test_an_interrupted_send_resumes_without_mailing_anyone_twice(
    services: Services, staff: Staff, outbox: Path
) -> None:
    world = await World(services, staff).build()
    campaigns = services.campaigns
    segment = await _segment(services, world.marketer, "prospect", "customer")
    campaign = await _email_campaign(services, world.marketer, segment)
    # A run died part way: it had claimed Ada (her message may have gone out) and the mail
    # server had refused the customer's message.
    now = dt.datetime.now(dt.UTC)
    for record, status in ((world.granted, "sending"), (world.customer, "failed")):
        await CampaignDelivery.insert(
            CampaignDelivery(
                id=uuid.uuid4(),
                campaign_id=uuid.UUID(campaign),
                subject_id=uuid.UUID(record.subject_id),
                status=status,
                error="",
                attempted_at=now,
            )
        ).run()
    await Campaign.update({Campaign.status: "sending"}).where(Campaign.id == uuid.UUID(campaign))

    resumed = await campaigns.send(world.marketer, campaign, 2)
    assert (resumed.sent, resumed.already, resumed.status) == (1, 1, "sent")
    assert _recipients(outbox) == [world.email_of(world.customer)]
    assert await campaigns.delivery_counts(campaign) == {"sending": 1, "sent": 1}
    # Even called directly, past the status check, nobody is claimed twice.
    assert not await campaigns._claim(campaign, world.customer.subject_id)
    assert len(_mails(outbox)) == 1


async def test_a_changed_audience_needs_a_new_confirmation_and_a_withdrawal_is_honoured(
    services: Services, staff: Staff, outbox: Path
) -> None:
    world = await World(services, staff).build()
    marketer = await staff.login(world.marketer_identity)
    segment = await _segment(services, world.marketer, "prospect", "customer")
    campaign = await _email_campaign(services, world.marketer, segment)
    shown = (await marketer.get(f"{CAMPAIGNS}/{campaign}/audience")).json()["audience_size"]
    assert shown == 2
    # Between the preview and the click, the customer withdraws by a link in an old mail.
    link = services.consent.withdrawal_link(world.customer.subject_id, "marketing_email", "email")
    await services.consent.withdraw_by_link(link.rsplit("/", 1)[1])
    stale = await marketer.post(f"{CAMPAIGNS}/{campaign}/send", json={"confirm_audience": shown})
    assert stale.status_code == 409
    assert "now 1" in stale.json()["detail"]
    assert _mails(outbox) == []
    ok = await marketer.post(f"{CAMPAIGNS}/{campaign}/send", json={"confirm_audience": 1})
    assert ok.status_code == 200, ok.text
    assert _recipients(outbox) == [world.email_of(world.granted)]


async def test_the_withdrawal_link_in_the_mail_works(
    services: Services, staff: Staff, outbox: Path, client: AsyncClient
) -> None:
    world = await World(services, staff).build()
    segment = await _segment(services, world.marketer, "prospect")
    campaign = await _email_campaign(services, world.marketer, segment)
    result = await services.campaigns.send(world.marketer, campaign, 1)
    assert result.sent == 1
    [mail] = _mails(outbox)
    [path] = LINK.findall(mail.get_content())
    assert str(mail["List-Unsubscribe"]).endswith(path + ">")
    page = await client.get(path)
    assert page.status_code == 200
    done = await client.post(path)
    assert done.status_code == 200
    basis = await services.consent.has_basis(world.granted.subject_id, "marketing_email")
    assert not basis.ok
    # The next campaign to the same segment reaches nobody.
    campaign2 = await _email_campaign(services, world.marketer, segment)
    audience = await services.campaigns.audience(
        world.marketer, await services.campaigns.campaign(world.marketer, campaign2)
    )
    assert (audience.segment_size, audience.audience_size) == (3, 0)


async def test_phone_campaigns_give_a_call_list_and_send_nothing(
    services: Services, staff: Staff, outbox: Path
) -> None:
    world = await World(services, staff).build()
    version = await _notice(services)
    await _grant(services, world.silent, version, "marketing_phone")
    marketer = await staff.login(world.marketer_identity)
    segment = await _segment(services, world.marketer, "prospect")
    created = await marketer.post(
        CAMPAIGNS,
        json={"name": "Call round", "purpose": "marketing_phone", "segment_id": segment},
    )
    assert created.status_code == 201, created.text
    assert created.json()["channel"] == "phone"
    campaign = created.json()["id"]
    calls = (await marketer.get(f"{CAMPAIGNS}/{campaign}/call-list")).json()
    assert [c["id"] for c in calls["items"]] == [world.silent.id]
    assert calls["items"][0]["phone"]  # readable under marketing_phone
    refused = await marketer.post(f"{CAMPAIGNS}/{campaign}/send", json={"confirm_audience": 1})
    assert refused.status_code == 409
    assert _mails(outbox) == []


async def test_campaign_validation_names_the_field_and_unknown_ids_are_404(
    services: Services, staff: Staff
) -> None:
    marketer_identity = await staff.create("marketing")
    marketer = await staff.login(marketer_identity)
    segment = await _segment(services, staff.actor(marketer_identity), "prospect")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "X", "purpose": "profiling", "segment_id": segment}, "purpose"),
        (
            {"name": "X", "purpose": "marketing_email", "segment_id": str(uuid.uuid4())},
            "segment_id",
        ),
        (
            {"name": "X", "purpose": "marketing_email", "segment_id": segment, "body": "Hi"},
            "subject_line",
        ),
        ({"name": "", "purpose": "marketing_email", "segment_id": segment}, "name"),
    ]
    for body, field in cases:
        bad = await marketer.post(CAMPAIGNS, json=body)
        assert bad.status_code == 400, bad.text
        assert field in [e["field"] for e in bad.json()["errors"]], bad.text
    assert (await marketer.get(CAMPAIGNS)).json() == {"items": []}
    for url in (f"{CAMPAIGNS}/{uuid.uuid4()}", f"{CAMPAIGNS}/{uuid.uuid4()}/audience"):
        assert (await marketer.get(url)).status_code == 404
    gone = await marketer.post(f"{CAMPAIGNS}/{uuid.uuid4()}/send", json={"confirm_audience": 0})
    assert gone.status_code == 404
    # A segment a campaign uses cannot be deleted from under it.
    campaign = await _email_campaign(services, staff.actor(marketer_identity), segment)
    assert (await marketer.delete(f"{SEGMENTS}/{segment}")).status_code == 409
    assert (await marketer.delete(f"{CAMPAIGNS}/{campaign}")).status_code == 204
    assert (await marketer.delete(f"{SEGMENTS}/{segment}")).status_code == 204


# --- admin pages -------------------------------------------------------------------------


async def test_the_admin_pages_build_a_segment_preview_the_audience_and_send(
    services: Services, staff: Staff, outbox: Path
) -> None:
    world = await World(services, staff).build()
    web = await web_login(staff, world.marketer_identity)
    home = await web.get("/")
    assert 'href="/campaigns"' in home.text  # in the navigation for marketing

    # A bad segment (no name) answers 400 with the field named, and saves nothing.
    bad = await submit(web, "/campaigns/segments/new", "/campaigns/segments/new", {"name": ""})
    assert bad.status_code == 400
    assert "Name: must not be empty" in text_of(bad)
    saved = await submit(
        web,
        "/campaigns/segments/new",
        "/campaigns/segments/new",
        {"name": "Warm", "lifecycle_stage": ["prospect", "customer"]},
    )
    segment_page = await web.get(location(saved))
    assert "Members now: 4" in text_of(segment_page)
    assert world.email_of(world.granted) in segment_page.text  # marketing may read e-mail
    assert "+44" not in segment_page.text  # but not the phone number
    members = text_of(segment_page).split("Members now")[1].split("Change the segment")[0]
    assert "Customer" in members  # stages and sources by their labels, never the codes
    assert " customer " not in members
    segment_id = location(saved).rsplit("/", 1)[1]

    created = await submit(
        web,
        "/campaigns/new",
        "/campaigns/new",
        {
            "name": "Spring offer",
            "purpose": "marketing_email",
            "segment_id": segment_id,
            "subject_line": "Spring",
            "body": "Hello {first_name}",
        },
    )
    campaign_url = location(created)
    preview = await web.get(campaign_url)
    words = text_of(preview)
    assert "People in the segment 4" in words
    assert "Will be sent the e-mail 2" in words
    assert "or restricted 2" in words  # left out
    assert _mails(outbox) == []

    # The audience shrinks between the preview and the click: nothing is sent, new numbers.
    await services.consent.withdraw(
        world.customer.subject_id, "marketing_email", "email", source="web_form",
        actor_id="subject",
    )  # fmt: skip
    stale = await submit(
        web, campaign_url, campaign_url + "/send", {"confirm_audience": "2", "confirm": "yes"}
    )
    assert stale.status_code == 409
    assert "Nothing was sent: the audience is now 1 people" in text_of(stale)
    assert "Will be sent the e-mail 1" in text_of(stale)
    assert _mails(outbox) == []
    sent = await submit(
        web, campaign_url, campaign_url + "/send", {"confirm_audience": "1", "confirm": "yes"}
    )
    result = await web.get(location(sent))
    assert "Sent to 1 people." in text_of(result)
    assert "Sent 1" in text_of(result)
    assert _recipients(outbox) == [world.email_of(world.granted)]


async def test_a_phone_campaign_page_offers_a_call_list_of_those_who_agreed(
    services: Services, staff: Staff
) -> None:
    world = await World(services, staff).build()
    await _grant(services, world.silent, await _notice(services), "marketing_phone")
    web = await web_login(staff, world.marketer_identity)
    segment = await _segment(services, world.marketer, "prospect")
    created = await submit(
        web,
        "/campaigns/new",
        "/campaigns/new",
        {"name": "Calls", "purpose": "marketing_phone", "segment_id": segment},
    )
    page = await web.get(location(created))
    assert "Will be on the call list 1" in text_of(page)
    assert "/send" not in page.text  # nothing to send on the phone channel
    calls = await web.get(location(created) + "/call-list")
    assert calls.status_code == 200
    assert "+44" in calls.text  # the phone number, readable under marketing_phone
    assert world.silent.id in calls.text
    assert world.granted.id not in calls.text  # agreed to e-mail, not to calls
    cancelled = await submit(web, location(created), location(created) + "/cancel")
    assert "Cancelled" in text_of(await web.get(location(cancelled)))


async def test_sales_gets_no_campaign_pages(services: Services, staff: Staff) -> None:
    seller = await staff.create("sales")
    web = await web_login(staff, seller)
    assert 'href="/campaigns"' not in (await web.get("/")).text
    for url in ("/campaigns", "/campaigns/segments/new", "/campaigns/new"):
        assert (await web.get(url)).status_code == 403


# --- logs ----------------------------------------------------------------------------------


@pytest.fixture
def server_log(app: Litestar) -> Iterator[io.StringIO]:
    """Everything the server logs, formatted as in production (not the test's client)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    [configured] = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)
    ]
    handler.setFormatter(configured.formatter)
    handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


async def test_no_email_address_reaches_the_server_logs(
    services: Services, staff: Staff, outbox: Path, server_log: io.StringIO
) -> None:
    world = await World(services, staff).build()
    marketer = await staff.login(world.marketer_identity)
    segment = await _segment(services, world.marketer, "prospect", "customer")
    campaign = await _email_campaign(services, world.marketer, segment)
    await marketer.get(f"{SEGMENTS}/{segment}/members")
    await marketer.get(f"{CAMPAIGNS}/{campaign}/audience")
    await marketer.post(f"{CAMPAIGNS}/{campaign}/send", json={"confirm_audience": 5})  # 409
    sent = await marketer.post(f"{CAMPAIGNS}/{campaign}/send", json={"confirm_audience": 2})
    assert sent.json()["sent"] == 2
    text = server_log.getvalue().lower()
    assert "campaign sent" in text  # the log was captured
    for record in (world.granted, world.customer, world.withdrawn, world.silent):
        assert world.email_of(record).lower() not in text
