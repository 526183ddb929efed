from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.reports.tables import PrivacyBudget, SavedReport

APP_CONFIG = AppConfig(
    app_name="reporting",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[SavedReport, PrivacyBudget],
)
