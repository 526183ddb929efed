from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.gateway.tables import MentionIndexState, MentionToken, SearchToken

APP_CONFIG = AppConfig(
    app_name="search",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[SearchToken, MentionToken, MentionIndexState],
)
