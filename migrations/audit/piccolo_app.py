from pathlib import Path

from piccolo.conf.apps import AppConfig

from audit.alert_tables import AlertCursor, AlertRule, AuditAlert
from audit.tables import AuditCheckpoint, AuditRecord

APP_CONFIG = AppConfig(
    app_name="audit",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[AuditRecord, AuditCheckpoint, AlertRule, AuditAlert, AlertCursor],
)
