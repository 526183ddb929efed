"""Signed tree heads are append-only too, and the compliance console's filters are indexed.

The same trigger function as the audit table (PostgreSQL) / the same RAISE (SQLite): a
checkpoint, once signed, is evidence, and rewriting one must need more than an UPDATE.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-29T16:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit_checkpoint is append-only; audit indexes for the console"

INDEXES = [
    "CREATE INDEX audit_ts_idx ON audit (ts)",
    "CREATE INDEX audit_actor_idx ON audit (actor_id, seq)",
    "CREATE INDEX audit_resource_idx ON audit (resource_type, resource_id)",
]

SQLITE = [
    """CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
       BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only: UPDATE rejected'); END""",
    """CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
       BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only: DELETE rejected'); END""",
]

POSTGRES = [
    """CREATE TRIGGER audit_checkpoint_no_update_delete
       BEFORE UPDATE OR DELETE ON audit_checkpoint
       FOR EACH ROW EXECUTE FUNCTION consentry_append_only()""",
    """CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint
       FOR EACH STATEMENT EXECUTE FUNCTION consentry_append_only()""",
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="audit", description=DESCRIPTION)

    async def install() -> None:
        engine = engine_finder()
        assert engine is not None
        statements = INDEXES + (SQLITE if engine.engine_type == "sqlite" else POSTGRES)
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(install)
    return manager
