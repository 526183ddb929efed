"""Deals remember when they entered their stage (``deal.stage_entered_at``).

Set by the pipelines' deal rule whenever a deal's stage changes (the board shows the age
in stage). Plaintext: a time, naming nobody. The next migration fills it in for the deals
that exist already.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T10:15:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "deal.stage_entered_at"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)
    manager.add_column(
        table_class_name="Deal",
        tablename="deal",
        column_name="stage_entered_at",
        db_column_name="stage_entered_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": None,
            "null": True,
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
