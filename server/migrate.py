"""Applying and checking the Piccolo migrations under ``migrations/``."""

from __future__ import annotations

import contextlib
import io

from piccolo.apps.migrations.commands.base import BaseMigrationManager
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration


class MigrationFailed(Exception):
    """A migration did not apply; Piccolo's message (no data) says which."""


async def apply_migrations(*, quiet: bool = True) -> None:
    """Run every pending migration (idempotent). Piccolo's chatter is hidden unless asked."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        result = await run_forwards(app_name="all")
    if not result.success:
        raise MigrationFailed(result.message or sink.getvalue()[-500:])


async def pending_migrations() -> list[str]:
    """Migration ids present in ``migrations/`` but not yet applied to the database."""
    manager = BaseMigrationManager()
    if not await Migration.table_exists():
        pending: list[str] = []
        for app_config in manager.get_app_registry().app_configs.values():
            modules = manager.get_migration_modules(app_config.resolved_migrations_folder_path)
            pending += [f"{app_config.app_name}:{i}" for i in manager.get_migration_ids(modules)]
        return pending
    pending = []
    for app_config in manager.get_app_registry().app_configs.values():
        ran = set(await Migration.get_migrations_which_ran(app_name=app_config.app_name))
        modules = manager.get_migration_modules(app_config.resolved_migrations_folder_path)
        pending += [
            f"{app_config.app_name}:{i}" for i in manager.get_migration_ids(modules) if i not in ran
        ]
    return pending
