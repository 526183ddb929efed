"""Campaign attribution (issue 20): ``deal.campaign_id`` and ``lead.campaign_id``.

The campaign funnel counts leads and deals per campaign from this field, which staff set
(forms, API, import): no tracking pixel, no per-person link. Plaintext: an id of a
campaign (configuration), naming nobody.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T16:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "deal.campaign_id and lead.campaign_id"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)
    for class_name, tablename in (("Deal", "deal"), ("Lead", "lead")):
        manager.add_column(
            table_class_name=class_name,
            tablename=tablename,
            column_name="campaign_id",
            db_column_name="campaign_id",
            column_class_name="UUID",
            column_class=UUID,
            params={
                "default": None,
                "null": True,
                "primary_key": False,
                "unique": False,
                "index": True,
                "index_method": IndexMethod.btree,
                "choices": None,
                "db_column_name": None,
                "secret": False,
            },
            schema=None,
        )
    return manager
