from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.webhooks.tables import (
    Recipient,
    RecipientNotice,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

APP_CONFIG = AppConfig(
    app_name="integrations",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[WebhookEndpoint, WebhookDelivery, WebhookAttempt, Recipient, RecipientNotice],
)
