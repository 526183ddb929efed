"""CSV import (admins) and CSV export (whoever the policy lets export) in the admin.

Import: upload a file, choose the record type, optionally map columns, and run a dry run
first. The file is parsed in the request (a file that cannot be imported at all is
refused on the spot), then imported by a background job (server.csvio.jobs) whose page
shows a progress bar and, at the end, the counts and the per-row report (line, field,
reason - never a value). Uploads are capped at :data:`MAX_UPLOAD_BYTES` (a bigger one gets
a 413 page saying so) because the rows are held in the worker's memory; bigger files go
through ``consentry import``.

Export: the list pages link here with their current filters; the page (GET) only shows
the form. The staff member picks a reason and presses the button, which POSTs the form
with its CSRF token, and the CSV streams page by page from the gateway, which decides the
fields, scopes the records and audits every page. An export is an audited action under
the staff member's name, so no GET performs one: a link from another site (even one with
``?reason=...``) only opens the form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Stream, Template
from litestar.status_codes import HTTP_303_SEE_OTHER, HTTP_400_BAD_REQUEST, HTTP_404_NOT_FOUND

from admin_ui.rendering import render
from admin_ui.security import CSRF_FIELD
from admin_ui.session import Visit, page_access, provide_visit
from server.csvio.exporter import csv_chunks
from server.csvio.importer import (
    IMPORTABLE,
    PURPOSE,
    ImportRefused,
    parse_mapping,
    read_rows,
    record_type,
)
from server.csvio.jobs import ImportJobs
from server.datamap import RECORD_TYPES
from server.gateway import GatewayError
from server.gateway.bulk import EXPORT_REASONS
from server.web import services_of

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
REFRESH_SECONDS = 2  # how often a running job's page reloads itself
EXPORT_PATHS = {
    "contacts": "contact",
    "organizations": "organization",
    "leads": "lead",
    "deals": "deal",
    "interactions": "interaction",
    "cases": "case",
    "tasks": "task",
    "notes": "note",
}


class ImportPages(Controller):
    path = "/import"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(admin_only=True)

    @get("/")
    async def form(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await self._page(request, visit)

    @post("/", request_max_body_size=MAX_UPLOAD_BYTES + 64 * 1024)
    async def run(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template | Redirect:
        """Check the upload, start the dry run or import as a job, and go to its page."""
        form = await request.form()
        resource = str(form.get("resource", ""))
        upload = form.get("file")
        dry_run = form.get("dry_run") == "on"
        mapping_text = str(form.get("mapping", ""))[:4000]
        error = ""
        if resource not in IMPORTABLE:
            error = "Choose what the file holds: contacts, organizations or leads."
        elif upload is None or isinstance(upload, str):
            error = "Choose a CSV file to upload."
        else:
            content = await upload.read()
            if len(content) > MAX_UPLOAD_BYTES:
                error = "The file is larger than 20 MB: use `consentry import` for it."
            else:
                gateway = services_of(request).gateway
                rt = record_type(resource)
                settable = gateway.permitted_fields(
                    visit.actor, resource, "create", purpose=PURPOSE
                )
                try:
                    mapping = parse_mapping(
                        [line for line in mapping_text.splitlines() if line.strip()], rt
                    )
                    plan, rows = read_rows(content, rt, mapping, settable or frozenset())
                except ImportRefused as exc:
                    error = f"The file cannot be imported: {exc}."
                else:
                    jobs = ImportJobs(gateway)
                    job_id = await jobs.start(visit.actor, resource, plan, rows, dry_run=dry_run)
                    return Redirect(f"/import/jobs/{job_id}", status_code=HTTP_303_SEE_OTHER)
        return await self._page(
            request,
            visit,
            status=HTTP_400_BAD_REQUEST,
            error=error,
            chosen=resource,
            mapping=mapping_text,
        )

    @get("/jobs/{job_id:str}")
    async def job(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], job_id: FromPath[str]
    ) -> Template:
        """How far an import has got; the page refreshes itself until the job ends."""
        view = await ImportJobs(services_of(request).gateway).get(job_id)
        if view is None:
            return await self._page(
                request,
                visit,
                status=HTTP_404_NOT_FOUND,
                error="There is no import job with that id.",
            )
        return await render(
            request,
            "imports/job.html",
            visit=visit,
            section="import",
            title=("Dry run" if view.dry_run else "Import") + f" of {view.resource}s",
            job=view,
            label=RECORD_TYPES[view.resource].label,
            refresh_seconds=REFRESH_SECONDS,
        )

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        status: int = 200,
        error: str = "",
        chosen: str = "contact",
        mapping: str = "",
    ) -> Template:
        return await render(
            request,
            "imports/import.html",
            visit=visit,
            status=status,
            section="import",
            title="Import",
            types=[(r, RECORD_TYPES[r].label) for r in IMPORTABLE],
            chosen=chosen,
            mapping=mapping,
            error=error,
            recent=await ImportJobs(services_of(request).gateway).recent(),
        )


NOT_FILTERS = {"reason", "page", "page_size", "sort", "id", CSRF_FIELD}
MAX_PICKED = 100  # "export selected": at most a list page's worth


class ExportPages(Controller):
    path = "/export"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/{kind:str}")
    async def export_form(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], kind: FromPath[str]
    ) -> Template:
        """The form asking for a reason, carrying the list page's filters. Nothing else,
        whatever the query says: exporting is the POST below."""
        filters = {k: v for k, v in request.query_params.items() if k not in NOT_FILTERS}
        return await export_page(request, visit, kind, filters)

    @post("/{kind:str}", status_code=200)
    async def export(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], kind: FromPath[str]
    ) -> Template | Stream:
        """The CSV file, for a reason from the list (the CSRF middleware has checked the
        form's token before this runs)."""
        resource = EXPORT_PATHS.get(kind)
        if resource is None:
            return await export_page(request, visit, kind, {})
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        filters = {k: v for k, v in fields.items() if k not in NOT_FILTERS}
        # "Export selected" on a list page: the ticked records (in scope, as ever).
        picked = tuple(v for v in form.getall("id", []) if isinstance(v, str))[:MAX_PICKED]
        reason = fields.get("reason", "")
        if not reason:
            return await export_page(
                request,
                visit,
                kind,
                filters,
                error="Choose the reason for the export.",
                picked=picked,
            )
        try:
            export = await services_of(request).gateway.start_export(
                visit.actor,
                resource,
                reason=reason,
                filters={**filters, "id": list(picked)} if picked else filters,
            )
        except GatewayError as exc:
            return await export_page(
                request, visit, kind, filters, error=exc.message, picked=picked
            )
        return Stream(
            csv_chunks(export),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{kind}.csv"',
                "Cache-Control": "no-store",
            },
        )


async def export_page(
    request: Request[Any, Any, Any],
    visit: Visit,
    kind: str,
    filters: dict[str, str],
    *,
    error: str = "",
    picked: Sequence[str] = (),
) -> Template:
    """The export form; 404 for an unknown kind, 400 with the reason an export was refused."""
    if kind not in EXPORT_PATHS:
        return await render(
            request,
            "imports/export.html",
            visit=visit,
            status=HTTP_404_NOT_FOUND,
            title="Export",
            section="",
            kind=kind,
            reasons=EXPORT_REASONS,
            filters={},
            known=False,
            error="There is nothing to export by that name.",
        )
    return await render(
        request,
        "imports/export.html",
        visit=visit,
        status=HTTP_400_BAD_REQUEST if error else 200,
        title=f"Export {kind}",
        section="",
        kind=kind,
        reasons=EXPORT_REASONS,
        filters=filters,
        known=True,
        error=error,
        picked=picked,
    )
