from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.auth.tables import (
    ApiToken,
    LoginThrottle,
    PasswordResetToken,
    StaffRecoveryCode,
    StaffSession,
    StaffUser,
)

APP_CONFIG = AppConfig(
    app_name="staff",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[
        StaffUser,
        StaffSession,
        StaffRecoveryCode,
        PasswordResetToken,
        LoginThrottle,
        ApiToken,
    ],
)
