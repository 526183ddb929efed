"""Releasing a staff-fulfilled access request in a real browser (issue 25): the officer
logs the request, approves it, and on the review page sees what the export withholds
about other people - counts and field names, never the other person's name - before
releasing it. With ``CONSENTRY_SCREENSHOTS=<dir>`` the request and review pages are also
photographed at 1280 and 390 pixels wide (for people to look at; never committed)."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from tests.browser.flows import expect, first_admin_sign_in, sign_in_fully
from tests.browser.live_server import LiveServer
from tests.browser.test_search import shoot

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import Page


def test_officer_reviews_what_an_export_withholds_then_releases_it(
    page: Page, consentry: LiveServer, other_browser: Callable[..., Page]
) -> None:
    rep = consentry.create_staff("sales")
    officer = consentry.create_staff("compliance")
    grace_email = f"grace.{uuid.uuid4().hex[:8]}@example.org"

    desk = other_browser()
    sign_in_fully(desk, rep)
    people = {}
    for first, last, email in (
        ("Grace", "Auditwoman", grace_email),
        ("Judith", "Hydeford", f"judith.{uuid.uuid4().hex[:8]}@example.net"),
    ):
        made = desk.request.post(
            "/api/v1/contacts", data={"first_name": first, "last_name": last, "email": email}
        )
        assert made.status == 201, made.text()
        people[first] = made.json()["id"]
    for owner, summary in (
        ("Grace", "Renewal talk with Judith Hydeford and her team."),
        ("Judith", "Judith met Grace Auditwoman at the fair."),
    ):
        made = desk.request.post(
            "/api/v1/interactions",
            data={
                "contact_id": people[owner],
                "channel": "meeting",
                "occurred_at": "2026-12-01T09:00:00+00:00",
                "summary": summary,
            },
        )
        assert made.status == 201, made.text()

    first_admin_sign_in(page, officer)
    page.goto("/compliance/requests")
    page.get_by_label("The person's e-mail address", exact=True).fill(grace_email)
    page.get_by_label("Request", exact=True).select_option("access")
    page.get_by_label("Received by", exact=True).select_option("phone")
    page.get_by_label("Identity verified by", exact=True).select_option("phone_callback")
    page.get_by_role("button", name="Log the request").click()
    expect(page.get_by_role("heading", name="Request: access to your data")).to_be_visible()
    for step in ("Start review", "Approve"):
        page.get_by_role("button", name=step).click()
    expect(page.get_by_role("button", name="Review and release…")).to_be_visible()
    expect(page.get_by_role("button", name="Mark fulfilled")).to_have_count(0)
    shoot(page, "request-approved")

    page.get_by_role("button", name="Review and release…").click()
    expect(page).to_have_url(re.compile(r"/compliance/requests/[0-9a-f-]+/release$"))
    expect(page.get_by_role("heading", name="Review the export before release")).to_be_visible()
    row = page.locator("table.withheld-review tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Interaction")
    expect(row).to_contain_text("Summary")
    expect(page.get_by_text("The export includes 1 excerpt")).to_be_visible()
    assert "Judith" not in page.content()
    assert "Hydeford" not in page.content()
    shoot(page, "release-review")

    page.get_by_role("button", name="Release the export").click()
    # Without a mail server the link cannot be e-mailed: the page says so and the request
    # stays approved; with one, it is fulfilled. Either way the officer is told.
    expect(page.locator(".flash").first).to_contain_text(re.compile("released", re.IGNORECASE))
    shoot(page, "after-release")
