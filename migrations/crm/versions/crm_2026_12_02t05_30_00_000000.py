"""A shredded data key does not wait for the usual autovacuum threshold (PostgreSQL).

``subject_key`` gets zero autovacuum thresholds: autovacuum vacuums it whenever it holds a
dead row (an erasure's shred, a rotation's re-wrap), within ``autovacuum_naptime``
(1 minute by default), instead of after 20% of the table has changed. Erasure also runs
``VACUUM subject_key`` itself when it connects as the table's owner. SQLite needs no
schema change: the shred overwrites the row in place (``PRAGMA secure_delete``).
See docs/backups.md for what this does and does not reach.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-02T05:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "subject_key is vacuumed as soon as a key is shredded"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="crm", description=DESCRIPTION)

    async def install() -> None:
        engine = engine_finder()
        assert engine is not None
        if engine.engine_type == "postgres":
            await engine.run_ddl(
                "ALTER TABLE subject_key SET (autovacuum_vacuum_threshold = 0, "
                "autovacuum_vacuum_scale_factor = 0)"
            )

    manager.add_raw(install)
    return manager
