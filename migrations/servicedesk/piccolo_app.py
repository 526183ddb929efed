from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.gateway.tables import CaseMessage
from server.servicedesk.tables import (
    CannedResponse,
    DeskCase,
    DeskQueue,
    MailThread,
    PortalPost,
    SlaPolicy,
)

# ``case_message`` (a customer table, server.gateway.tables) is created by this app's
# first migration: listed here so that ``--auto`` never proposes to drop it (the
# import-linter contract allows this app to import the gateway's tables).
APP_CONFIG = AppConfig(
    app_name="servicedesk",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[
        CaseMessage,
        SlaPolicy,
        DeskQueue,
        DeskCase,
        MailThread,
        CannedResponse,
        PortalPost,
    ],
)
