"""Every list page is read newest first (created_at DESC, id): each record table needs an
index in that order, or a page sorts every row of the table (at 100,000 contacts a page
took 142 ms instead of 0.6 ms on SQLite once the planner had statistics). A new record
type's migration must add one too; this check names the table that lacks it."""

from __future__ import annotations

from server.gateway.tables import TABLES
from server.settings import Settings
from tests.dbutil import raw_sql


async def _indexes(settings: Settings) -> set[str]:
    url = settings.database_url
    if url.startswith("sqlite"):
        rows = await raw_sql(url, "SELECT name FROM sqlite_master WHERE type = 'index'")
        return {str(r["name"]) for r in rows}
    rows = await raw_sql(url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    return {str(r["indexname"]) for r in rows}


async def test_every_record_table_has_an_index_in_list_order(settings: Settings) -> None:
    indexes = await _indexes(settings)
    missing = [
        t._meta.tablename for t in TABLES.values() if f"{t._meta.tablename}_newest" not in indexes
    ]
    assert not missing, f"no (created_at DESC, id) index on {missing}: add one in a migration"
    assert {"contact_living", "lead_living"} <= indexes
