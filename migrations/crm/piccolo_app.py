from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.gateway.tables import Contact, Organization  # import-linter: escape hatch below
from server.vault.tables import DataSubject, SubjectKey

APP_CONFIG = AppConfig(
    app_name="crm",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[DataSubject, SubjectKey, Organization, Contact],
)
