"""The mention-token lookup index ``(token, record_type, record_id)``, and the index's first
state: complete on a database with no customer record yet (every record from now on is
indexed as it is written), incomplete otherwise - erasure and exports then read every
free text, as before, until ``consentry mentions reindex`` (run by ``consentry migrate``)
has indexed the records written before this migration."""

import datetime as dt

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

from server.gateway.tables import TABLES, MentionIndexState

ID = "2026-12-02T19:31:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "mention token lookup index and first state"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="search", description=DESCRIPTION)

    async def lookup_index() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(
            "CREATE INDEX mention_token_lookup ON mention_token (token, record_type, record_id)"
        )

    async def first_state() -> None:
        empty = True
        for table in TABLES.values():
            if await table.table_exists() and await table.exists():
                empty = False
                break
        await MentionIndexState.insert(
            MentionIndexState(id=1, complete=empty, probe=None, updated_at=dt.datetime.now(dt.UTC))
        )

    manager.add_raw(lookup_index)
    manager.add_raw(first_state)
    return manager
