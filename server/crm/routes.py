from __future__ import annotations

from server.datamap import CASE, DEAL, INTERACTION, NOTE, TASK
from server.records.routes import record_routes

DealRoutes = record_routes(DEAL, "/api/v1/deals", "deals")
InteractionRoutes = record_routes(INTERACTION, "/api/v1/interactions", "interactions")
CaseRoutes = record_routes(CASE, "/api/v1/cases", "cases")
# Tasks: filter with ?owner_id=&status=open&due_at_before=<ISO 8601> for a to-do list.
TaskRoutes = record_routes(TASK, "/api/v1/tasks", "tasks")
# Notes: ?record_type=deal&record_id=<id> lists the notes on one record, newest first.
NoteRoutes = record_routes(NOTE, "/api/v1/notes", "notes")
