"""The import wizard: a file whose columns are not named after the fields ("Surname",
"Mail", "Mobile") is matched on screen, previewed, checked and imported; the command line
understands the same synonyms; the uploaded file never sits on disk readable.

What a user would notice: the mapping screen preselects "Last name" for "Surname", a
required field left unmatched is named in words (no command-line syntax), the preview
shows the first rows, and a cancelled upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from httpx import AsyncClient

from server.csvio.mapping import suggest
from server.csvio.uploads import UploadGone, UploadStore
from server.datamap import RECORD_TYPES
from server.gateway import Actor
from server.services import Services
from tests.admin_ui.test_admin_ui import csrf_of, text_of, web_login
from tests.conftest import Staff
from tests.server.cli.test_cli import Install, consentry, install

__all__ = ["install"]

SYSTEM = Actor.system("test-import")
FILE = (
    b"Forename,Surname,Mail,Mobile,Company,Favourite colour\n"
    b"Ada,Lovelace,ada@example.org,+44 20 7946 0001,Analytical Ltd,green\n"
    b"Charles,Babbage,charles@example.org,+44 20 7946 0002,Difference plc,grey\n"
)


def test_headers_are_matched_by_synonym_and_by_a_close_spelling() -> None:
    contact = RECORD_TYPES["contact"]
    allowed = frozenset(f.name for f in contact.fields if f.kind != "reference")
    header = ["Forename", "Surname", "Mail", "Tel", "Shoe size", "E-Mail Adres", "Family name"]
    assert suggest(contact, header, allowed) == {
        0: "first_name",
        1: "last_name",
        2: "email",
        3: "phone",
        4: None,
        5: None,  # e-mail is taken by "Mail" already: each field at most once
        6: None,  # likewise the last name
    }
    assert suggest(contact, ["Given name", "Last Name", "E-Mail Adres", "Mobile"], allowed) == {
        0: "first_name",
        1: "last_name",
        2: "email",  # fuzzy: close to "emailaddress"
        3: "phone",
    }
    lead = RECORD_TYPES["lead"]
    lead_fields = frozenset(f.name for f in lead.fields)
    assert suggest(lead, ["Company"], lead_fields) == {0: "company_name"}
    organization = RECORD_TYPES["organization"]
    org_fields = frozenset(f.name for f in organization.fields)
    assert suggest(organization, ["Company", "Website"], org_fields) == {0: "name", 1: "domain"}
    # Only fields the role may set are suggested.
    assert suggest(contact, ["Surname"], frozenset({"first_name"})) == {0: None}


def test_the_upload_store_keeps_files_encrypted_and_forgets_them(tmp_path: Path) -> None:
    store = UploadStore(tmp_path / "uploads")
    upload_id, key = store.put(FILE, "user:1")
    (stored,) = (tmp_path / "uploads").iterdir()
    assert b"Lovelace" not in stored.read_bytes()
    assert stored.stat().st_mode & 0o777 == 0o600
    assert store.get(upload_id, key, "user:1") == FILE
    for who, which in (("user:2", key), ("user:1", key[:-4] + "AAA=")):
        try:
            store.get(upload_id, which, who)
        except UploadGone:
            continue
        raise AssertionError("an upload opened for the wrong owner or key")
    store.discard(upload_id)
    assert list((tmp_path / "uploads").iterdir()) == []


def test_cli_import_understands_surname_without_map(install: Install, tmp_path: Path) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    people = tmp_path / "people.csv"
    people.write_bytes(FILE)
    result = consentry("import", "contacts", str(people))
    assert result.exit_code == 0, result.output
    assert "2 rows: 2 created, 0 skipped, 0 bad" in result.stdout


def hidden_fields(page: Any) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))


def selected(page: Any) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for name, options in re.findall(
        r'<select id="column-\d+" name="(column_\d+)">(.*?)</select>', page.text, re.S
    ):
        picked = re.search(r'<option value="([^"]*)" selected>', options)
        chosen[name] = picked.group(1) if picked else ""
    return chosen


async def upload(client: AsyncClient, content: bytes = FILE) -> Any:
    page = await client.get("/import")
    return await client.post(
        "/import",
        data={"resource": "contact", "_csrf_token": csrf_of(page)},
        files={"file": ("people.csv", content, "text/csv")},
    )


async def test_the_mapping_screen_suggests_previews_checks_and_imports(
    services: Services, staff: Staff
) -> None:
    client = await web_login(staff, await staff.create("admin"))
    mapping = await upload(client)
    assert mapping.status_code == 200
    assert selected(mapping) == {
        "column_0": "first_name",
        "column_1": "last_name",
        "column_2": "email",
        "column_3": "phone",
        "column_4": "",  # a contact's company is another record: not guessed
        "column_5": "",
    }
    shown = text_of(mapping)
    assert "The first 2 rows" in shown
    assert "Lovelace" in shown  # the preview: the admin may read last names
    assert "green" not in shown  # a column that is not imported is not shown
    uploads = services.settings.home / "uploads"
    (stored,) = uploads.iterdir()
    assert b"Lovelace" not in stored.read_bytes()

    # Unmatch the surname: the screen says what is missing, in words.
    fields = {**hidden_fields(mapping), **selected(mapping), "column_1": ""}
    missing = await client.post("/import/mapping", data={**fields, "action": "check"})
    assert missing.status_code == 400
    assert "Last name is required: choose the column that holds it." in text_of(missing)
    assert "--map" not in missing.text
    twice = {**fields, "column_1": "email"}
    both = await client.post("/import/mapping", data={**twice, "action": "check"})
    assert "E-mail address: choose one column (now “Surname” and “Mail”)" in text_of(both)

    fields["column_1"] = "last_name"
    review = await client.post("/import/mapping", data={**fields, "action": "check"})
    assert review.status_code == 200
    assert "Nothing was written. 2 rows: 2 would be created, 0 skipped, 0 bad" in text_of(review)
    assert "“Surname” → Last name" in text_of(review)
    assert await services.gateway.count(SYSTEM, "contact") == 0
    started = await client.post(
        "/import/mapping", data={**hidden_fields(review), "action": "import"}
    )
    assert started.status_code == 303
    assert list(uploads.iterdir()) == []  # the file is deleted once the import starts
    for _ in range(100):
        if await services.gateway.count(SYSTEM, "contact") == 2:
            break
        await asyncio.sleep(0.05)
    page = await services.gateway.list(SYSTEM, "contact")
    assert sorted(r.values["last_name"] for r in page.items) == ["Babbage", "Lovelace"]


async def test_a_cancelled_upload_leaves_nothing_behind(services: Services, staff: Staff) -> None:
    client = await web_login(staff, await staff.create("admin"))
    mapping = await upload(client)
    uploads = services.settings.home / "uploads"
    assert len(list(uploads.iterdir())) == 1
    cancelled = await client.post(
        "/import/mapping", data={**hidden_fields(mapping), "action": "cancel"}
    )
    assert cancelled.status_code == 303
    assert "Import cancelled" in text_of(await client.get(cancelled.headers["location"]))
    assert list(uploads.iterdir()) == []
    again = await client.post("/import/mapping", data={**hidden_fields(mapping), "action": "check"})
    assert again.status_code == 400
    assert "That upload is no longer here" in text_of(again)
