from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.analytics.tables import CustomerScore

APP_CONFIG = AppConfig(
    app_name="analytics",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[CustomerScore],
)
