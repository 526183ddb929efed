"""When the last basis lapses (issue 23, item 4): a person whose only consent is withdrawn
or expires, with nothing else keeping them, goes on the compliance queue for erasure
review, and the retention run erases them after the grace period (fixed clock)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from server.consent.service import LAST_CONSENT_EXPIRED, LAST_CONSENT_WITHDRAWN
from server.dsr.requests import LAPSED_CHANNEL, DataRequest
from server.gateway import Actor, Record
from server.mail import MailStatus
from server.portal.service import PortalIdentity
from server.services import Services
from tests.admin_ui.test_admin_ui import text_of, web_login
from tests.conftest import Staff, contact_values
from tests.server.crm.test_crm_records import case_values

SEED = Actor.system("test-seed")
NOTICE = "We e-mail our newsletter to those who ask for it. Withdraw any time."
GRACE = dt.timedelta(days=30)  # the default CONSENTRY_BASIS_LAPSE_GRACE_DAYS


async def prospect(services: Services, **values: Any) -> Record:
    """A contact who is not (yet) a customer: consent is all that keeps them."""
    return await services.gateway.create(
        SEED, "contact", contact_values(lifecycle_stage="prospect", **values)
    )


async def grant(
    services: Services, subject: str, purpose: str = "marketing_email", **kw: Any
) -> None:
    notice = await services.consent.current_notice()
    if notice is None:
        notice = await services.consent.publish_notice("Newsletter", NOTICE, by="user:1")
    await services.consent.grant(
        subject, purpose, source="web_form", notice_version=notice.version, actor_id="subject", **kw
    )


async def withdraw(services: Services, subject: str, purpose: str = "marketing_email") -> None:
    done = await services.consent.withdraw(
        subject, purpose, source="email_link", actor_id="subject"
    )
    assert done is not None


async def reviews(services: Services) -> list[DataRequest]:
    return [r for r in await services.requests.queue(open_only=True) if r.channel == LAPSED_CHANNEL]


async def test_withdrawing_the_only_consent_queues_review_and_retention_erases_after_grace(
    services: Services, staff: Staff
) -> None:
    person = await prospect(services)
    await grant(services, person.subject_id)
    assert await reviews(services) == []

    await withdraw(services, person.subject_id)

    (review,) = await reviews(services)
    assert (review.kind, review.subject_id, review.opened_because) == (
        "erasure",
        person.subject_id,
        LAST_CONSENT_WITHDRAWN,
    )
    assert review.contact_id == person.id
    # The compliance queue shows it with the reason, and its page says what will happen.
    officer = await staff.create("compliance")
    client = await web_login(staff, officer)
    queue = text_of(await client.get("/compliance/requests"))
    assert "No legal basis left" in queue
    assert "Their last consent was withdrawn" in queue
    detail = text_of(await client.get(f"/compliance/requests/{review.id}"))
    assert "grace period" in detail

    # The person asked nothing: their portal page does not list it, and a step staff take
    # writes them no e-mail. The run carries on from where compliance left it.
    assert await services.portal.requests_of(PortalIdentity(person.subject_id, person.id)) == []
    reviewed = await services.requests.transition(review.id, "in_review", by="user:1")
    assert (reviewed.mail.status, reviewed.mail.error) == (MailStatus.SKIPPED, "system_opened")

    # Withdrawing again, or another lapse, does not queue a second review.
    await services.consent.withdraw(
        person.subject_id, "marketing_email", source="email_link", actor_id="subject"
    )
    assert len(await reviews(services)) == 1

    # A day before the grace period ends the retention run leaves them alone ...
    early = await services.retention.run(now=review.received_at + GRACE - dt.timedelta(days=1))
    assert {r.rule: r.matched for r in early.rules}["basis_lapsed"] == 0
    assert not (
        await services.gateway.read(SEED, "contact", person.id, purpose="compliance")
    ).erased

    # ... and after it, erases them through the ordinary erasure (key shredded).
    late = await services.retention.run(now=review.received_at + GRACE + dt.timedelta(days=1))
    line = {r.rule: r for r in late.rules}["basis_lapsed"]
    assert (line.matched, line.erased) == (1, 1)
    record = await services.gateway.read(SEED, "contact", person.id, purpose="compliance")
    assert record.erased
    assert await services.gateway.vault.keys_for([person.subject_id]) == {}
    done = await services.requests.get(review.id)
    assert done.state == "fulfilled"
    assert [h.actor_id for h in done.history][-1] == "system:retention"


async def test_something_else_keeps_the_person(services: Services) -> None:
    # Another consent still in force.
    two = await prospect(services)
    await grant(services, two.subject_id, "marketing_email")
    await grant(services, two.subject_id, "marketing_phone", channel="phone")
    await withdraw(services, two.subject_id, "marketing_email")
    # A customer (contract).
    customer = await services.gateway.create(SEED, "contact", contact_values())
    await grant(services, customer.subject_id)
    await withdraw(services, customer.subject_id)
    # An open case.
    with_case = await prospect(services)
    await services.gateway.create(SEED, "case", case_values(with_case.id))
    await grant(services, with_case.subject_id)
    await withdraw(services, with_case.subject_id)
    # A legal hold.
    held = await prospect(services)
    await services.erasure.holds.add(
        held.subject_id, "all", "tax_records", dt.date(2030, 1, 1), by="user:1"
    )
    await grant(services, held.subject_id)
    await withdraw(services, held.subject_id)

    assert await reviews(services) == []


async def test_an_expired_last_consent_is_queued_and_a_basis_regained_cancels_the_erasure(
    services: Services,
) -> None:
    person = await prospect(services)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    await grant(services, person.subject_id, expires_at=soon)
    assert await services.consent.expire_due(now=soon + dt.timedelta(seconds=1)) == 1

    (review,) = await reviews(services)
    assert review.opened_because == LAST_CONSENT_EXPIRED

    await grant(services, person.subject_id)  # they signed up again during the grace period
    report = await services.retention.run(now=review.received_at + GRACE + dt.timedelta(days=1))
    line = {r.rule: r for r in report.rules}["basis_lapsed"]
    assert (line.matched, line.erased) == (1, 0)
    kept = await services.gateway.read(SEED, "contact", person.id, purpose="compliance")
    assert not kept.erased
    answered = await services.requests.get(review.id)
    assert (answered.state, answered.rejection_reason) == ("rejected", "basis_restored")


async def test_the_retention_run_queues_a_lapse_its_listener_missed(services: Services) -> None:
    person = await prospect(services)
    await grant(services, person.subject_id)
    listeners = list(services.consent.lapse_listeners)
    services.consent.lapse_listeners.clear()  # as if the review had failed at the time
    await withdraw(services, person.subject_id)
    services.consent.lapse_listeners.extend(listeners)
    assert await reviews(services) == []

    await services.retention.run()
    (review,) = await reviews(services)
    assert (review.subject_id, review.opened_because) == (person.subject_id, LAST_CONSENT_WITHDRAWN)

    # Compliance decides to keep them: the next run does not open it again.
    for state in ("in_review", "rejected"):
        await services.requests.transition(
            review.id, state, by="user:1", reason="legal_obligation" if state == "rejected" else ""
        )
    await services.retention.run(now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert await reviews(services) == []
