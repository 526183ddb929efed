"""The admin's search: the header box on every page, its typeahead, the no-JavaScript
results page and the name-search pickers on record forms (admin_ui/pages/search.py)."""

from __future__ import annotations

import re
import uuid

from server.gateway import Actor
from server.services import Services
from tests.admin_ui.test_admin_ui import csrf_of, location, text_of, web_login
from tests.conftest import Staff

SYSTEM = Actor.system("test")


def _person(first: str, last: str) -> dict[str, str]:
    return {"first_name": first, "last_name": last, "email": f"{uuid.uuid4().hex[:10]}@example.org"}


async def test_header_box_results_page_and_typeahead(services: Services, staff: Staff) -> None:
    me = await staff.create("sales", "north")
    other = await staff.create("sales", "south")
    mine = await services.gateway.create(
        SYSTEM, "contact", _person("Sharon", "Todd"), owner_id=me.user_id, team="north"
    )
    theirs = await services.gateway.create(
        SYSTEM, "contact", _person("Sharon", "Toddington"), owner_id=other.user_id, team="south"
    )
    deal = await services.gateway.create(
        SYSTEM,
        "deal",
        {"title": "Cask renewal", "contact_id": mine.id},
        owner_id=me.user_id,
        team="north",
    )
    client = await web_login(staff, me)
    for path in ("/", "/contacts", "/deals", f"/contacts/{mine.id}", "/account"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert 'action="/search"' in page.text, path
        assert 'hx-post="/search/suggest"' in page.text, path

    home = await client.get("/")
    results = await client.post("/search", data={"q": "sharon t", "_csrf_token": csrf_of(home)})
    assert results.status_code == 200
    text = text_of(results)
    assert "Contacts (1)" in text
    assert "Deals (1)" in text
    assert f'href="/contacts/{mine.id}"' in results.text
    assert f'href="/deals/{deal.id}"' in results.text
    assert theirs.id not in results.text
    assert "Toddington" not in results.text

    suggestions = await client.post(
        "/search/suggest",
        data={"q": "tod"},
        headers={"x-csrftoken": csrf_of(home), "hx-request": "true"},
    )
    assert suggestions.status_code == 200
    assert 'role="option"' in suggestions.text
    assert f'href="/contacts/{mine.id}"' in suggestions.text
    assert "<html" not in suggestions.text  # a fragment for htmx
    assert "Toddington" not in suggestions.text

    empty = await client.post("/search", data={"q": "  ", "_csrf_token": csrf_of(home)})
    assert empty.status_code == 400
    assert "Type at least one letter" in text_of(empty)
    none = await client.post("/search", data={"q": "zebedee", "_csrf_token": csrf_of(home)})
    assert "No matches" in text_of(none)
    refused = await client.post("/search", data={"q": "sharon"})  # no CSRF token
    assert refused.status_code == 403


async def test_one_types_pages_on_the_results_page(services: Services, staff: Staff) -> None:
    me = await staff.create("sales", "north")
    await services.gateway.create_many(
        SYSTEM,
        "contact",
        [_person("Sharon", f"Number{i:02d}") for i in range(13)],
        owner_id=me.user_id,
        team="north",
    )
    client = await web_login(staff, me)
    home = await client.get("/")
    first = await client.post("/search", data={"q": "sharon", "_csrf_token": csrf_of(home)})
    assert "Contacts (13)" in text_of(first)
    assert "More contacts" in text_of(first)
    second = await client.post(
        "/search",
        data={"q": "sharon", "type": "contact", "page": "2", "_csrf_token": csrf_of(home)},
    )
    assert "Page 2 of 2" in text_of(second)
    assert len(re.findall(r'<li><a href="/contacts/[0-9a-f-]{36}"', second.text)) == 3


async def test_a_deal_for_the_oldest_of_2000_contacts_from_the_picker(
    services: Services, staff: Staff
) -> None:
    me = await staff.create("sales", "north")
    oldest = await services.gateway.create(
        SYSTEM, "contact", _person("Zebedee", "Oldfield"), owner_id=me.user_id, team="north"
    )
    for start in range(0, 1999, 500):  # as an import does (PostgreSQL: 32,767 parameters)
        await services.gateway.create_many(
            SYSTEM,
            "contact",
            [_person("Crowd", f"Member{i}") for i in range(start, min(start + 500, 1999))],
            owner_id=me.user_id,
            team="north",
        )
    client = await web_login(staff, me)
    form = await client.get("/deals/new")
    assert form.status_code == 200
    assert oldest.id not in form.text  # not among the newest the picker starts with
    assert 'name="pick_contact_id"' in form.text
    assert 'hx-post="/search/pick/contact"' in form.text

    # Without JavaScript: "Find" posts the form back with the matches in the select.
    found = await client.post(
        "/deals/new",
        data={
            "title": "Barrel order",
            "pick_contact_id": "zebedee old",
            "_pick": "contact_id",
            "_csrf_token": csrf_of(form),
        },
    )
    assert found.status_code == 200
    assert f'<option value="{oldest.id}" selected>Zebedee Oldfield</option>' in found.text
    assert 'value="Barrel order"' in found.text  # what was typed is kept
    # With htmx: the same matches as options for the select.
    options = await client.post(
        "/search/pick/contact",
        data={"field": "contact_id", "pick_contact_id": "zeb"},
        headers={"x-csrftoken": csrf_of(form), "hx-request": "true"},
    )
    assert f'<option value="{oldest.id}" selected>Zebedee Oldfield</option>' in options.text

    made = await client.post(
        "/deals/new",
        data={"title": "Barrel order", "contact_id": oldest.id, "_csrf_token": csrf_of(found)},
    )
    deal_path = location(made)
    detail = text_of(await client.get(deal_path))
    assert "Barrel order" in detail
    assert "Zebedee Oldfield" in detail


async def test_contact_list_search_finds_names_and_keeps_exact_email(
    services: Services, staff: Staff
) -> None:
    me = await staff.create("sales", "north")
    values = _person("José", "Álvarez")
    person = await services.gateway.create(
        SYSTEM, "contact", values, owner_id=me.user_id, team="north"
    )
    client = await web_login(staff, me)
    page = await client.get("/contacts")
    assert "Find by name, e-mail address or phone number" in text_of(page)
    for term in ("jose", "José Á", "alv"):
        found = await client.post(
            "/contacts/search", data={"q": term, "_csrf_token": csrf_of(page)}
        )
        assert found.status_code == 200, term
        assert f"/contacts/{person.id}" in found.text, term
    exact = await client.post(
        "/contacts/search", data={"q": values["email"], "_csrf_token": csrf_of(page)}
    )
    assert "1 exact match" in text_of(exact)
    deals = await client.get("/deals")
    assert "Find by name" in text_of(deals)


async def test_a_lead_converts_into_the_oldest_of_many_organizations_found_by_name(
    services: Services, staff: Staff
) -> None:
    """The conversion page picks an organization by name too: a capped list of the newest
    hundred left the rest unreachable."""
    me = await staff.create("sales", "north")
    oldest = await services.gateway.create(
        SYSTEM, "organization", {"name": "Aardvark Holdings"}, owner_id=me.user_id, team="north"
    )
    await services.gateway.create_many(
        SYSTEM,
        "organization",
        [{"name": f"Crowd Company {i}"} for i in range(150)],
        owner_id=me.user_id,
        team="north",
    )
    lead = await services.gateway.create(
        SYSTEM,
        "lead",
        {
            "first_name": "Nell",
            "last_name": "Gwynne",
            "email": "nell@example.org",
            "source": "event",
        },
        owner_id=me.user_id,
        team="north",
    )
    client = await web_login(staff, me)
    form = await client.get(f"/leads/{lead.id}/convert")
    assert form.status_code == 200
    assert oldest.id not in form.text
    assert 'hx-post="/search/pick/organization"' in form.text

    found = await client.post(
        f"/leads/{lead.id}/convert",
        data={
            "deal_title": "First order",
            "pick_organization_id": "aardv",
            "_pick": "organization_id",
            "_csrf_token": csrf_of(form),
        },
    )
    assert found.status_code == 200
    assert f'<option value="{oldest.id}" selected>Aardvark Holdings</option>' in found.text
    assert 'value="First order"' in found.text  # what was typed is kept
    assert "Lead converted" not in found.text

    made = await client.post(
        f"/leads/{lead.id}/convert",
        data={"organization_id": oldest.id, "_csrf_token": csrf_of(found)},
    )
    contact = await services.gateway.read(SYSTEM, "contact", location(made).rsplit("/", 1)[1])
    assert contact.values["organization_id"] == oldest.id
