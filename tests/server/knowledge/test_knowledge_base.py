"""The knowledge base: staff write and find articles; customers read the public, published
ones in the portal after the one-time-link sign-in; no article may hold an e-mail
address or phone number (issue 21, items 4 and 5)."""

from __future__ import annotations

import json
import re

from httpx import AsyncClient

from server.services import Services
from server.settings import Settings
from tests.admin_ui.test_admin_ui import csrf_of, location, submit, text_of, web_login
from tests.conftest import Staff
from tests.dbutil import raw_sql
from tests.server.portal.test_portal import (  # noqa: F401
    person,
    portal_app,
    portal_services,
    signed_in,
    smtp,
    web,
)
from tests.server.test_mail import LocalSmtp

ARTICLE = {
    "title": "How to reset your password",
    "body": "Open **Settings**, then *Security*.\n\n<script>alert(1)</script>\n\n"
    "[Evil](javascript:alert(1)) and [help](https://example.org/help)",
    "visibility": "public",
    "published": "yes",
}


async def _write(client: AsyncClient, **values: str) -> str:
    """Create an article through the admin form; returns its id."""
    response = await submit(client, "/knowledge/new", "/knowledge/new", {**ARTICLE, **values})
    target = location(response)
    assert re.fullmatch(r"/knowledge/[0-9a-f-]{36}", target), target
    return target.rsplit("/", 1)[1]


async def test_a_save_with_an_email_address_or_phone_number_is_refused(
    services: Services, settings: Settings, staff: Staff
) -> None:
    writer = await web_login(staff, await staff.create("support"))
    for body, kind in (
        ("Write to jane.doe@example.com for help.", "e-mail address"),
        ("Call +44 20 7946 0958 any time.", "phone number"),
        ("Or ring 020 7946 0958 (our London desk).", "phone number"),
    ):
        refused = await submit(
            writer, "/knowledge/new", "/knowledge/new", {**ARTICLE, "body": body}
        )
        assert refused.status_code == 400
        message = text_of(refused)
        assert "must not hold personal data" in message
        assert f"body holds an {kind}" in message or f"body holds a {kind}" in message
    title = await submit(
        writer, "/knowledge/new", "/knowledge/new", {**ARTICLE, "title": "Ask bob@example.org"}
    )
    assert title.status_code == 400
    assert "title holds an e-mail address" in text_of(title)
    assert await raw_sql(settings.database_url, "SELECT id FROM kb_article") == []
    # Editing an article into holding one is refused the same way, and changes nothing.
    article = await _write(writer)
    edit = await submit(
        writer,
        f"/knowledge/{article}/edit",
        f"/knowledge/{article}/edit",
        {**ARTICLE, "body": "Mail help@example.net"},
    )
    assert edit.status_code == 400
    rows = await raw_sql(settings.database_url, "SELECT body FROM kb_article")
    assert rows == [{"body": ARTICLE["body"]}]


async def test_staff_search_by_words_and_category_and_read_only_roles_cannot_write(
    services: Services, settings: Settings, staff: Staff
) -> None:
    writer = await web_login(staff, await staff.create("support"))
    page = await writer.get("/knowledge")
    added = await writer.post(
        "/knowledge/categories", data={"name": "Billing", "_csrf_token": csrf_of(page)}
    )
    assert location(added) == "/knowledge"
    billing = re.search(
        r'<option value="([0-9a-f-]{36})">Billing</option>', (await writer.get("/knowledge")).text
    )
    assert billing
    await _write(
        writer,
        title="Paying an invoice",
        body="Invoices are paid by bank transfer.",
        category_id=billing.group(1),
    )
    await _write(
        writer,
        title="Changing your plan",
        body="Plans change at the next invoice.",
        visibility="internal",
    )
    await _write(writer, title="Opening hours", body="We answer on weekdays.")

    found = await writer.get("/knowledge", params={"q": "INVOICE"})
    assert "2 articles" in text_of(found)
    assert "Paying an invoice" in found.text
    assert "Changing your plan" in found.text
    assert "Opening hours" not in found.text
    both = await writer.get("/knowledge", params={"q": "invoice bank"})
    assert "1 article " in text_of(both)
    assert "Paying an invoice" in both.text
    in_billing = await writer.get("/knowledge", params={"category": billing.group(1)})
    assert "1 article" in text_of(in_billing)
    assert "Paying an invoice" in in_billing.text
    # A category with articles cannot be removed.
    removed = await writer.post(
        f"/knowledge/categories/{billing.group(1)}/delete", data={"_csrf_token": csrf_of(found)}
    )
    assert location(removed) == "/knowledge"
    assert "still has articles" in text_of(await writer.get("/knowledge"))

    reader = await web_login(staff, await staff.create("sales"))
    listed = await reader.get("/knowledge")
    assert listed.status_code == 200
    assert "Changing your plan" in listed.text
    assert "New article" not in listed.text
    assert (await reader.get("/knowledge/new")).status_code == 403
    refused = await reader.post("/knowledge/new", data={**ARTICLE, "_csrf_token": csrf_of(listed)})
    assert refused.status_code == 403
    outsider = await web_login(staff, await staff.create("compliance"))
    assert (await outsider.get("/knowledge")).status_code == 403
    # Changes are audited with ids and field names, never the text.
    audit = await raw_sql(
        settings.database_url, "SELECT * FROM audit WHERE resource_type = 'knowledge_article'"
    )
    assert {row["action"] for row in audit} >= {
        "kb.create",
        "kb.category_create",
    }
    dump = json.dumps(audit, default=str)
    assert "invoice" not in dump.lower()
    assert "Billing" not in dump


async def test_customers_read_public_published_articles_after_signing_in(
    staff: Staff,
    portal_services: Services,  # noqa: F811
    web: AsyncClient,  # noqa: F811
    smtp: LocalSmtp,  # noqa: F811
    person: object,  # noqa: F811
) -> None:
    writer_identity = await staff.create("support")
    writer = await web_login(staff, writer_identity)
    public = await _write(writer)
    internal = await _write(writer, title="Escalation rota", visibility="internal")
    draft = await _write(writer, title="Upcoming price change", published="")

    assert (await web.get("/portal/help")).headers["location"] == "/portal"
    assert (await web.get(f"/portal/help/{public}")).status_code == 303
    await signed_in(web, smtp, person)  # type: ignore[arg-type]
    listing = await web.get("/portal/help")
    assert listing.status_code == 200
    assert "How to reset your password" in listing.text
    assert "Escalation rota" not in listing.text
    assert "Upcoming price change" not in listing.text
    assert "No article matches" in text_of(await web.get("/portal/help", params={"q": "rota"}))
    article = await web.get(f"/portal/help/{public}")
    assert "<strong>Settings</strong>" in article.text
    assert "<script>alert(1)</script>" not in article.text  # raw HTML is shown as text
    assert "&lt;script&gt;" in article.text
    assert 'href="javascript:' not in article.text
    assert 'href="https://example.org/help"' in article.text
    for hidden in (internal, draft, "not-an-id"):
        missing = await web.get(f"/portal/help/{hidden}")
        assert missing.status_code == 404
        assert "does not exist or is no longer published" in text_of(missing)
    assert 'href="/portal/help"' in (await web.get("/portal/home")).text
