"""Restriction of processing (Art. 18): the person's records are kept, and used for nothing
but compliance, until the restriction is lifted."""

from __future__ import annotations

import pytest

from server.dsr.restriction import RestrictionError
from server.gateway import Actor, Forbidden
from server.services import Services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import sales_contact
from tests.conftest import Staff
from tests.dbutil import raw_sql

ADMIN = Actor.system("test-admin")


async def test_a_restricted_person_is_left_out_and_refused_until_lifted(
    services: Services, settings: Settings, staff: Staff
) -> None:
    gw = services.gateway
    rep = await staff.create("sales")
    actor = staff.actor(rep)
    kept = await gw.create(actor, "contact", sales_contact(email="kept@example.org"))
    person = await gw.create(actor, "contact", sales_contact(email="quiet@example.org"))
    restrictions = services.erasure.restrictions

    await restrictions.restrict(person.subject_id, "accuracy_contested", by="user:1")
    again = await restrictions.restrict(person.subject_id, "accuracy_contested", by="user:1")
    assert len(await restrictions.active(person.subject_id)) == 1  # restricting twice: one
    assert again.reason == "accuracy_contested"

    page = await gw.list(actor, "contact")
    assert [r.id for r in page.items] == [kept.id]
    assert page.total == 1
    assert await gw.count(actor, "contact") == 1
    assert await gw.search(actor, "contact", "email", "quiet@example.org") == []
    with pytest.raises(Forbidden, match="restricted"):
        await gw.read(actor, "contact", person.id)
    with pytest.raises(Forbidden, match="restricted"):
        await gw.update(actor, "contact", person.id, {"job_title": "CEO"})
    with pytest.raises(Forbidden, match="restricted"):
        await gw.delete(actor, "contact", person.id)
    denials = await raw_sql(
        settings.database_url,
        "SELECT action FROM audit WHERE outcome = 'denied' AND reason = 'restricted' ORDER BY seq",
    )
    assert [d["action"] for d in denials] == ["read", "update", "delete"]
    # Storage and legal obligations go on: compliance still reads and finds them.
    stored = await gw.read(ADMIN, "contact", person.id, purpose="compliance")
    assert stored.values["email"] == "quiet@example.org"
    assert await gw.count(ADMIN, "contact", purpose="compliance") == 2

    assert await restrictions.lift(person.subject_id, by="user:1") == 1
    assert await restrictions.lift(person.subject_id, by="user:1") == 0
    assert (await gw.list(actor, "contact")).total == 2
    assert (await gw.read(actor, "contact", person.id)).values["email"] == "quiet@example.org"
    actions = await raw_sql(
        settings.database_url,
        "SELECT action FROM audit WHERE action LIKE 'dsr.%restrict' ORDER BY seq",
    )
    assert [a["action"] for a in actions] == ["dsr.restrict", "dsr.unrestrict"]


async def test_fulfilling_a_restriction_request_restricts(services: Services, staff: Staff) -> None:
    rep = await staff.create("sales")
    person = await services.gateway.create(staff.actor(rep), "contact", sales_contact())
    dsr = services.requests
    logged = await dsr.log(
        person.subject_id, "restriction", "letter", verification="id_document", by="user:1"
    )
    for state in ("in_review", "approved", "fulfilled"):
        await dsr.transition(logged.request.id, state, by="user:1")
    active = await services.erasure.restrictions.active(person.subject_id)
    assert [(r.reason, r.request_id) for r in active] == [
        ("data_subject_request", logged.request.id)
    ]


async def test_bad_restriction_input_is_refused(services: Services) -> None:
    restrictions = services.erasure.restrictions
    with pytest.raises(RestrictionError, match="not a valid id"):
        await restrictions.restrict("nope", "legal_claims", by="user:1")
    with pytest.raises(RestrictionError, match="unknown reason"):
        await restrictions.restrict("5f0e6f3c-0000-4000-8000-000000000000", "because", by="user:1")
