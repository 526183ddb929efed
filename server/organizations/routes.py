from __future__ import annotations

from server.datamap import ORGANIZATION
from server.records.routes import RecordRoutes, describe_fields


class OrganizationRoutes(RecordRoutes):
    path = "/api/v1/organizations"
    tags = ["organizations"]
    resource = ORGANIZATION.resource
    description = describe_fields(ORGANIZATION)
