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
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Stream, Template
from litestar.status_codes import HTTP_303_SEE_OTHER, HTTP_400_BAD_REQUEST, HTTP_404_NOT_FOUND

from admin_ui.rendering import flash, render, see_other
from admin_ui.rights import IMPORT_RIGHT
from admin_ui.security import CSRF_FIELD
from admin_ui.session import Visit, page_access, provide_visit
from server.csvio.exporter import csv_chunks
from server.csvio.importer import (
    IGNORE,
    IMPORTABLE,
    PURPOSE,
    ImportRefused,
    import_rows,
    peek,
    read_rows,
    record_type,
)
from server.csvio.jobs import ImportJobs
from server.csvio.mapping import squash, suggest
from server.csvio.uploads import UploadGone, UploadStore
from server.datamap import RECORD_TYPES, FieldKind, RecordType
from server.gateway import Gateway, GatewayError
from server.gateway.bulk import EXPORT_REASONS
from server.web import services_of

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
REFRESH_SECONDS = 2  # how often a running job's page reloads itself
PREVIEW_ROWS = 5  # rows shown on the mapping screen
REPORT_SHOWN = 200  # report entries shown on the dry run's page
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
    opt = page_access(right=IMPORT_RIGHT)

    @get("/")
    async def form(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await self._page(request, visit)

    @post("/", request_max_body_size=MAX_UPLOAD_BYTES + 64 * 1024)
    async def upload(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Step 1: take the file, keep it (encrypted) for the next steps, show the mapping."""
        form = await request.form()
        resource = str(form.get("resource", ""))
        upload = form.get("file")
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
                try:
                    header, sample = peek(content, PREVIEW_ROWS)
                except ImportRefused as exc:
                    error = f"The file cannot be imported: {exc}."
                else:
                    upload_id, key = _store(request).put(content, visit.actor.id)
                    wizard = Wizard(resource, upload_id, key, header, sample)
                    targets = suggest(
                        record_type(resource), header, _allowed(request, visit, wizard)
                    )
                    return await self._mapping(request, visit, wizard, targets)
        return await self._page(
            request, visit, status=HTTP_400_BAD_REQUEST, error=error, chosen=resource
        )

    @post("/mapping")
    async def mapping(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template | Redirect:
        """Steps 2 to 4: check the mapping, show the dry run's report, then import."""
        form = await request.form()
        resource = str(form.get("resource", ""))
        upload_id, key = str(form.get("upload", ""))[:64], str(form.get("key", ""))[:64]
        action = str(form.get("action", ""))
        store = _store(request)
        if action == "cancel":
            store.discard(upload_id)
            await flash(request, visit, "Import cancelled; the uploaded file was deleted.", "info")
            return see_other("/import")
        try:
            if resource not in IMPORTABLE:
                raise UploadGone()
            content = store.get(upload_id, key, visit.actor.id)
            header, sample = peek(content, PREVIEW_ROWS)
        except (UploadGone, ImportRefused):
            return await self._page(
                request,
                visit,
                status=HTTP_400_BAD_REQUEST,
                error="That upload is no longer here (it was imported, cancelled or more than "
                "an hour old). Upload the file again.",
                chosen=resource if resource in IMPORTABLE else "contact",
            )
        wizard = Wizard(resource, upload_id, key, header, sample)
        rt = record_type(resource)
        allowed = _allowed(request, visit, wizard)
        targets: dict[int, str | None] = {}
        for position in range(len(header)):
            picked = str(form.get(f"column_{position}", ""))
            targets[position] = picked if picked in allowed else None
        if action == "back":
            return await self._mapping(request, visit, wizard, targets)
        problems = mapping_problems(rt, header, targets)
        if problems:
            return await self._mapping(request, visit, wizard, targets, problems=problems)
        chosen = {squash(name): targets[i] or IGNORE for i, name in enumerate(header)}
        try:
            plan, rows = read_rows(content, rt, chosen, allowed)
        except ImportRefused as exc:
            return await self._mapping(request, visit, wizard, targets, problems=[f"{exc}."])
        if action == "import":
            store.discard(upload_id)
            job_id = await ImportJobs(gateway).start(
                visit.actor, resource, plan, rows, dry_run=False
            )
            return Redirect(f"/import/jobs/{job_id}", status_code=HTTP_303_SEE_OTHER)
        report = await import_rows(gateway, visit.actor, resource, plan, rows, dry_run=True)
        return await render(
            request,
            "imports/review.html",
            visit=visit,
            section="import",
            title="Check the import",
            wizard=wizard,
            targets=targets,
            labels={f.name: f.label for f in rt.fields},
            report=report,
            entries=report.report_rows()[:REPORT_SHOWN],
            plural=_plural(resource),
        )

    @get("/jobs/{job_id:str}")
    async def job(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        job_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template:
        """How far an import has got; the page refreshes itself until the job ends."""
        view = await ImportJobs(gateway).get(job_id)
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

    async def _mapping(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        wizard: Wizard,
        targets: dict[int, str | None],
        *,
        problems: list[str] | None = None,
    ) -> Template:
        rt = record_type(wizard.resource)
        allowed = _allowed(request, visit, wizard)
        readable = (
            services_of(request).gateway.permitted_fields(
                visit.actor, wizard.resource, "read", purpose=PURPOSE
            )
            or frozenset()
        )
        return await render(
            request,
            "imports/mapping.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if problems else 200,
            section="import",
            title="Match the columns",
            wizard=wizard,
            targets=targets,
            options=[(f.name, f.label, f.required) for f in rt.fields if f.name in allowed],
            # The preview shows a column's values only where they go to a field this role
            # may read (an admin: all of them). Never logged, never stored.
            shown={i for i, t in targets.items() if t is not None and t in readable},
            problems=problems or [],
            plural=_plural(wizard.resource),
        )

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        status: int = 200,
        error: str = "",
        chosen: str = "contact",
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
            error=error,
            recent=await ImportJobs(services_of(request).gateway).recent(),
        )


@dataclass(frozen=True)
class Wizard:
    """What the wizard's form carries from step to step (the file itself stays on the
    server, encrypted under ``key``, which only the browser holds)."""

    resource: str
    upload_id: str
    key: str
    header: list[str]
    sample: list[list[str]]


def _store(request: Request[Any, Any, Any]) -> UploadStore:
    return UploadStore(services_of(request).settings.home / "uploads")


def _plural(resource: str) -> str:
    return RECORD_TYPES[resource].label.lower() + "s"


def _allowed(request: Request[Any, Any, Any], visit: Visit, wizard: Wizard) -> frozenset[str]:
    """Fields a column may go to: settable by this role on create, and not references
    (ids of another system mean nothing here)."""
    settable = services_of(request).gateway.permitted_fields(
        visit.actor, wizard.resource, "create", purpose=PURPOSE
    )
    rt = record_type(wizard.resource)
    return frozenset(
        f.name
        for f in rt.fields
        if f.name in (settable or ()) and f.kind is not FieldKind.REFERENCE
    )


def mapping_problems(
    rt: RecordType, header: list[str], targets: dict[int, str | None]
) -> list[str]:
    """What is wrong with a mapping, in the words of the mapping screen."""
    problems: list[str] = []
    by_field: dict[str, list[str]] = {}
    for position, target in targets.items():
        if target is not None:
            by_field.setdefault(target, []).append(header[position] or f"column {position + 1}")
    for target, columns in by_field.items():
        if len(columns) > 1:
            problems.append(
                f"{rt.by_name[target].label}: choose one column (now "
                + " and ".join(f"“{c}”" for c in columns)
                + ")."
            )
    for spec in rt.fields:
        if spec.required and spec.default is None and spec.name not in by_field:
            problems.append(f"{spec.label} is required: choose the column that holds it.")
    return problems


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
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        kind: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
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
            export = await gateway.start_export(
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
