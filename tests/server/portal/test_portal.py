"""The customer portal: sign-in by e-mailed link, the person's requests, downloads.

Mail is a real SMTP round trip to a local aiosmtpd server. The sign-in link is e-mailed
by a background task that runs after the answer; httpx's ASGI transport waits for it, so
the message is there when the test reads the response.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import secrets
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from httpx import AsyncClient, Response
from litestar import Litestar

from audit.tables import AuditRecord
from server.app import create_app
from server.background import remove_expired_rows
from server.gateway import Actor, Record
from server.portal.routes import PORTAL_COOKIE
from server.portal.tables import PortalSession, PortalToken
from server.services import Services, build_services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import CSRF_INPUT, csrf_of, text_of
from tests.conftest import contact_values, http_client
from tests.dbutil import raw_sql
from tests.server.leads.test_leads import FORM as LEAD_FORM
from tests.server.leads.test_leads import form_body as lead_form_body
from tests.server.test_logging import CLIENT_LOGGERS, Captured, _configured_handler
from tests.server.test_mail import LocalSmtp, local_smtp

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((ROOT / "docs" / "dsr-export.schema.json").read_text())
ENTER_LINK = re.compile(r"http://testserver(/portal/enter/\S+)")
DOWNLOAD_LINK = re.compile(r"http://testserver(/portal/download/\S+)")
INVALID_TEXT = "This link is not valid any more. Ask for a new one."
SENT_TEXT = "If we hold data under that address, we have sent a sign-in link to it."


@pytest.fixture
def smtp() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture
def portal_services(settings: Settings, smtp: LocalSmtp) -> Services:
    return build_services(smtp.settings(settings, public_url="http://testserver"))


@pytest.fixture
def portal_app(portal_services: Services) -> Litestar:
    return create_app(portal_services.settings, portal_services)


@pytest.fixture
async def web(portal_app: Litestar) -> AsyncIterator[AsyncClient]:
    async with http_client(portal_app) as client:
        yield client


@pytest.fixture
def logs(portal_app: Litestar) -> Iterator[Captured]:
    """What the portal's server logs, formatted as in production (see test_logging)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_configured_handler().formatter)
    # Not the test's clients, nor aiosmtpd ("mail.log"): it plays the recipient's server.
    ignored = (*CLIENT_LOGGERS, "mail.log")
    handler.addFilter(lambda record: not record.name.startswith(ignored))
    logging.getLogger().addHandler(handler)
    try:
        yield Captured(stream)
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture
async def person(portal_services: Services) -> Record:
    return await portal_services.gateway.create(
        Actor.system("test-seed"), "contact", contact_values(first_name="Philomena")
    )


def email_of(record: Record) -> str:
    return str(record.values["email"])


async def form_token(web: AsyncClient) -> str:
    """A CSRF token for this client's forms (from the home page once signed in)."""
    page = await web.get("/portal")
    if page.status_code == 303:
        page = await web.get("/portal/home")
    return csrf_of(page)


async def ask_for_link(web: AsyncClient, address: str) -> Response:
    return await web.post("/portal", data={"email": address, "_csrf_token": await form_token(web)})


def last_link(smtp: LocalSmtp, pattern: re.Pattern[str] = ENTER_LINK) -> str:
    assert smtp.received, "no e-mail was sent"
    match = pattern.search(smtp.received[-1].text)
    assert match, smtp.received[-1].text
    return match.group(1)


def download_link(smtp: LocalSmtp) -> str:
    """The link in the newest "ready to download" message (the request's own status
    message follows it)."""
    links = [m.group(1) for r in smtp.received if (m := DOWNLOAD_LINK.search(r.text))]
    assert links, "no download link was e-mailed"
    return links[-1]


async def enter(web: AsyncClient, link: str) -> Response:
    """Open the link's page and press Continue."""
    page = await web.get(link)
    assert page.status_code == 200, page.text[:300]
    return await web.post(link, data={"_csrf_token": csrf_of(page)})


async def signed_in(web: AsyncClient, smtp: LocalSmtp, record: Record) -> None:
    await ask_for_link(web, email_of(record))
    response = await enter(web, last_link(smtp))
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/home"


