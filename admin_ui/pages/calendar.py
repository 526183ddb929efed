"""Calendar import in the admin (``/calendar/import``): upload an .ics file or give the URL
of a CalDAV calendar (or any published .ics); each meeting with known attendees becomes
an interaction (or a note on a lead). Needs ``calendar import`` (policy); what is created
and whom an address may match is the gateway's decision for the importing user.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.response import Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.rendering import render
from admin_ui.session import Visit, page_access, provide_visit
from server.calendar.ics import MAX_ICS_BYTES, CalendarError
from server.calendar.service import CalendarImport, ImportReport, calendar_import
from server.gateway import Forbidden, GatewayError
from server.web import services_of

BASE = "/calendar/import"


def _importer(request: Request[Any, Any, Any], visit: Visit) -> CalendarImport:
    importer = calendar_import(services_of(request))
    if not importer.may_import(visit.identity.role):
        raise Forbidden("your role may not import calendars")
    return importer


class CalendarPages(Controller):
    path = BASE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        report: ImportReport | None = None,
        error: str = "",
        url: str = "",
    ) -> Template:
        return await render(
            request,
            "calendar/import.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if error else 200,
            title="Import meetings",
            report=report,
            error=error,
            url=url,
            max_mb=MAX_ICS_BYTES // 1_000_000,
        )

    @get("/")
    async def form(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        _importer(request, visit)
        return await self._page(request, visit)

    @post("/", request_max_body_size=MAX_ICS_BYTES + 64 * 1024, status_code=200)
    async def run(self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]) -> Template:
        importer = _importer(request, visit)
        form = await request.form()
        upload = form.get("file")
        url = str(form.get("url") or "").strip()[:2000]
        try:
            if upload is not None and not isinstance(upload, str) and upload.filename:
                report = await importer.import_ics(visit.actor, await upload.read())
            elif url:
                report = await importer.import_url(visit.actor, url)
            else:
                return await self._page(
                    request, visit, error="Choose an .ics file or enter a calendar URL."
                )
        except CalendarError as exc:
            return await self._page(request, visit, error=f"Nothing was imported: {exc}.", url=url)
        except GatewayError as exc:
            return await self._page(
                request, visit, error=f"Nothing was imported: {exc.message}.", url=url
            )
        return await self._page(request, visit, report=report)
