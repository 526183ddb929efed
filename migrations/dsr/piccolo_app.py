from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.dsr.tables import (
    DsrRequest,
    DsrRequestEvent,
    ErasureJob,
    LegalHold,
    ProcessingRestriction,
    RetentionRun,
)

APP_CONFIG = AppConfig(
    app_name="dsr",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[
        DsrRequest,
        DsrRequestEvent,
        LegalHold,
        ProcessingRestriction,
        ErasureJob,
        RetentionRun,
    ],
)
