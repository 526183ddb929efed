"""The gateway enforces consent: under a purpose that rests on each person's own consent
(or that they may object to), only people with a valid basis are reached - in lists,
counts, searches and audiences (compiled into the SQL), and a single record without a
basis is refused with a clear, audited error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from httpx import AsyncClient

from server.gateway import Actor, Forbidden, Record
from server.services import Services, build_services
from server.settings import Settings
from tests.conftest import Staff, contact_values
from tests.dbutil import audit_rows, last_seq


def _values(**overrides: Any) -> dict[str, Any]:
    return {k: v for k, v in contact_values(**overrides).items() if k != "birth_date"}


async def _people(services: Services, staff: Staff, n: int = 3) -> tuple[Actor, list[Record]]:
    seller = staff.actor(await staff.create("sales"))
    people = [
        await services.gateway.create(seller, "contact", _values(email=f"p{i}@example.net"))
        for i in range(n)
    ]
    return seller, people


async def _notice(services: Services) -> int:
    notice = await services.consent.publish_notice(
        "Privacy notice", "We send offers only to people who ask for them.", by="system:test"
    )
    return notice.version


async def _grant(services: Services, record: Record, purpose: str, version: int) -> None:
    channel = {"marketing_email": "email", "marketing_phone": "phone"}.get(purpose)
    await services.consent.grant(
        record.subject_id,
        purpose,
        channel,
        source="web_form",
        notice_version=version,
        actor_id="subject",
        evidence={"form_id": "newsletter"},
    )


async def test_the_audience_is_exactly_the_people_who_consented_and_withdrawal_counts_at_once(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway, consent = services.gateway, services.consent
    _, (ada, bob, cy) = await _people(services, staff)
    version = await _notice(services)
    await _grant(services, ada, "marketing_email", version)
    await _grant(services, cy, "marketing_email", version)
    marketer = staff.actor(await staff.create("marketing"))

    assert await gateway.count(marketer, "contact", purpose="marketing_email") == 2
    page = await gateway.list(marketer, "contact", purpose="marketing_email")
    assert {r.id for r in page.items} == {ada.id, cy.id}
    assert page.total == 2
    assert all("phone" not in r.values for r in page.items)  # e-mail campaigns: no phone

    # Cy clicks the one-click withdrawal link in an e-mail: out of the very next audience.
    link = consent.withdrawal_link(cy.subject_id, "marketing_email", "email")
    await consent.withdraw_by_link(link.rsplit("/", 1)[1])
    page = await gateway.list(marketer, "contact", purpose="marketing_email")
    assert [r.id for r in page.items] == [ada.id]
    assert await gateway.count(marketer, "contact", purpose="marketing_email") == 1
    # Nobody consented to phone marketing.
    assert await gateway.count(marketer, "contact", purpose="marketing_phone") == 0
    # Planning (legitimate interests, no contact) still sees everyone who has not objected.
    assert await gateway.count(marketer, "contact", purpose="marketing") == 3
    del bob


async def test_a_person_without_a_basis_is_refused_clearly_and_the_refusal_is_audited(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    _, (ada, bob, _) = await _people(services, staff)
    await _grant(services, ada, "marketing_email", await _notice(services))
    marketer = staff.actor(await staff.create("marketing"))

    assert (await gateway.read(marketer, "contact", ada.id, purpose="marketing_email")).id == ada.id
    before = await last_seq(database_url)
    with pytest.raises(Forbidden, match=r"no legal basis .* marketing_email \(no consent\)"):
        await gateway.read(marketer, "contact", bob.id, purpose="marketing_email")
    [denial] = await audit_rows(database_url, before)
    assert (denial["action"], denial["outcome"], denial["reason"]) == (
        "read",
        "denied",
        "no_legal_basis",
    )
    assert denial["purpose"] == "marketing_email"
    assert json.loads(denial["subject_ids"]) == [bob.subject_id]
    assert json.loads(denial["detail"]) == {"basis": "no_consent"}

    # Exact search under the purpose finds only people with a basis.
    admin = staff.actor(await staff.create("admin"))
    email = bob.values["email"]
    assert [r.id for r in await gateway.search(admin, "contact", "email", email)] == [bob.id]
    assert await gateway.search(admin, "contact", "email", email, purpose="marketing_email") == []

    # Nobody new has consented to anything: records are not created for a consent purpose.
    with pytest.raises(Forbidden, match="a new person has given no basis"):
        await gateway.create(admin, "contact", _values(), purpose="marketing_email")


async def test_an_objection_to_direct_marketing_beats_an_older_grant_everywhere(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway, consent = services.gateway, services.consent
    seller, (ada, bob, _) = await _people(services, staff)
    version = await _notice(services)
    for purpose in ("marketing_email", "marketing_phone", "profiling"):
        await _grant(services, ada, purpose, version)
        await _grant(services, bob, purpose, version)
    await consent.object(ada.subject_id, source="phone", actor_id=seller.id)
    marketer = staff.actor(await staff.create("marketing"))

    for purpose in ("marketing_email", "marketing_phone", "profiling"):
        page = await gateway.list(marketer, "contact", purpose=purpose)
        assert [r.id for r in page.items] == [bob.id], purpose
        with pytest.raises(Forbidden, match="objected"):
            await gateway.read(marketer, "contact", ada.id, purpose=purpose)
    planning = await gateway.list(marketer, "contact", purpose="marketing")
    assert ada.id not in {r.id for r in planning.items}  # not even for planning
    # The relationship itself goes on: the objection is to marketing, not to being a customer.
    assert (await gateway.read(seller, "contact", ada.id)).id == ada.id


async def test_the_api_lists_a_campaign_audience_by_purpose(
    services: Services, staff: Staff
) -> None:
    _, (ada, _, _) = await _people(services, staff)
    await _grant(services, ada, "marketing_email", await _notice(services))
    client: AsyncClient = await staff.login(await staff.create("marketing"))
    response = await client.get(
        "/api/v1/contacts", headers={"x-consentry-purpose": "marketing_email"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 1
    assert [item["id"] for item in body["items"]] == [ada.id]


async def test_a_withdrawal_link_survives_rotating_the_session_secret(
    services: Services, staff: Staff, settings: Settings
) -> None:
    """Links in old e-mails must keep working: their key comes from the master key's
    never-rotated index root, not from the session secret."""
    _, (ada, _, _) = await _people(services, staff)
    await _grant(services, ada, "marketing_email", await _notice(services))
    link = services.consent.withdrawal_link(ada.subject_id, "marketing_email", "email")
    rotated = build_services(settings.with_overrides(session_secret="a-brand-new-secret"))
    assert await rotated.consent.withdraw_by_link(link.rsplit("/", 1)[1]) is not None
    verdict = await rotated.consent.has_basis(ada.subject_id, "marketing_email")
    assert not verdict.ok
