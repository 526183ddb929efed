from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.gateway.tables import (  # import-linter: escape hatch below
    Case,
    Contact,
    Deal,
    Interaction,
    Organization,
)
from server.vault.tables import DataSubject, SubjectKey

APP_CONFIG = AppConfig(
    app_name="crm",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[DataSubject, SubjectKey, Organization, Contact, Deal, Interaction, Case],
)
