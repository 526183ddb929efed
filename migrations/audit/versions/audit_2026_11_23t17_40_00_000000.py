"""Make the audit table append-only at the database level, on both engines.

Triggers reject UPDATE and DELETE (and, on PostgreSQL, TRUNCATE, which bypasses row
triggers). This holds against anyone who connects with SQL, not just against our code.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-23T17:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit table is append-only (triggers)"

SQLITE = [
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit is append-only: UPDATE rejected'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit is append-only: DELETE rejected'); END""",
]

POSTGRES = [
    """CREATE OR REPLACE FUNCTION consentry_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
           USING ERRCODE = 'insufficient_privilege';
       END $$""",
    """CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit
       FOR EACH ROW EXECUTE FUNCTION consentry_append_only()""",
    """CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
       FOR EACH STATEMENT EXECUTE FUNCTION consentry_append_only()""",
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="audit", description=DESCRIPTION)

    async def install_triggers() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in SQLITE if engine.engine_type == "sqlite" else POSTGRES:
            await engine.run_ddl(statement)

    manager.add_raw(install_triggers)
    return manager
