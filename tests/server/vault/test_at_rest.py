"""Personal data is ciphertext at rest: a copy of the database shows none of it.

On SQLite the raw database file (and its write-ahead log) is searched byte by byte; on
PostgreSQL a ``pg_dump`` of the test database is. Non-personal plaintext fields must be
found in the same bytes, which proves the search looks at the right data.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from server.services import Services
from tests.conftest import ENGINE, REQUIRE_PG, Staff, contact_values

PG_DUMP_CANDIDATES = ("/usr/bin/pg_dump", "/usr/lib/postgresql/15/bin/pg_dump")

PEOPLE: list[dict[str, str]] = [
    {
        "first_name": "Perpetua",
        "last_name": "Fotheringay",
        "email": "perpetua.fotheringay@example.net",
        "phone": "+44 20 7946 0555",
        "job_title": "Lighthouse keeper",
        "birth_date": "1931-07-14",
        "address_line": "7 Quayside Wynd",
        "city": "Lochinvarrow",
        "postcode": "IV27 4ZZ",
        "notes": "Met at the Harrogate trade fair",
        "lifecycle_stage": "former_customer",
    },
    {
        "first_name": "Barnabus",
        "last_name": "Quillfeather",
        "email": "Barnabus.Quillfeather@Example.com",
        "phone": "020 7946 0556",
        "job_title": "Master cooper",
        "birth_date": "1944-02-29",
        "city": "Upper Snoddington",
        "notes": "Call after the cask auction",
        "lifecycle_stage": "prospect",
    },
]
ORGANIZATION: dict[str, Any] = {
    "name": "Plaintext Widgets Consolidated",
    "domain": "widgets-consolidated.example",
    "industry": "Cooperage",
    "email": "accounts.widgetsco@example.org",
    "phone": "+44 20 7946 0557",
    "address_line": "12 Barrelhoop Lane",
    "city": "Caskbridge",
    "postcode": "CB99 9QQ",
    "annual_revenue": 8675309421,
    "notes": "Founder prefers post to e-mail",
}
PERSONAL_ORG_FIELDS = ("email", "phone", "address_line", "city", "postcode", "notes")
# What the dump must show in the clear: business facts and workflow values, not people.
PLAINTEXT: list[str] = [
    ORGANIZATION["name"],
    ORGANIZATION["industry"],
    "former_customer",
    "prospect",
    "cs1.",
]


def _personal_values() -> list[str]:
    values: list[str] = []
    for person in PEOPLE:
        values += [v for k, v in person.items() if k != "lifecycle_stage"]
    values += [str(ORGANIZATION[name]) for name in PERSONAL_ORG_FIELDS]
    values += [str(ORGANIZATION["annual_revenue"])]
    # canonical forms the gateway stores, besides what was typed
    values += ["+442079460555", "+442079460556", "+442079460557", "2079460556"]
    return values


def _sqlite_bytes(database_url: str) -> bytes:
    path = Path(database_url.removeprefix("sqlite:///"))
    blob = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        blob += wal.read_bytes()
    return blob


def _pg_dump_binary() -> str | None:
    found = shutil.which("pg_dump")
    if found:
        return found
    return next((c for c in PG_DUMP_CANDIDATES if Path(c).exists()), None)


async def _pg_dump(database_url: str) -> bytes:
    binary = _pg_dump_binary()
    if binary is None:
        if REQUIRE_PG:
            pytest.fail("pg_dump is required (install postgresql-client) but was not found")
        pytest.skip("pg_dump not found")
    process = await asyncio.create_subprocess_exec(
        binary,
        "--format=plain",
        "--no-owner",
        f"--dbname={database_url}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode(errors="replace")
    return out


async def _database_copy(database_url: str) -> bytes:
    if ENGINE == "postgres":
        return await _pg_dump(database_url)
    return _sqlite_bytes(database_url)


async def test_personal_data_is_not_readable_at_rest(
    services: Services, staff: Staff, database_url: str
) -> None:
    gateway = services.gateway
    admin = staff.actor(await staff.create("admin"))
    org = await gateway.create(admin, "organization", ORGANIZATION)
    for person in PEOPLE:
        record = await gateway.create(
            admin, "contact", contact_values(organization_id=org.id, **person)
        )
        # exercise reads, searches and an update too: none may leave plaintext behind
        await gateway.read(admin, "contact", record.id)
        await gateway.search(admin, "contact", "email", person["email"])
        await gateway.search(admin, "contact", "phone", person["phone"])
        await gateway.update(admin, "contact", record.id, {"notes": person["notes"] + " (again)"})
    await gateway.search(admin, "organization", "email", ORGANIZATION["email"])

    copy = await _database_copy(database_url)
    folded = copy.lower()

    for plain in PLAINTEXT:  # proves we are looking at the customer data
        assert plain.encode() in copy, f"expected plaintext {plain!r} not found in {ENGINE} copy"
    for value in _personal_values():
        for variant in {value, value.lower(), value.upper()}:
            assert variant.encode() not in copy, f"{variant!r} readable in the {ENGINE} copy"
        assert value.lower().encode() not in folded, f"{value!r} (any case) in the {ENGINE} copy"
