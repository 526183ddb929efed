from __future__ import annotations

from tests.conftest import Staff, contact_values


async def test_admin_creates_and_reads_contact(staff: Staff) -> None:
    admin = await staff.create("admin")
    client = await staff.login(admin)
    created = await client.post("/api/v1/contacts", json=contact_values(first_name="Ada"))
    assert created.status_code == 201, created.text
    got = await client.get(f"/api/v1/contacts/{created.json()['id']}")
    assert got.json()["first_name"] == "Ada"
