from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.calendar.tables import CalendarMeeting

APP_CONFIG = AppConfig(
    app_name="calendar",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[CalendarMeeting],
)
