"""Lists and counts leave erased people out by an ``erased`` column that erasure sets in the
statement that clears the row (an index answers the count; reading every row's ciphertext
cost a list page 5-19x a bare stack at 100,000 contacts). The promise is unchanged: an
erased contact or lead never turns up as a nameless living record."""

from __future__ import annotations

import importlib

from server.datamap import RECORD_TYPES
from server.gateway import Actor
from server.gateway.lifecycle import ERASED, has_tombstones
from server.gateway.tables import TABLES
from server.services import Services
from server.settings import Settings
from tests.conftest import contact_values, owner_url
from tests.dbutil import raw_sql
from tests.server.leads.test_leads import lead_values

ADMIN = Actor.system("test-admin")
BACKFILL = importlib.import_module("migrations.crm.versions.crm_2026_12_03t10_00_01_000000")


def test_every_type_that_leaves_tombstones_has_the_mark() -> None:
    kinds = [r for r, rt in RECORD_TYPES.items() if has_tombstones(rt)]
    assert sorted(kinds) == ["contact", "lead"]
    for resource in kinds:
        assert ERASED in RECORD_TYPES[resource].lifecycle_columns
        assert hasattr(TABLES[resource], ERASED), f"{resource} has no {ERASED} column"


async def _people(services: Services) -> dict[str, list[str]]:
    """Record ids per type as a list and a count see them (compliance: every person)."""
    seen: dict[str, list[str]] = {}
    for resource in ("contact", "lead"):
        page = await services.gateway.list(ADMIN, resource, purpose="compliance", page_size=100)
        count = await services.gateway.count(ADMIN, resource, purpose="compliance")
        assert count == page.total == len(page.items)
        seen[resource] = sorted(item.id for item in page.items)
    return seen


async def _marks(settings: Settings, table: str) -> dict[str, bool]:
    rows = await raw_sql(settings.database_url, f'SELECT id, erased FROM "{table}"')
    return {str(r["id"]): bool(r["erased"]) for r in rows}


async def test_erasure_marks_the_tombstone_and_lists_and_counts_leave_it_out(
    services: Services, settings: Settings
) -> None:
    gw = services.gateway
    kept = await gw.create(ADMIN, "contact", contact_values(email="kept@example.org"))
    gone = await gw.create(ADMIN, "contact", contact_values(email="gone@example.org"))
    lead_kept = await gw.create(ADMIN, "lead", lead_values(email="lk@example.org"))
    lead_gone = await gw.create(ADMIN, "lead", lead_values(email="lg@example.org"))

    await services.erasure.erase(gone.subject_id, by="user:1")
    await services.erasure.erase(lead_gone.subject_id, by="user:1")

    assert await _marks(settings, "contact") == {kept.id: False, gone.id: True}
    assert await _marks(settings, "lead") == {lead_kept.id: False, lead_gone.id: True}
    assert await _people(services) == {"contact": [kept.id], "lead": [lead_kept.id]}


async def test_tombstones_made_before_the_mark_existed_are_marked_by_the_migration(
    services: Services, settings: Settings
) -> None:
    gw = services.gateway
    kept = await gw.create(ADMIN, "contact", contact_values(email="kept@example.org"))
    gone = await gw.create(ADMIN, "contact", contact_values(email="gone@example.org"))
    lead_gone = await gw.create(ADMIN, "lead", lead_values(email="lg@example.org"))
    await services.erasure.erase(gone.subject_id, by="user:1")
    await services.erasure.erase(lead_gone.subject_id, by="user:1")
    # As erasure left them before the column: cleared, and not marked.
    for table in ("contact", "lead"):
        await raw_sql(settings.database_url, f'UPDATE "{table}" SET erased = FALSE')
    unmarked = await _people(services)
    assert gone.id in unmarked["contact"]  # the harm an unmarked tombstone would do
    assert lead_gone.id in unmarked["lead"]

    for _ in range(2):  # the migration's statements (as the owner), twice: no change the 2nd
        for statement in BACKFILL.STATEMENTS:
            await raw_sql(owner_url(settings.database_url), statement)

    assert await _marks(settings, "contact") == {kept.id: False, gone.id: True}
    assert await _people(services) == {"contact": [kept.id], "lead": []}
