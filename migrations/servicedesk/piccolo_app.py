from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.servicedesk.tables import (
    CannedResponse,
    DeskCase,
    DeskQueue,
    MailThread,
    PortalPost,
    SlaPolicy,
)

# ``case_message`` (a customer table, server.gateway.tables) is created by this app's
# first migration too; it is left out here so this module need not import the gateway's
# tables (import-linter), like the leads and tasks tables of the crm app.
APP_CONFIG = AppConfig(
    app_name="servicedesk",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[SlaPolicy, DeskQueue, DeskCase, MailThread, CannedResponse, PortalPost],
)