async def press(web: AsyncClient, page: str, action: str, **fields: str) -> Response:
    """Submit a form of ``page`` (with that page's CSRF token)."""
    opened = await web.get(page)
    assert opened.status_code == 200, opened.text[:300]
    return await web.post(action, data={**fields, "_csrf_token": csrf_of(opened)})


def without_csrf(page: Response) -> str:
    return CSRF_INPUT.sub('name="_csrf_token" value=""', page.text)


async def audit_rows(action: str) -> list[dict[str, Any]]:
    return list(
        await AuditRecord.select().where(AuditRecord.action == action).order_by(AuditRecord.seq)
    )


# --- asking for a link --------------------------------------------------------------------


async def test_known_and_unknown_addresses_get_the_same_page_and_only_one_gets_mail(
    web: AsyncClient, smtp: LocalSmtp, person: Record
) -> None:
    known = await ask_for_link(web, email_of(person).upper())
    unknown = await ask_for_link(web, "nobody.here@example.org")

    assert known.status_code == unknown.status_code == 200
    assert without_csrf(known) == without_csrf(unknown)
    assert SENT_TEXT in text_of(known)
    assert len(smtp.received) == 1
    assert smtp.received[0].recipients == [email_of(person)]
    assert "15 minutes" in smtp.received[0].text
    # The lookup went through the gateway and was audited with the subject found.
    # One lookup per kind of person record (contacts, leads) for each address.
    located = await audit_rows("locate")
    assert [(row["actor_id"], row["resource_type"]) for row in located] == [
        ("system:portal", "contact"),
        ("system:portal", "lead"),
    ] * 2
    assert person.subject_id in located[0]["subject_ids"]


async def test_a_malformed_address_is_refused_without_echoing_it(web: AsyncClient) -> None:
    response = await ask_for_link(web, "not an address <b>")
    assert response.status_code == 400
    assert "like name@example.com" in text_of(response)
    assert "not an address" not in response.text


# --- signing in ---------------------------------------------------------------------------


async def test_the_link_from_the_email_signs_in_once(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_app: Litestar
) -> None:
    await ask_for_link(web, email_of(person))
    link = last_link(smtp)
    # Opening the link (as a mail scanner would) spends nothing.
    assert (await web.get(link)).status_code == 200
    response = await enter(web, link)

    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{PORTAL_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/portal" in cookie
    home = await web.get("/portal/home")
    assert home.status_code == 200
    assert "Your requests" in text_of(home)
    signs = await audit_rows("portal.sign_in")
    assert [(r["actor_id"], r["actor_role"]) for r in signs] == [("subject", "data_subject")]
    assert person.subject_id in signs[0]["subject_ids"]

    # The same link again, even from another browser: refused.
    async with http_client(portal_app) as other:
        again = await other.post(link, data={"_csrf_token": await form_token(other)})
    assert again.status_code == 410
    assert INVALID_TEXT in text_of(again)


async def test_reused_expired_and_forged_links_get_the_same_page(
    web: AsyncClient, smtp: LocalSmtp, person: Record
) -> None:
    await ask_for_link(web, email_of(person))
    used = last_link(smtp)
    assert (await enter(web, used)).status_code == 303
    await ask_for_link(web, email_of(person))
    expired = last_link(smtp)
    await PortalToken.update(
        {PortalToken.expires_at: dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)}
    ).where(PortalToken.used_at.is_null())
    forged = f"/portal/enter/{secrets.token_urlsafe(32)}"

    pages = []
    for link in (used, expired, forged):
        shown = await web.get(link)
        assert shown.status_code == 410
        pressed = await web.post(link, data={"_csrf_token": await form_token(web)})
        assert pressed.status_code == 410
        pages += [shown.text, pressed.text]
    assert len(set(pages)) == 1
    assert INVALID_TEXT in pages[0]


async def test_a_session_ends_after_30_idle_minutes_and_on_sign_out(
    web: AsyncClient, smtp: LocalSmtp, person: Record
) -> None:
    await signed_in(web, smtp, person)
    await PortalSession.update(
        {PortalSession.last_seen_at: dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31)}
    ).where(PortalSession.subject_id == uuid.UUID(person.subject_id))
    response = await web.get("/portal/home")
    assert response.status_code == 303
    assert response.headers["location"] == "/portal"

    await signed_in(web, smtp, person)
    out = await press(web, "/portal/home", "/portal/sign-out")
    assert "You are signed out." in text_of(out)
    assert (await web.get("/portal/home")).status_code == 303
    assert await PortalSession.count() == 0


