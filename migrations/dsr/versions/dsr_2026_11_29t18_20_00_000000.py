"""The request history is append-only; the queue is read in deadline order.

``dsr_request_event`` gets the same guards as the audit and consent evidence: triggers
reject UPDATE and DELETE on both engines, and TRUNCATE on PostgreSQL. The trigger function
is (re)created here so this app does not depend on the order apps migrate in.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-29T18:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "data-subject request history is append-only"

APPEND_ONLY = ("dsr_request_event",)

COMMON = [
    "CREATE INDEX dsr_request_event_request_idx ON dsr_request_event (request_id, id)",
]

SQLITE = [
    statement
    for table in APPEND_ONLY
    for statement in (
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE rejected'); END""",
        f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE rejected'); END""",
    )
]

POSTGRES = [
    """CREATE OR REPLACE FUNCTION consentry_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
           USING ERRCODE = 'insufficient_privilege';
       END $$""",
] + [
    statement
    for table in APPEND_ONLY
    for statement in (
        f"""CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION consentry_append_only()""",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION consentry_append_only()""",
    )
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="dsr", description=DESCRIPTION)

    async def install() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in COMMON + (SQLITE if engine.engine_type == "sqlite" else POSTGRES):
            await engine.run_ddl(statement)

    manager.add_raw(install)
    return manager
