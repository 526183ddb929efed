"""CSV import in a real browser: an admin uploads a file with some bad rows, checks it,
follows the job's progress page until it reports, and the same file again would create
nothing."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.browser.flows import expect, first_admin_sign_in
from tests.browser.live_server import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROWS = 1_500
BAD = {100, 700, 1_200}  # row numbers without a last name


def people_csv() -> bytes:
    lines = ["First name,Last name,E-mail"]
    for n in range(ROWS):
        last = "" if n in BAD else f"Importer{n}"
        lines.append(f"Person{n},{last},person{n}@import.example.org")
    return ("\n".join(lines) + "\n").encode()


def upload(page: Page, content: bytes) -> None:
    """Upload, accept the suggested columns, check the dry run, import."""
    page.goto("/import")
    page.get_by_label("The file holds").select_option("contact")
    page.get_by_label("CSV file").set_input_files(
        {"name": "people.csv", "mimeType": "text/csv", "buffer": content}
    )
    page.get_by_role("button", name="Upload and match columns").click()
    expect(page.get_by_label("Last name", exact=True)).to_have_value("last_name")
    page.get_by_role("button", name="Check the file (dry run)").click()
    expect(page.get_by_role("heading", name="Dry run report")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name=f"Import {ROWS - len(BAD)} contacts").click()
    # The job page: a progress bar while it runs (it refreshes itself), then the report.
    expect(page).to_have_url(re.compile(r"/import/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("progress#import-progress")).to_be_attached()
    expect(page.get_by_role("heading", name="Import report")).to_be_visible(timeout=60_000)


def test_an_admin_imports_a_file_with_bad_rows_twice(page: Page, consentry: LiveServer) -> None:
    admin = consentry.create_staff("admin")
    first_admin_sign_in(page, admin)
    content = people_csv()

    upload(page, content)
    summary = page.locator("#import-summary")
    expect(summary).to_have_text(f"{ROWS} rows: {ROWS - 3} created, 0 skipped, 3 bad.")
    expect(page.locator("#import-status")).to_contain_text(f"{ROWS} of {ROWS} rows")
    # Bad rows by file line (the header is line 1), field and reason; no values.
    for row in sorted(BAD):
        expect(page.get_by_role("row", name=f"{row + 2} last_name is required")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("@import.example.org")

    # The same file again: the dry run already says every good row is on file.
    page.goto("/import")
    page.get_by_label("The file holds").select_option("contact")
    page.get_by_label("CSV file").set_input_files(
        {"name": "people.csv", "mimeType": "text/csv", "buffer": content}
    )
    page.get_by_role("button", name="Upload and match columns").click()
    page.get_by_role("button", name="Check the file (dry run)").click()
    expect(summary).to_have_text(
        f"Nothing was written. {ROWS} rows: 0 would be created, {ROWS - 3} skipped, 3 bad."
    )
    expect(page.get_by_text("No row would be created.")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Import cancelled; the uploaded file was deleted.")).to_be_visible()
    expect(page.get_by_role("heading", name="Recent imports")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="created")).to_have_count(1)
