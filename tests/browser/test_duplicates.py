"""Duplicates in a real browser: a sales rep finds a pair, reviews it side by side, keeps
one contact and takes the other's job title, merges, sees the moved interaction on the
survivor's customer 360 page, and undoes the merge."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.browser.flows import expect, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

SUMMARY = "Tuned the kettle drums at the Hall"


def test_review_merge_see_360_and_undo(page: Page, consentry: LiveServer) -> None:
    rep = consentry.create_staff("sales")
    sign_in_fully(page, rep)
    ids = []
    for first, extra in (("Philippa", {}), ("Phillipa", {"job_title": "Timpanist"})):
        person = page.request.post(
            "/api/v1/contacts",
            data={"first_name": first, "last_name": "Drummond", "phone": "020 7946 0999", **extra},
        )
        assert person.status == 201, person.text()
        ids.append(person.json()["id"])
    survivor, duplicate = ids
    met = page.request.post(
        "/api/v1/interactions",
        data={
            "channel": "meeting",
            "occurred_at": "2026-11-03T10:00:00+00:00",
            "summary": SUMMARY,
            "contact_id": duplicate,
        },
    )
    assert met.status == 201, met.text()

    page.goto("/contacts")
    page.get_by_role("link", name="Duplicates").click()
    expect(page.get_by_role("heading", name="Possible duplicates", level=1)).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Same phone"))).to_be_visible()
    page.get_by_role("link", name=re.compile("^Review")).click()

    expect(page.get_by_role("heading", level=1)).to_contain_text("Drummond")
    page.get_by_label("Keep Philippa Drummond").check()
    page.get_by_label("Timpanist").check()
    page.get_by_role("button", name="Merge contacts").click()

    expect(page.get_by_role("status")).to_contain_text("Contacts merged")
    expect(page.locator("#merge-state")).to_have_text("Pending")
    page.get_by_role("link", name="customer 360").click()
    expect(page).to_have_url(re.compile(f"/contacts/{survivor}/360"))
    expect(page.get_by_text(SUMMARY)).to_be_visible()
    expect(page.locator("body")).to_contain_text("Timpanist")

    page.go_back()
    page.get_by_role("button", name="Undo merge").click()
    expect(page.get_by_role("status")).to_contain_text("Merge undone")
    expect(page.locator("#merge-state")).to_have_text("Undone")
    page.goto(f"/contacts/{survivor}/360")
    expect(page.get_by_text(SUMMARY)).to_have_count(0)
    page.goto(f"/contacts/{duplicate}/360")
    expect(page.get_by_text(SUMMARY)).to_be_visible()
