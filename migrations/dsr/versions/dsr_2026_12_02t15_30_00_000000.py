"""dsr_request.opened_because: why the system opened a request nobody sent; and
erasure_job.identity: what a held erasure remembers to scrub mentions with when it ends;
erasure_job.error: why an erasure run in the background stopped (a code).

``opened_because`` is a code, never free text: ``last_consent_withdrawn`` or ``last_consent_expired`` for the
erasure reviews opened when a person's last legal basis lapses (server/dsr/lapse.py).
Empty for every request a person made.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Text, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T15:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "dsr_request.opened_because, erasure_job.identity, erasure_job.error"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="dsr", description=DESCRIPTION)
    manager.add_column(
        table_class_name="DsrRequest",
        tablename="dsr_request",
        column_name="opened_because",
        db_column_name="opened_because",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 32,
            "default": "",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )
    manager.add_column(
        table_class_name="ErasureJob",
        tablename="erasure_job",
        column_name="identity",
        db_column_name="identity",
        column_class_name="Text",
        column_class=Text,
        params={
            "default": "",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )
    manager.add_column(
        table_class_name="ErasureJob",
        tablename="erasure_job",
        column_name="error",
        db_column_name="error",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 32,
            "default": "",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )
    return manager
