from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.outbox.tables import QueuedMail

APP_CONFIG = AppConfig(
    app_name="outbox",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[QueuedMail],
)
