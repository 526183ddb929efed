from __future__ import annotations

from server.datamap import CASE, DEAL, INTERACTION
from server.records.routes import record_routes

DealRoutes = record_routes(DEAL, "/api/v1/deals", "deals")
InteractionRoutes = record_routes(INTERACTION, "/api/v1/interactions", "interactions")
CaseRoutes = record_routes(CASE, "/api/v1/cases", "cases")
