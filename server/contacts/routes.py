from __future__ import annotations

from server.datamap import CONTACT
from server.records.routes import record_routes

ContactRoutes = record_routes(CONTACT, "/api/v1/contacts", "contacts")
