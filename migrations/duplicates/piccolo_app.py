from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.gateway.tables import ContactMerge

APP_CONFIG = AppConfig(
    app_name="duplicates",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[ContactMerge],
)
