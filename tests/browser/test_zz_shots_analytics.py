"""Throwaway: screenshots for review (not committed)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from tests.browser.flows import first_admin_sign_in, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

OUT = "/tmp/shots-analytics"


def shoot(page: Page, name: str) -> None:
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.reload()
        page.screenshot(path=f"{OUT}/{name}-{width}.png", full_page=True)


def test_shots(page: Page, consentry: LiveServer) -> None:
    today = dt.datetime.now(dt.UTC).date()
    reps = [consentry.create_staff("sales", team="north"), consentry.create_staff("sales", team="north")]
    for k, rep in enumerate(reps):
        sign_in_fully(page, rep)
        for i in range(7):
            person = page.request.post(
                "/api/v1/contacts", data={"first_name": f"Cust{k}{i}", "last_name": "Zed"}
            )
            cid = person.json()["id"]
            stage = ("proposal", "negotiation", "qualification", "won", "won", "lost", "proposal")[i]
            data = {
                "title": f"Deal {i}",
                "amount": 100_000 * (i + 1),
                "currency": "EUR",
                "stage": stage,
                "expected_close": today.isoformat(),
                "contact_id": cid,
            }
            if stage == "lost":
                data["lost_reason"] = "price"
            if i == 6:
                data["forecast_category"] = "commit"
            assert page.request.post("/api/v1/deals", data=data).status == 201
        page.context.clear_cookies()
    sign_in_fully(page, reps[0])
    page.goto("/")
    shoot(page, "dashboard-rep")
    page.goto("/forecast")
    shoot(page, "forecast-rep")
    page.context.clear_cookies()
    admin = consentry.create_staff("admin", team="north")
    first_admin_sign_in(page, admin)
    page.goto("/")
    shoot(page, "dashboard-admin")
    page.goto("/forecast")
    shoot(page, "forecast-admin")
    page.goto("/campaigns/funnel")
    shoot(page, "funnel-admin")
    page.context.clear_cookies()
    agent = consentry.create_staff("support", team="north")
    sign_in_fully(page, agent)
    for i in range(8):
        person = page.request.post(
            "/api/v1/contacts", data={"first_name": f"Sup{i}", "last_name": "Zed"}
        )
        page.request.post(
            "/api/v1/cases",
            data={"title": "Broken", "kind": "product_return", "priority": "high", "status": "open" if i < 6 else "pending", "contact_id": person.json()["id"]},
        )
    page.goto("/")
    shoot(page, "dashboard-support")
