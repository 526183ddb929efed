from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.knowledge.tables import KbArticle, KbCategory

APP_CONFIG = AppConfig(
    app_name="knowledge",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[KbCategory, KbArticle],
)