async def test_the_daily_housekeeping_removes_dead_links_and_sessions_only(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await signed_in(web, smtp, person)  # a used link and a live session
    await ask_for_link(web, email_of(person))  # a live link
    await ask_for_link(web, email_of(person))
    await PortalToken.update(
        {PortalToken.expires_at: dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)}
    ).where(PortalToken.id == (await PortalToken.select(PortalToken.id).limit(1))[0]["id"])
    live_links = await PortalToken.count() - 1

    removed = await remove_expired_rows(portal_services)

    assert removed["portal_links"] == 1
    assert removed["portal_sessions"] == 0
    assert await PortalToken.count() == live_links
    assert (await web.get("/portal/home")).status_code == 200  # still signed in
    await PortalSession.update(
        {PortalSession.last_seen_at: dt.datetime.now(dt.UTC) - dt.timedelta(minutes=31)}
    ).where(PortalSession.subject_id == uuid.UUID(person.subject_id))
    assert (await remove_expired_rows(portal_services))["portal_sessions"] == 1
    assert await PortalSession.count() == 0


async def test_a_staff_session_is_no_portal_session(web: AsyncClient, portal_app: Litestar) -> None:
    web.cookies.set("consentry_session", "anything")
    assert (await web.get("/portal/home")).status_code == 303


# --- throttling ---------------------------------------------------------------------------


async def test_link_requests_are_limited_per_address(
    web: AsyncClient, smtp: LocalSmtp, person: Record
) -> None:
    for _ in range(5):
        await ask_for_link(web, email_of(person))
    assert len(smtp.received) == 5
    # Spent links are no longer outstanding: only the throttle can stop the next one.
    await PortalToken.update({PortalToken.used_at: dt.datetime.now(dt.UTC)}).where(
        PortalToken.used_at.is_null()
    )
    response = await ask_for_link(web, email_of(person))
    assert SENT_TEXT in text_of(response)
    assert len(smtp.received) == 5


