"""The report builder in a real browser: a sales rep builds a report of their deals by
stage, sees the small group suppressed in the table (and the chart drawn under the strict
CSP), downloads the aggregates as CSV, and saves the report, which then opens from the
saved list."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.flows import expect, sign_in_fully
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page


def test_rep_builds_saves_and_exports_a_report(page: Page, consentry: LiveServer) -> None:
    rep = consentry.create_staff("sales")
    blocked: list[str] = []

    def watch(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or message.type == "error":
            blocked.append(message.text)

    page.on("console", watch)
    sign_in_fully(page, rep)
    # One customer per deal: suppression counts people, not records.
    for stage, times in (("proposal", 6), ("won", 2)):
        for n in range(times):
            person = page.request.post(
                "/api/v1/contacts", data={"first_name": "Ada", "last_name": f"Byron {n}"}
            )
            assert person.status == 201, person.text()
            deal = page.request.post(
                "/api/v1/deals",
                data={
                    "title": "Loom",
                    "amount": 1000,
                    "currency": "GBP",
                    "stage": stage,
                    "contact_id": person.json()["id"],
                },
            )
            assert deal.status == 201, deal.text()

    page.goto("/reports")
    page.get_by_role("button", name="Build your own report").click()
    expect(page.get_by_role("heading", name="Report builder", level=1)).to_be_visible()
    page.get_by_label("Group by").select_option("stage")
    page.get_by_role("button", name="Run report").click()
    table = page.locator("table[data-report=builder]")
    expect(table).to_be_attached()
    drawn = page.evaluate(
        "() => !!(window.Chart"
        " && window.Chart.getChart(document.querySelector('canvas[data-chart]')))"
    )
    assert drawn
    page.get_by_text("The numbers", exact=True).click()
    rows = table.locator("tbody tr")
    expect(rows.filter(has_text="Won")).to_contain_text("Suppressed")  # 2 deals
    expect(rows.filter(has_text="Proposal")).to_contain_text("Suppressed")  # its complement
    expect(table.locator("tfoot tr")).to_contain_text("8")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download the aggregates as CSV").click()
    text = download.value.path().read_text()
    assert "won,suppressed,suppressed" in text
    assert "Total,8,8" in text

    page.get_by_label("Report name").fill("Deals by stage")
    page.get_by_label("Share with").select_option("team")
    page.get_by_role("button", name="Save report").click()
    expect(page.get_by_text("Report saved.")).to_be_visible()
    saved = page.locator("table[data-report=saved]")
    expect(saved).to_contain_text("Deals by stage")
    expect(saved).to_contain_text("My team")
    saved.get_by_role("link", name="Deals by stage").click()
    expect(page.locator("table[data-report=builder] tfoot tr")).to_contain_text("8")
    assert not blocked, blocked
