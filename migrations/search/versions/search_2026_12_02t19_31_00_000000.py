"""The mention-token lookup index ``(token, record_type, record_id)``, and the index's first
state: complete on a database with no customer record yet (every record from now on is
indexed as it is written), incomplete otherwise - erasure and exports then read every
free text, as before, until ``consentry mentions reindex`` (run by ``consentry migrate``)
has indexed the records written before this migration."""

import datetime as dt

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.querystring import QueryString

ID = "2026-12-02T19:31:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "mention token lookup index and first state"

# The customer-data tables with free text when this migration was written (record types
# added later start empty and are indexed as they are written).
CUSTOMER_TABLES = (
    "contact",
    "organization",
    "deal",
    "interaction",
    "support_case",
    "lead",
    "task",
    "note",
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="search", description=DESCRIPTION)

    async def lookup_index() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(
            "CREATE INDEX mention_token_lookup ON mention_token (token, record_type, record_id)"
        )

    async def first_state() -> None:
        engine = engine_finder()
        assert engine is not None
        if engine.engine_type == "sqlite":
            listed = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = {}"
        else:
            listed = "SELECT to_regclass({}) AS name"
        empty = True
        for table in CUSTOMER_TABLES:
            found = await engine.run_querystring(QueryString(listed, table))
            if not found or found[0]["name"] is None:
                continue
            # Constant table names from the tuple above, never input.
            if await engine.run_querystring(QueryString(f"SELECT 1 AS one FROM {table} LIMIT 1")):
                empty = False
                break
        await engine.run_querystring(
            QueryString(
                "INSERT INTO mention_index_state (id, complete, probe, updated_at) "
                "VALUES (1, {}, NULL, {})",
                empty,
                dt.datetime.now(dt.UTC),
            )
        )

    manager.add_raw(lookup_index)
    manager.add_raw(first_state)
    return manager
