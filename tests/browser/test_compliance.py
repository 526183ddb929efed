"""The compliance console in a real browser: a compliance officer signs in with an
authenticator code, opens the console, sees the activity chart drawn by Chart.js (under
the strict Content-Security-Policy, with the table of numbers still on the page), and
finds every access to a customer from the customer's e-mail address - without the
address ever landing in the URL or on the page."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from tests.browser.flows import expect, first_admin_sign_in, path_is, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from playwright.sync_api import ConsoleMessage, Page

CUSTOMER_NAME = ("Philippa", "Quarrington")


def test_officer_finds_who_accessed_a_customer_and_sees_the_activity_chart(
    page: Page, consentry: LiveServer, other_browser: Callable[..., Page]
) -> None:
    rep = consentry.create_staff("sales")
    officer = consentry.create_staff("compliance")
    email = f"philippa.{uuid.uuid4().hex[:8]}@example.org"

    # A sales rep creates a customer and opens the record.
    desk = other_browser()
    sign_in_fully(desk, rep)
    created = desk.request.post(
        "/api/v1/contacts",
        data={"first_name": CUSTOMER_NAME[0], "last_name": CUSTOMER_NAME[1], "email": email},
    )
    assert created.status == 201, created.text()
    desk.goto(f"/contacts/{created.json()['id']}")
    expect(desk.get_by_role("heading", name=" ".join(CUSTOMER_NAME), level=1)).to_be_visible()

    # The officer signs in: compliance users must set up an authenticator first.
    blocked: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or message.type == "error":
            blocked.append(message.text)

    page.on("console", watch)
    first_admin_sign_in(page, officer)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Compliance").click()
    expect(page.get_by_role("heading", name="Compliance console", level=1)).to_be_visible()
    expect(page.get_by_text("Verified: the audit log is intact.")).to_be_visible()

    # The chart is drawn by Chart.js from the JSON block, within the CSP ...
    canvas = page.locator("canvas[data-chart]")
    expect(canvas).to_be_visible()
    drawn = page.evaluate(
        "() => typeof window.Chart === 'function'"
        " && !!window.Chart.getChart(document.querySelector('canvas[data-chart]'))"
    )
    assert drawn, "Chart.js did not draw the activity chart"
    box = canvas.bounding_box()
    assert box is not None
    assert box["width"] > 100
    assert box["height"] > 100
    # ... and the numbers are still on the page as a table, one click away.
    table = page.get_by_role("table", name="Audit events per day (UTC)")
    expect(table).to_be_hidden()  # folded away once the chart is drawn
    page.get_by_text("The numbers, day by day").click()
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(30)
    assert not blocked, blocked

    # Who accessed the customer? Start from the e-mail address.
    page.get_by_role("navigation", name="Compliance console").get_by_role(
        "link", name="Who accessed a customer?"
    ).click()
    expect(page.get_by_text("What is a subject id?")).to_be_visible()
    page.get_by_label("E-mail address or phone number", exact=True).fill(email)
    page.get_by_role("button", name="Find the customer").click()
    expect(page).to_have_url(re.compile(r"/compliance/subjects\?subject=[0-9a-f-]{36}"))
    expect(page.get_by_role("heading", name=re.compile("^Accesses to customer"))).to_be_visible()
    assert email not in page.url
    html = page.content()
    for private in (email, *CUSTOMER_NAME):
        assert private not in html, private

    summary = page.get_by_role("table", name="Who accessed this customer's data, latest first")
    rep_row = summary.locator("tbody tr", has_text=rep.actor_id)
    expect(rep_row).to_contain_text("create, read")
    expect(rep_row).to_contain_text("customer relationship")
    expect(summary.locator("tbody tr", has_text=officer.actor_id)).to_contain_text("locate")

    # From the summary to everything the rep did.
    rep_row.get_by_role("link").first.click()
    expect(page).to_have_url(path_is(f"/compliance/staff/{rep.actor_id}"))
    expect(page.get_by_role("heading", name=re.compile("^Activity of"), level=1)).to_be_visible()
    expect(page.get_by_role("table", name="By action")).to_contain_text("create")
    assert not blocked, blocked
