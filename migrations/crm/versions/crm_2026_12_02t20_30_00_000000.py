"""Forecast category per deal (issue 20): ``deal.forecast_category``.

commit, best_case or pipeline when staff override the category the deal's probability
gives; NULL (every existing deal) lets the probability decide, as before. Plaintext: a
classification of the deal, naming nobody.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T20:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "deal.forecast_category"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)
    manager.add_column(
        table_class_name="Deal",
        tablename="deal",
        column_name="forecast_category",
        db_column_name="forecast_category",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 16,
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
