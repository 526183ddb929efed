"""The record of processing activities (Art. 30) as a page for compliance officers and
admins, generated on every view from the data map, the policy and the settings.

Roles without ``processing_record read`` in the policy get 404. The same record is
available as JSON at ``/api/v1/compliance/record-of-processing``.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.response import Template

from admin_ui.rendering import render
from admin_ui.rights import CONSOLE_RIGHT, PROCESSING_RECORD_RIGHT
from admin_ui.session import Visit, page_access, provide_visit
from policy.enforcer import PolicyEngine
from server.processing_record import build_record
from server.settings import Settings


class ProcessingRecordPage(Controller):
    path = "/compliance/record-of-processing"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=PROCESSING_RECORD_RIGHT)

    @get("/")
    async def show(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        policy: NamedDependency[PolicyEngine],
        settings: NamedDependency[Settings],
    ) -> Template:
        if not policy.allows(visit.identity.role, "processing_record", "read"):
            raise NotFoundException()
        record = build_record(settings, policy)
        return await render(
            request,
            "compliance/record_of_processing.html",
            visit=visit,
            section="compliance",
            title="Record of processing activities",
            record=record,
            in_console=policy.allows(visit.identity.role, *CONSOLE_RIGHT),
        )
