from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.gateway.tables import CapturedMail
from server.mailcapture.tables import Mailbox

APP_CONFIG = AppConfig(
    app_name="mailcapture",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[CapturedMail, Mailbox],
)
