"""What a campaign cost (issue 20): the funnel's cost per won deal. Minor units of
``cost_currency``; 0 and "" until someone who manages campaigns sets it."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T16:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "campaign.cost and campaign.cost_currency"

BASE = {
    "null": False,
    "primary_key": False,
    "unique": False,
    "index": False,
    "index_method": IndexMethod.btree,
    "choices": None,
    "db_column_name": None,
    "secret": False,
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="campaigns", description=DESCRIPTION)
    for name, column_class, params in (
        ("cost", BigInt, {**BASE, "default": 0}),
        ("cost_currency", Varchar, {**BASE, "default": "", "length": 3}),
    ):
        manager.add_column(
            table_class_name="Campaign",
            tablename="campaign",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    return manager
