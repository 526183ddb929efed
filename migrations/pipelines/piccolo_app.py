from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.forecast.tables import SalesQuota
from server.pipelines.tables import Pipeline, PipelineStage

APP_CONFIG = AppConfig(
    app_name="pipelines",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[Pipeline, PipelineStage, SalesQuota],
)
