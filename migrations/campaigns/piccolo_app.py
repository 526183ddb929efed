from pathlib import Path

from piccolo.conf.apps import AppConfig

from server.campaigns.tables import Campaign, CampaignDelivery, Segment

APP_CONFIG = AppConfig(
    app_name="campaigns",
    migrations_folder_path=str(Path(__file__).parent / "versions"),
    table_classes=[Segment, Campaign, CampaignDelivery],
)
