from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.feedback.tables import CaseSurvey, FeedbackTally, Survey, SurveyInvitation
from server.gateway.tables import FeedbackAnswer  # import-linter: escape hatch (pyproject)

APP_CONFIG = AppConfig(
    app_name="feedback",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[FeedbackAnswer, Survey, SurveyInvitation, FeedbackTally, CaseSurvey],
)
