from __future__ import annotations

from server.datamap import CONTACT
from server.records.routes import RecordRoutes, describe_fields


class ContactRoutes(RecordRoutes):
    path = "/api/v1/contacts"
    tags = ["contacts"]
    resource = CONTACT.resource
    description = describe_fields(CONTACT)
