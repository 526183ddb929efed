from __future__ import annotations

from server.datamap import ORGANIZATION
from server.records.routes import record_routes

OrganizationRoutes = record_routes(ORGANIZATION, "/api/v1/organizations", "organizations")
