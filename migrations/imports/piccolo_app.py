from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.csvio.tables import ImportJob

APP_CONFIG = AppConfig(
    app_name="imports",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[ImportJob],
)
