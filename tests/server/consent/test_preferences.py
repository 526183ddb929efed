"""The preference center: signed, expiring links in every consent e-mail, a page where a
person sees and changes every consent (as easy to withdraw as to give, Art. 7(3)), and
one-click unsubscribe headers (RFC 8058) on the double opt-in message."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from httpx import AsyncClient
from litestar import Litestar

from server.app import create_app
from server.consent.model import ConsentError, Source
from server.consent.service import ConsentEngine
from server.consent.tables import ConsentEvent, ConsentToken
from server.services import Services, build_services
from server.settings import Settings
from tests.conftest import http_client
from tests.dbutil import raw_sql
from tests.server.consent.test_consent import PERSON, grant, new_subject, publish, why
from tests.server.test_mail import LocalSmtp, local_smtp

PREFERENCES = re.compile(r"http://testserver(/preferences/\S+)")
DIRECT_MARKETING_PURPOSES = ("marketing_email", "marketing_phone", "third_party_sharing")
BROWSER = "Mozilla/5.0 (preference test)"
TEST_CLIENT_IP = "127.0.0.1"  # httpx's ASGI transport reports this peer address


@pytest.fixture
def smtp() -> Iterator[LocalSmtp]:
    with local_smtp() as server:
        yield server


@pytest.fixture
def consent_services(settings: Settings, smtp: LocalSmtp) -> Services:
    return build_services(smtp.settings(settings, public_url="http://testserver"))


@pytest.fixture
def consent_app(consent_services: Services) -> Litestar:
    return create_app(consent_services.settings, consent_services)


@pytest.fixture
async def web(consent_app: Litestar) -> AsyncIterator[AsyncClient]:
    async with http_client(consent_app) as client:
        client.headers["user-agent"] = BROWSER
        yield client


@pytest.fixture
def consent(consent_services: Services) -> ConsentEngine:
    return consent_services.consent


def path_of(link: str) -> str:
    return link.removeprefix("http://testserver")


async def choose(web: AsyncClient, page: str, action: str, **fields: str) -> tuple[int, str]:
    """Press one button of the preference center (a plain form POST, no CSRF token)."""
    response = await web.post(page, data={"action": action, **fields})
    return response.status_code, response.text


async def test_the_opt_in_mail_links_the_preference_center_and_offers_one_click_unsubscribe(
    consent_services: Services, consent: ConsentEngine, smtp: LocalSmtp, web: AsyncClient
) -> None:
    subject = await new_subject(consent_services, **PERSON)
    version = await publish(consent)
    await consent.request_double_opt_in(
        subject, PERSON["email"], "marketing_email", notice_version=version, source="web_form"
    )
    [mail] = smtp.received
    [page] = PREFERENCES.findall(mail.text)
    withdraw = consent.withdrawal_link(subject, "marketing_email", "email")
    # Unfolded, so a mail client reads the URL (no RFC 2047 encoded words).
    assert mail.message["List-Unsubscribe"] == f"<{withdraw}>"
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (await web.get(page)).status_code == 200

    # The mail client's unsubscribe button: a POST to the header's URL. It also cancels
    # the pending confirmation, so the confirm link in the same message is dead.
    answer = await web.post(
        path_of(withdraw),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    confirm = re.search(r"http://testserver(/consent/confirm/\S+)", mail.text)
    assert confirm is not None
    assert (await web.post(confirm[1])).status_code == 404
    assert await why(consent, subject, "marketing_email") == (False, "no_consent")


async def test_the_page_shows_purposes_and_states_but_no_personal_data(
    consent_services: Services, consent: ConsentEngine, web: AsyncClient
) -> None:
    subject = await new_subject(consent_services, **PERSON)
    await publish(consent)
    await grant(consent, subject, "marketing_email")
    page = path_of(consent.preference_link(subject))

    response = await web.get(page)
    assert response.status_code == 200
    html = response.text
    for purpose in await consent.purposes():
        assert purpose.description in html
    assert "You agreed" in html  # marketing e-mail
    assert "Not given" in html  # everything else
    assert "Withdraw consent" in html
    assert "Give consent" in html
    assert "Object to all direct marketing" in html
    assert "Newsletter notice" in html
    for value in PERSON.values():
        assert value not in html
        assert value.split("@")[0] not in html
    assert "set-cookie" not in response.headers
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["cache-control"] == "no-store"

    notice = await web.get(f"{page}/notice")
    assert notice.status_code == 200
    assert "We send our newsletter monthly." in notice.text


async def test_consent_given_on_the_page_is_evidence_with_the_current_notice(
    consent_services: Services, consent: ConsentEngine, web: AsyncClient, database_url: str
) -> None:
    subject = await new_subject(consent_services)
    await publish(consent)
    version = await publish(consent)  # the page offers the current version
    page = path_of(consent.preference_link(subject))

    status, html = await choose(
        web,
        page,
        "grant",
        purpose="marketing_email",
        channel="email",
        notice_version=str(version),
    )
    assert status == 200
    assert "Consent given: " in html
    assert await why(consent, subject, "marketing_email", "email") == (True, "consent_granted")
    proof = await consent.proof(subject, actor_id="user:1")
    [event] = proof["events"]
    assert event["source"] == "pref_center"
    assert event["actor"] == "subject"
    assert event["notice_version"] == version
    assert event["evidence"] == {
        "ip_hash": consent.ip_hash(TEST_CLIENT_IP),
        "user_agent": BROWSER,
    }
    [audited] = await raw_sql(
        database_url,
        "SELECT actor_id, actor_role, purpose FROM audit WHERE action = 'consent.grant'",
    )
    assert audited == {
        "actor_id": "subject",
        "actor_role": "data_subject",
        "purpose": "marketing_email",
    }

    # A page showing an older notice cannot record agreement to a newer one.
    await consent.publish_notice("Revised notice", "New text.", by="user:1")
    status, html = await choose(
        web, page, "grant", purpose="profiling", channel="any", notice_version=str(version)
    )
    assert status == 400
    assert "privacy notice has changed" in html
    assert "Revised notice" in html
    assert await why(consent, subject, "profiling") == (False, "no_consent")


async def test_withdrawing_takes_effect_at_once_one_click_or_all_at_once(
    consent_services: Services, consent: ConsentEngine, web: AsyncClient, database_url: str
) -> None:
    subject = await new_subject(consent_services)
    await publish(consent)
    for purpose in ("marketing_email", "profiling", "third_party_sharing"):
        await grant(consent, subject, purpose)
    await grant(consent, subject, "marketing_phone", channel="sms")
    page = path_of(consent.preference_link(subject))

    status, html = await choose(web, page, "withdraw", purpose="marketing_email", channel="email")
    assert status == 200
    assert "Consent withdrawn: " in html
    audience = await consent.subjects_with_basis("marketing_email")
    assert not await audience.admits(subject)
    assert (await consent.has_basis(subject, "profiling")).ok  # only what was clicked
    # A second click is harmless and says so.
    status, html = await choose(web, page, "withdraw", purpose="marketing_email", channel="email")
    assert status == 200
    assert "Nothing needed changing" in html

    status, html = await choose(web, page, "withdraw_all")
    assert status == 200
    assert html.count("Consent withdrawn: ") == 3
    for purpose in ("marketing_email", "profiling", "third_party_sharing", "marketing_phone"):
        assert not await (await consent.subjects_with_basis(purpose)).admits(subject)
        assert not (await consent.has_basis(subject, purpose)).ok
    ledger = await raw_sql(
        database_url, "SELECT kind, source, actor_id FROM consent_event WHERE kind = 'withdrawn'"
    )
    assert len(ledger) == 4
    assert {(r["source"], r["actor_id"]) for r in ledger} == {("pref_center", "subject")}
    audit = await raw_sql(
        database_url, "SELECT actor_id FROM audit WHERE action = 'consent.withdraw'"
    )
    assert [a["actor_id"] for a in audit] == ["subject"] * 4


async def test_an_objection_from_the_page_blocks_every_direct_marketing_purpose(
    consent_services: Services, consent: ConsentEngine, web: AsyncClient, database_url: str
) -> None:
    subject = await new_subject(consent_services)
    version = await publish(consent)
    for purpose in (*DIRECT_MARKETING_PURPOSES, "profiling"):
        await grant(
            consent, subject, purpose, channel="phone" if purpose == "marketing_phone" else None
        )
    page = path_of(consent.preference_link(subject))

    status, html = await choose(web, page, "object_direct_marketing")
    assert status == 200
    assert "Objection recorded: direct marketing" in html
    assert "Object to all direct marketing" not in html  # done; the page says how to lift it
    for purpose in (*DIRECT_MARKETING_PURPOSES, "profiling"):
        assert await why(consent, subject, purpose) == (False, "objected")
        assert not await (await consent.subjects_with_basis(purpose)).admits(subject)
    assert await why(consent, subject, "service_communication") == (True, "contract")
    # Giving consent again does not quietly undo the objection.
    status, html = await choose(
        web, page, "grant", purpose="marketing_email", channel="email", notice_version=str(version)
    )
    assert status == 400
    assert "objection covers this purpose" in html
    # Objecting twice records it once.
    assert (await choose(web, page, "object_direct_marketing"))[0] == 200
    objections = await raw_sql(
        database_url, "SELECT purpose, source, actor_id FROM consent_event WHERE kind = 'objected'"
    )
    assert objections == [
        {"purpose": "direct_marketing", "source": "pref_center", "actor_id": "subject"}
    ]
    [audited] = await raw_sql(
        database_url, "SELECT actor_id, purpose FROM audit WHERE action = 'consent.object'"
    )
    assert audited == {"actor_id": "subject", "purpose": "direct_marketing"}


async def test_bad_preference_links_all_get_the_same_404(
    consent_services: Services, consent: ConsentEngine, web: AsyncClient, database_url: str
) -> None:
    subject = await new_subject(consent_services, **PERSON)
    version = await publish(consent)
    good = consent.preference_link(subject).rsplit("/", 1)[1]
    expired = consent.preference_link(
        subject, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    ).rsplit("/", 1)[1]
    prefix, payload, mac = good.split(".")
    other = consent.preference_link(await new_subject(consent_services)).rsplit("/", 1)[1]
    withdrawal = consent.withdrawal_link(subject, "marketing_email", "email").rsplit("/", 1)[1]
    bad = [
        expired,
        f"{prefix}.{payload}.{mac[:-2]}AA",  # signature altered
        f"{prefix}.{other.split('.')[1]}.{mac}",  # another person's payload, our signature
        "p1." + payload + "." + "A" * 43,  # forged
        "w1." + withdrawal.split(".", 1)[1],  # a withdrawal link is not a preference link
        "nonsense",
    ]
    answers = {(await web.get("/consent/withdraw/nonsense")).text}
    for token in bad:
        for response in (
            await web.get(f"/preferences/{token}"),
            await web.get(f"/preferences/{token}/notice"),
            await web.post(
                f"/preferences/{token}",
                data={
                    "action": "grant",
                    "purpose": "marketing_email",
                    "channel": "email",
                    "notice_version": str(version),
                },
            ),
        ):
            assert response.status_code == 404, token
            answers.add(response.text)
    assert len(answers) == 1
    assert "invalid, has expired or has already been used" in answers.pop()
    assert await raw_sql(database_url, "SELECT id FROM consent_event") == []
    assert (await web.get(f"/preferences/{good}")).status_code == 200


async def test_a_choice_the_page_does_not_offer_is_refused_without_echoing_it(
    consent_services: Services, consent: ConsentEngine, web: AsyncClient
) -> None:
    subject = await new_subject(consent_services)
    await publish(consent)
    page = path_of(consent.preference_link(subject))
    secret = "philippa.quernmoor@example.net"
    for fields in (
        {"action": secret},
        {"action": "withdraw", "purpose": secret},
        {"action": "withdraw", "purpose": "marketing_email", "channel": secret},
        {"action": "object", "purpose": "marketing_email"},  # consent: withdraw instead
    ):
        response = await web.post(page, data=fields)
        assert response.status_code == 400, fields
        assert secret not in response.text
    assert await consent.state(subject) == []


def test_every_consent_source_fits_the_ledger_column() -> None:
    """PostgreSQL refuses a VARCHAR(16) value that is too long (SQLite would not notice)."""
    for source in Source:
        assert len(source.value) <= ConsentEvent.source.length, source
        assert len(source.value) <= ConsentToken.source.length, source


async def test_the_person_lifts_their_objection_and_the_ledger_records_it(
    consent_services: Services, consent: ConsentEngine, web: AsyncClient, database_url: str
) -> None:
    subject = await new_subject(consent_services)
    await publish(consent)
    await grant(consent, subject, "marketing_email")
    page = path_of(consent.preference_link(subject))
    await choose(web, page, "object_direct_marketing")
    assert await why(consent, subject, "marketing_email") == (False, "objected")

    status, html = await choose(web, page, "lift_objection", purpose="direct_marketing")
    assert status == 200
    assert "Objection lifted: direct marketing" in html
    assert "Object to all direct marketing" in html  # offered again
    # The consent given before the objection applies again.
    assert await why(consent, subject, "marketing_email") == (True, "consent_granted")
    assert await (await consent.subjects_with_basis("marketing_email")).admits(subject)
    # A second click records nothing more.
    assert (await choose(web, page, "lift_objection", purpose="direct_marketing"))[0] == 200
    ledger = await raw_sql(
        database_url,
        "SELECT kind, purpose, source, actor_id FROM consent_event ORDER BY id",
    )
    assert [row["kind"] for row in ledger] == ["granted", "objected", "lifted"]
    assert ledger[-1] == {
        "kind": "lifted",
        "purpose": "direct_marketing",
        "source": "pref_center",
        "actor_id": "subject",
    }
    [audited] = await raw_sql(
        database_url, "SELECT actor_id, purpose FROM audit WHERE action = 'consent.lift_objection'"
    )
    assert audited == {"actor_id": "subject", "purpose": "direct_marketing"}


async def test_staff_cannot_lift_an_objection_without_evidence(
    consent_services: Services, consent: ConsentEngine
) -> None:
    subject = await new_subject(consent_services)
    await consent.object(subject, source=Source.STAFF.value, actor_id="user:1")
    with pytest.raises(ConsentError) as refused:
        await consent.lift_objection(subject, source=Source.PHONE.value, actor_id="user:1")
    assert refused.value.code == "evidence_required"
    assert await why(consent, subject, "marketing_email") == (False, "objected")
    lifted = await consent.lift_objection(
        subject,
        source=Source.PHONE.value,
        actor_id="user:1",
        evidence={"note": "call of 3 March, asked to hear about offers again"},
    )
    assert lifted is not None
    assert lifted.evidence["note"].startswith("call of 3 March")
    assert (await why(consent, subject, "marketing_email"))[1] != "objected"
