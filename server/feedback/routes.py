"""``/api/v1/feedback``: named survey answers over REST, like every record type (policy
``feedback``: admins, support reads). Anonymous answers are counts, not records."""

from server.datamap import FEEDBACK
from server.records.routes import record_routes

FeedbackRoutes = record_routes(FEEDBACK, "/api/v1/feedback", "feedback")
