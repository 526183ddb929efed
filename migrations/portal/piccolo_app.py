from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.portal.tables import PortalSession, PortalToken

APP_CONFIG = AppConfig(
    app_name="portal",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[PortalToken, PortalSession],
)
