from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.leads.tables import SpentFormToken

APP_CONFIG = AppConfig(
    app_name="leads",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[SpentFormToken],
)
