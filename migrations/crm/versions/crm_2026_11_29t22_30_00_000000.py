"""Interactions name who else took part (``interaction.participants``).

Free text typed by staff (colleagues, the customer's assistant), so an encrypted ``Text``
column holding a ``cs1.*`` envelope, empty (NULL) for the interactions logged before.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Text
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T22:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "interaction.participants"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)
    manager.add_column(
        table_class_name="Interaction",
        tablename="interaction",
        column_name="participants",
        db_column_name="participants",
        column_class_name="Text",
        column_class=Text,
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