async def test_at_most_five_links_are_outstanding(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    for _ in range(5):
        await ask_for_link(web, email_of(person))
    await raw_sql(portal_services.settings.database_url, "DELETE FROM login_throttle")
    await ask_for_link(web, email_of(person))
    assert len(smtp.received) == 5
    denied = await audit_rows("portal.sign_in_link")
    assert denied[-1]["reason"] == "too_many_links"


async def test_link_requests_are_limited_per_client_address(
    web: AsyncClient, smtp: LocalSmtp, person: Record
) -> None:
    for n in range(20):
        await ask_for_link(web, f"someone.{n}@example.org")
    response = await ask_for_link(web, email_of(person))
    assert SENT_TEXT in text_of(response)
    assert smtp.received == []


# --- what a signed-in person can do -------------------------------------------------------


async def test_download_my_data_returns_the_signed_bundle(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await signed_in(web, smtp, person)
    response = await press(web, "/portal/home", "/portal/download")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        data = json.loads(bundle.read("data.json"))
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    assert data["subject_id"] == person.subject_id
    assert data["records"]["contact"][0]["first_name"] == "Philomena"

    (request,) = await portal_services.requests.for_subject(person.subject_id)
    assert (request.kind, request.state, request.channel, request.verification) == (
        "access",
        "fulfilled",
        "portal",
        "email_link",
    )
    exports = await audit_rows("dsr.export")
    assert [(r["actor_id"], r["outcome"]) for r in exports] == [("subject", "allowed")]
    assert len(await audit_rows("portal.download")) == 1
    # Answered on the spot: no download link was e-mailed for it.
    assert not any(DOWNLOAD_LINK.search(m.text) for m in smtp.received)
    home = text_of(await web.get("/portal/home"))
    assert "Access to your data" in home
    assert "Fulfilled" in home


async def test_download_my_data_twice_is_one_request_and_one_email(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await signed_in(web, smtp, person)
    before = len(smtp.received)
    first = await press(web, "/portal/home", "/portal/download")
    second = await press(web, "/portal/home", "/portal/download")
    assert first.status_code == second.status_code == 200
    assert second.headers["content-type"] == "application/zip"
    (request,) = await portal_services.requests.for_subject(person.subject_id)
    assert request.state == "fulfilled"
    mails = smtp.received[before:]
    assert len(mails) == 1, [m.subject for m in mails]
    assert "fulfilled" in mails[0].text
    assert len(await audit_rows("portal.download")) == 2


async def test_download_while_an_access_request_is_open_says_it_is_in_progress(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await signed_in(web, smtp, person)
    await portal_services.requests.log(
        person.subject_id, "access", "phone", verification="phone_callback", by="user:1",
        contact_id=person.id,
    )  # fmt: skip
    refused = await press(web, "/portal/home", "/portal/download")
    assert refused.status_code == 409
    assert "already in progress" in text_of(refused)
    assert len(await portal_services.requests.for_subject(person.subject_id)) == 1


async def test_erase_my_data_asks_for_confirmation_first(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await signed_in(web, smtp, person)
    asked = await press(web, "/portal/home", "/portal/requests", kind="erasure")
    assert asked.status_code == 200
    assert "Erase your data?" in text_of(asked)
    assert "cannot be undone" in text_of(asked)
    assert await portal_services.requests.for_subject(person.subject_id) == []
    filed = await web.post(
        "/portal/requests",
        data={"kind": "erasure", "confirmed": "yes", "_csrf_token": csrf_of(asked)},
    )
    assert "We received your request" in text_of(filed)
    assert len(await portal_services.requests.for_subject(person.subject_id)) == 1


@pytest.mark.parametrize("kind", ["erasure", "restriction", "objection"])
async def test_requests_for_review_reach_the_compliance_queue_once(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services, kind: str
) -> None:
    await signed_in(web, smtp, person)
    confirmed = {"confirmed": "yes"} if kind == "erasure" else {}
    response = await press(web, "/portal/home", "/portal/requests", kind=kind, **confirmed)

    assert response.status_code == 200
    queue = await portal_services.requests.queue(open_only=True)
    assert [(r.kind, r.subject_id, r.channel, r.verification) for r in queue] == [
        (kind, person.subject_id, "portal", "email_link")
    ]
    page = text_of(response)
    assert queue[0].id in page
    assert f"{queue[0].deadline:%d %B %Y}" in page
    assert queue[0].id in text_of(await web.get("/portal/home"))

    again = await press(web, "/portal/home", "/portal/requests", kind=kind, **confirmed)
    assert again.status_code == 409
    assert "already have an open request" in text_of(again)
    assert len(await portal_services.requests.queue(open_only=True)) == 1


async def test_a_request_kind_the_page_does_not_offer_is_refused(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await signed_in(web, smtp, person)
    response = await press(web, "/portal/home", "/portal/requests", kind="rectification")
    assert response.status_code == 400
    assert await portal_services.requests.queue() == []


async def test_a_correction_is_written_through_the_gateway_and_recorded(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await signed_in(web, smtp, person)
    form = await web.get("/portal/correct")
    assert "Philomena" in form.text
    assert email_of(person) in form.text
    assert "cannot be changed here" in text_of(form)
    fields = {
        "first_name": "Philomena",
        "last_name": "Brackenridge",
        "phone": "+44 20 7946 0999",
        "address_line": "",
        "city": "Arlington",
        "postcode": "",
        "country": "US",
    }
    response = await web.post("/portal/correct", data={**fields, "_csrf_token": csrf_of(form)})

    assert response.status_code == 200
    assert "Corrected: last name, phone number." in text_of(response)
    stored = await portal_services.gateway.read(
        Actor.system("test"), "contact", person.id, purpose="compliance"
    )
    assert stored.values["last_name"] == "Brackenridge"
    assert stored.values["phone"] == "+442079460999"
    updates = await audit_rows("update")
    assert [(r["actor_id"], json.loads(r["fields"])) for r in updates] == [
        ("system:portal", ["last_name", "phone"])
    ]
    (request,) = await portal_services.requests.for_subject(person.subject_id)
    assert (request.kind, request.state) == ("rectification", "fulfilled")


async def test_an_invalid_correction_changes_nothing(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await signed_in(web, smtp, person)
    response = await press(
        web, "/portal/correct", "/portal/correct", first_name="", last_name="X", phone="12"
    )
    assert response.status_code == 400
    page = text_of(response)
    assert "must not be empty" in page
    assert "not a valid phone number" in page
    stored = await portal_services.gateway.read(
        Actor.system("test"), "contact", person.id, purpose="compliance"
    )
    assert stored.values["first_name"] == "Philomena"
    assert await audit_rows("update") == []
    assert await portal_services.requests.for_subject(person.subject_id) == []


async def test_manage_my_consents_opens_the_preference_center(
    web: AsyncClient, smtp: LocalSmtp, person: Record
) -> None:
    await signed_in(web, smtp, person)
    response = await web.get("/portal/consents")
    assert response.status_code == 303
    target = response.headers["location"]
    assert target.startswith("http://testserver/preferences/p1.")
    assert (await web.get(target.removeprefix("http://testserver"))).status_code == 200


async def test_pages_name_the_controller_and_link_the_privacy_notice(
    web: AsyncClient, portal_services: Services
) -> None:
    page = await web.get("/portal")
    assert portal_services.settings.controller_name in text_of(page)
    assert 'href="/portal/notice"' in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert (await web.get("/portal/notice")).status_code == 200


# --- download links for requests staff fulfil ---------------------------------------------


async def staff_fulfilled_access(services: Services, record: Record) -> str:
    logged = await services.requests.log(
        record.subject_id,
        "access",
        "phone",
        verification="phone_callback",
        by="user:7",
        contact_id=record.id,
    )
    for state in ("in_review", "approved", "fulfilled"):
        await services.requests.transition(logged.request.id, state, by="user:7")
    return logged.request.id


async def test_a_fulfilled_access_request_mails_a_download_link_for_the_signed_in_person(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    request_id = await staff_fulfilled_access(portal_services, person)
    mails = [m for m in smtp.received if DOWNLOAD_LINK.search(m.text)]
    assert len(mails) == 1
    assert mails[0].recipients == [email_of(person)]
    assert "The link works until" in mails[0].text
    assert "sign in" in mails[0].text
    link = download_link(smtp)
    assert (await audit_rows("portal.download_link"))[0]["resource_id"] == request_id

    # Not signed in: the link asks for a sign-in and serves nothing.
    before = await web.get(link)
    assert before.status_code == 200
    assert "first sign in" in text_of(before)
    assert before.headers["content-type"].startswith("text/html")

    await signed_in(web, smtp, person)
    # Opening the link (or following it from anywhere) builds nothing: it shows a button.
    page = await web.get(link)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'<form method="post" action="{link}">' in page.text
    assert await audit_rows("portal.download") == []
    response = await web.post(link, data={"_csrf_token": csrf_of(page)})
    assert response.headers["content-type"] == "application/zip"
    home = await web.get("/portal/home")
    request_download = f"/portal/requests/{request_id}/download"
    assert f'<form method="post" action="{request_download}">' in home.text
    assert (await web.get(request_download)).status_code == 405
    again = await web.post(request_download, data={"_csrf_token": csrf_of(home)})
    assert again.headers["content-type"] == "application/zip"
    downloads = await audit_rows("portal.download")
    assert [(r["actor_id"], r["outcome"]) for r in downloads] == [("subject", "allowed")] * 2


async def test_downloads_need_the_csrf_token(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    """A cross-site form (no CSRF token) cannot make the person's browser build a bundle."""
    request_id = await staff_fulfilled_access(portal_services, person)
    link = download_link(smtp)
    await signed_in(web, smtp, person)
    for action in (link, f"/portal/requests/{request_id}/download", "/portal/download"):
        refused = await web.post(action, data={})
        assert refused.status_code == 403, action
        assert refused.headers["content-type"] != "application/zip"
    assert await audit_rows("portal.download") == []


async def test_a_download_link_is_refused_to_someone_else_when_expired_or_forged(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await staff_fulfilled_access(portal_services, person)
    link = download_link(smtp)
    other = await portal_services.gateway.create(
        Actor.system("test-seed"), "contact", contact_values(first_name="Otto")
    )
    await signed_in(web, smtp, other)
    stranger_page = await web.get(link)
    assert stranger_page.status_code == 410
    token = await form_token(web)
    stranger = await web.post(link, data={"_csrf_token": token})
    assert stranger.status_code == 410
    assert INVALID_TEXT in text_of(stranger)

    await signed_in(web, smtp, person)
    token = await form_token(web)
    forged_link = f"/portal/download/{secrets.token_urlsafe(32)}"
    assert (await web.get(forged_link)).status_code == 410
    forged = await web.post(forged_link, data={"_csrf_token": token})
    await PortalToken.update(
        {PortalToken.expires_at: dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)}
    ).where(PortalToken.kind == "download")
    assert (await web.get(link)).status_code == 410
    expired = await web.post(link, data={"_csrf_token": token})
    assert forged.status_code == expired.status_code == 410
    assert forged.text == expired.text == stranger.text == stranger_page.text
    denied = await audit_rows("portal.download")
    assert {r["outcome"] for r in denied} == {"denied"}


# --- what the database keeps, and CSRF ----------------------------------------------------


async def test_the_portal_tables_hold_no_address_or_token(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    await signed_in(web, smtp, person)
    await staff_fulfilled_access(portal_services, person)
    url = portal_services.settings.database_url
    link_token = download_link(smtp).rsplit("/", 1)[1]
    cookie = web.cookies[PORTAL_COOKIE]
    dump = ""
    for table in ("portal_token", "portal_session", "login_throttle"):
        dump += json.dumps(await raw_sql(url, f"SELECT * FROM {table}"), default=str)
    assert dump.count(person.subject_id) >= 3
    for secret in (email_of(person), email_of(person).split("@")[0], link_token, cookie):
        assert secret not in dump


async def test_portal_forms_need_the_csrf_token(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services
) -> None:
    refused = await web.post("/portal", data={"email": email_of(person)})
    assert refused.status_code == 403
    assert smtp.received == []

    await web.get("/portal")
    await ask_for_link(web, email_of(person))
    link = last_link(smtp)
    assert (await web.post(link, data={})).status_code == 403
    assert (await enter(web, link)).status_code == 303  # the link was not spent
    for action, fields in (
        ("/portal/requests", {"kind": "erasure"}),
        ("/portal/download", {}),
        ("/portal/correct", {"first_name": "Mallory"}),
        ("/portal/sign-out", {}),
    ):
        assert (await web.post(action, data=fields)).status_code == 403, action
    assert await portal_services.requests.for_subject(person.subject_id) == []
    assert (await web.get("/portal/home")).status_code == 200


async def test_addresses_links_and_cookies_never_reach_the_logs(
    web: AsyncClient, smtp: LocalSmtp, person: Record, portal_services: Services, logs: Captured
) -> None:
    await signed_in(web, smtp, person)
    sign_in_link = last_link(smtp)
    await staff_fulfilled_access(portal_services, person)
    link = download_link(smtp)
    page = await web.get(link)
    assert page.status_code == 200
    downloaded = await web.post(link, data={"_csrf_token": csrf_of(page)})
    assert downloaded.headers["content-type"] == "application/zip"
    await ask_for_link(web, "nobody.here@example.org")

    assert "/portal/enter/[token]" in logs.text
    assert "/portal/download/[token]" in logs.text
    for secret in (
        email_of(person),
        "nobody.here",
        sign_in_link.rsplit("/", 1)[1],
        link.rsplit("/", 1)[1],
        web.cookies[PORTAL_COOKIE],
    ):
        assert secret not in logs.text


async def test_the_favicon_is_served_without_signing_in(web: AsyncClient) -> None:
    icon = await web.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")


def test_the_controller_name_is_required_outside_demo_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from server.settings import DEMO_CONTROLLER_NAME, Settings

    monkeypatch.delenv("CONSENTRY_CONTROLLER_NAME", raising=False)
    monkeypatch.delenv("CONSENTRY_DEMO", raising=False)
    assert Settings.from_env().controller_name == ""
    monkeypatch.setenv("CONSENTRY_DEMO", "1")
    assert Settings.from_env().controller_name == DEMO_CONTROLLER_NAME
    monkeypatch.setenv("CONSENTRY_CONTROLLER_NAME", "  Acme Widgets GmbH ")
    assert Settings.from_env().controller_name == "Acme Widgets GmbH"


# --- every data subject: people who are only leads ------------------------------------------


async def lead_from_the_public_form(web: AsyncClient, services: Services) -> Record:
    """A lead as the website's "contact us" form creates it (no staff involved)."""
    sent = await web.post(LEAD_FORM, json=lead_form_body(services, phone="+44 20 7946 0777"))
    assert sent.status_code == 202, sent.text
    (lead,) = (
        await services.gateway.list(Actor.system("test-seed"), "lead", purpose="compliance")
    ).items
    return lead


async def test_a_lead_from_the_web_form_signs_in_downloads_and_asks_for_erasure(
    web: AsyncClient, smtp: LocalSmtp, portal_services: Services
) -> None:
    lead = await lead_from_the_public_form(web, portal_services)

    await signed_in(web, smtp, lead)  # the link from the outbox signs them in
    home = text_of(await web.get("/portal/home"))
    assert "Download" in home

    response = await press(web, "/portal/home", "/portal/download")
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        data = json.loads(bundle.read("data.json"))
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    (exported,) = data["records"]["lead"]
    assert (exported["id"], exported["email"]) == (lead.id, email_of(lead))
    assert "contact" not in data["records"]

    asked = await press(web, "/portal/home", "/portal/requests", kind="erasure")
    filed = await web.post(
        "/portal/requests",
        data={"kind": "erasure", "confirmed": "yes", "_csrf_token": csrf_of(asked)},
    )
    assert "We received your request" in text_of(filed)
    queue = await portal_services.requests.queue(open_only=True)
    assert [(r.kind, r.subject_id, r.contact_id) for r in queue] == [
        ("erasure", lead.subject_id, lead.id)
    ]
    # The request's own status message reached the lead's address.
    assert smtp.received[-1].recipients == [email_of(lead)]
    assert queue[0].id in smtp.received[-1].text


async def test_a_lead_corrects_the_fields_a_lead_has(
    web: AsyncClient, smtp: LocalSmtp, portal_services: Services
) -> None:
    lead = await lead_from_the_public_form(web, portal_services)
    await signed_in(web, smtp, lead)
    form = await web.get("/portal/correct")
    assert form.status_code == 200
    assert 'name="phone"' in form.text
    assert 'name="city"' not in form.text  # a lead has no postal address to correct
    assert email_of(lead) in form.text

    response = await web.post(
        "/portal/correct",
        data={
            "first_name": "Ottilie",
            "last_name": lead.values["last_name"],
            "phone": "+44 20 7946 0999",
            "_csrf_token": csrf_of(form),
        },
    )
    assert response.status_code == 200
    assert "Corrected: first name, phone number" in text_of(response)
    stored = await portal_services.gateway.read(
        Actor.system("test-seed"), "lead", lead.id, purpose="compliance"
    )
    assert stored.values["first_name"] == "Ottilie"
    (request,) = await portal_services.requests.for_subject(lead.subject_id)
    assert (request.kind, request.state) == ("rectification", "fulfilled")


async def test_conversion_keeps_one_person_one_portal_identity_one_history(
    web: AsyncClient, smtp: LocalSmtp, portal_services: Services
) -> None:
    lead = await lead_from_the_public_form(web, portal_services)
    await signed_in(web, smtp, lead)
    await press(web, "/portal/home", "/portal/requests", kind="objection")

    conversion = await portal_services.gateway.convert_lead(
        Actor.system("test-seed"), lead.id, purpose="customer_relationship"
    )
    assert conversion.subject_id == lead.subject_id
    # Still signed in, as the same person: the correction page now shows the contact's
    # fields, and the request made as a lead is in the same history.
    form = await web.get("/portal/correct")
    assert form.status_code == 200
    assert 'name="city"' in form.text
    await web.post(
        "/portal/correct",
        data={
            "first_name": "Ottilie",
            "last_name": lead.values["last_name"],
            "phone": "",
            "address_line": "",
            "city": "Quenby",
            "postcode": "",
            "country": "",
            "_csrf_token": csrf_of(form),
        },
    )
    contact = await portal_services.gateway.read(
        Actor.system("test-seed"), "contact", conversion.contact_id, purpose="compliance"
    )
    assert (contact.values["first_name"], contact.values["city"]) == ("Ottilie", "Quenby")
    kinds = [r.kind for r in await portal_services.requests.for_subject(lead.subject_id)]
    assert sorted(kinds) == ["objection", "rectification"]

    # The lead and its contact share the address: one sign-in link, not two.
    await web.post("/portal/sign-out", data={"_csrf_token": await form_token(web)})
    before = len(smtp.received)
    await ask_for_link(web, email_of(lead))
    assert len(smtp.received) == before + 1
    assert (await enter(web, last_link(smtp))).status_code == 303
