"""One privacy-budget row per role and month (Piccolo runs raw SQL before it creates
tables, so the unique index comes in its own migration after the table's)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-02T16:11:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "privacy budget unique per role and month"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="reporting", description=DESCRIPTION)

    async def unique_budget() -> None:
        from server.reports.tables import PrivacyBudget

        await PrivacyBudget.raw(
            "CREATE UNIQUE INDEX privacy_budget_role_period ON privacy_budget (role, period)"
        )

    manager.add_raw(unique_budget)
    return manager
