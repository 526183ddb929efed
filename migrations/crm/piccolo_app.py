from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.gateway.tables import (  # import-linter: escape hatch below
    Case,
    Contact,
    Deal,
    Interaction,
    Lead,
    Note,
    Organization,
    Task,
)
from server.vault.tables import DataSubject, SubjectKey

APP_CONFIG = AppConfig(
    app_name="crm",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    # Every table the crm migrations made: one missing here is a drop_table in the next
    # ``piccolo migrations new crm --auto`` (tests/server/test_migrations_auto.py keeps it so).
    table_classes=[
        DataSubject,
        SubjectKey,
        Organization,
        Contact,
        Deal,
        Interaction,
        Case,
        Lead,
        Task,
        Note,
    ],
)
