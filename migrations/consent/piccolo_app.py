from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.consent.tables import (
    ConsentEvent,
    ConsentPurpose,
    ConsentState,
    ConsentToken,
    PrivacyNotice,
)

APP_CONFIG = AppConfig(
    app_name="consent",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[ConsentPurpose, PrivacyNotice, ConsentEvent, ConsentState, ConsentToken],
)
