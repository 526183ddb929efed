"""Customer scores on the 360 page, in a real browser: after `consentry analytics score`, a
customer who consented to profiling shows their segment, churn risk with the three factors
that drove it, value and the date, with how it was computed; one who did not consent shows
why there is nothing."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from tests.browser.flows import expect, sign_in_fully
from tests.browser.live_server import LiveServer, run_async

if TYPE_CHECKING:
    from playwright.sync_api import Page

PEOPLE = 42  # enough history for the churn model to train (server.analytics.model)


def seed(server: LiveServer, owner_id: int) -> list[str]:
    """Customers of ``owner_id`` with histories, all but the last consenting to profiling;
    their contact ids. Written in process through the gateway, on the server's database."""
    from server import db
    from server.gateway import Actor
    from server.services import build_services
    from server.settings import Settings, set_settings

    async def go() -> list[str]:
        settings = set_settings(Settings.from_env(server.env))
        engine = db.set_engine(db.engine_for_url(settings.resolved_database_url))
        await db.start(engine)
        try:
            services = build_services(settings)
            gw, actor = services.gateway, Actor.system("browser-test")
            now = dt.datetime.now(dt.UTC)
            made = await gw.create_many(
                actor,
                "contact",
                [{"first_name": f"Scored{i}", "last_name": "Customer"} for i in range(PEOPLE)],
                owner_id=owner_id,
                team="north",
            )
            rows: list[dict[str, Any]] = []
            for i, contact_id in enumerate(made.created):
                days = (420, 330, 300) if i % 4 == 0 else (400, 200, 40, 5)  # a quarter went quiet
                rows += [
                    {
                        "channel": "email",
                        "occurred_at": (now - dt.timedelta(days=d)).isoformat(),
                        "contact_id": contact_id,
                    }
                    for d in days
                ]
            await gw.create_many(actor, "interaction", rows, owner_id=owner_id, team="north")
            notice = await services.consent.publish_notice("Notice", "Profiling.", by="user:1")
            for contact_id in made.created[:-1]:
                person = await gw.read(actor, "contact", contact_id)
                await services.consent.grant(
                    person.subject_id,
                    "profiling",
                    source="web_form",
                    notice_version=notice.version,
                    actor_id="subject",
                )
            return list(made.created)
        finally:
            await db.stop(engine)

    return run_async(go)


def test_the_360_page_shows_scores_with_their_explanation(
    page: Page, consentry: LiveServer
) -> None:
    rep = consentry.create_staff("sales")  # the policy lets sales read their customers' scores
    contacts = seed(consentry, rep.user_id)
    assert f"scored {PEOPLE - 1} people" in consentry.cli("analytics", "score")
    sign_in_fully(page, rep)

    page.goto(f"/contacts/{contacts[1]}/360")
    scores = page.locator("[data-scores]")
    expect(scores.get_by_role("heading", name="Scores (profiling)")).to_be_visible()
    expect(scores.locator("[data-score=segment]")).not_to_be_empty()
    expect(scores.locator("[data-score=churn]")).to_contain_text("%")
    expect(scores.locator("[data-churn-factors] li")).to_have_count(3)
    expect(scores.locator("[data-churn-factors]")).to_contain_text("retained customers' median")
    expect(scores).to_contain_text("Computed")
    scores.get_by_text("How the scores are computed").click()
    expect(scores).to_contain_text("gradient-boosted decision-tree classifier")

    page.goto(f"/contacts/{contacts[-1]}/360")
    expect(page.locator("[data-no-scores]")).to_contain_text("has not consented to profiling")
