"""``/api/v1/imports``: a CSV import as a background job over REST - upload (the file's
text in a JSON body), poll its progress, fetch its report. The same path as the admin's
import wizard: the file is parsed and checked in the request (a file that cannot be
imported at all is refused with 400), the rows go in through ``Gateway.create_many`` (the
policy decides what the caller may create and set; every batch is audited). Who may
import at all is the policy's ``import run``. Job answers hold counts, line numbers,
field names and reasons, never a value from the file."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from server.auth.service import StaffIdentity
from server.csvio.importer import PURPOSE, ImportRefused, parse_mapping, read_rows, record_type
from server.csvio.jobs import ImportJobs, JobView
from server.datamap import FieldKind
from server.gateway import Actor, InvalidInput
from server.web import policy_guard, provide_actor, provide_identity, services_of

NO_ACCESS = "your role may not import records"
MAX_CSV_CHARS = 900_000  # inside the API's 1 MB body limit


class ImportIn(msgspec.Struct, forbid_unknown_fields=True):
    record_type: Literal["contact", "organization", "lead"]
    csv: str
    mapping: dict[str, str] = {}  # column name -> field name, or "-" to skip it
    dry_run: bool = False


class ImportJobOut(msgspec.Struct):
    id: str
    record_type: str
    dry_run: bool
    status: str  # running | done | failed | interrupted
    total_rows: int
    processed_rows: int
    percent: int
    created: int
    skipped: int
    bad_lines: int
    error: str
    started_at: str
    finished_at: str | None


class ReportEntry(msgspec.Struct):
    line: int
    field: str
    reason: str


class ImportReportOut(msgspec.Struct):
    job: ImportJobOut
    summary: str
    ignored_columns: dict[str, str]
    entries: list[ReportEntry]
    entries_total: int  # the job keeps the first entries; the counts cover all


def _job(view: JobView) -> ImportJobOut:
    return ImportJobOut(
        view.id,
        view.resource,
        view.dry_run,
        view.status,
        view.total_rows,
        view.processed_rows,
        view.percent,
        view.created,
        view.skipped,
        view.bad_lines,
        view.error,
        view.started_at.isoformat(),
        view.finished_at.isoformat() if view.finished_at else None,
    )


def _jobs(request: Request[Any, Any, Any]) -> ImportJobs:
    """The guard (``import run``) has already let the caller in."""
    return ImportJobs(services_of(request).gateway)


async def _view(jobs: ImportJobs, job_id: UUID) -> JobView:
    view = await jobs.get(str(job_id))
    if view is None:
        raise NotFoundException("import job not found")
    return view


class ImportRoutes(Controller):
    path = "/api/v1/imports"
    tags = ["imports"]
    guards = [policy_guard("import", "run", NO_ACCESS)]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        description=(
            "Start an import of `contact`, `organization` or `lead` records from a CSV file's "
            "text (UTF-8; `,` `;` or tab separated; the first line names the columns). "
            "Columns named after a field (or its label) are matched; `mapping` maps other "
            'column names to fields (`"-"` skips a column). Rows already present are skipped, '
            "so uploading a file again creates nothing twice. `dry_run` checks every row and "
            "creates nothing. Answers 202 with the job; poll `GET /api/v1/imports/{id}`."
        ),
    )
    async def start_import(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        actor: NamedDependency[Actor],
        data: JSONBody[ImportIn],
    ) -> ImportJobOut:
        jobs = _jobs(request)
        if len(data.csv) > MAX_CSV_CHARS:
            raise InvalidInput(f"csv: at most {MAX_CSV_CHARS:,} characters")
        rt = record_type(data.record_type)
        settable = jobs.gateway.permitted_fields(actor, rt.resource, "create", purpose=PURPOSE)
        allowed = frozenset(
            f.name
            for f in rt.fields
            if f.name in (settable or ()) and f.kind is not FieldKind.REFERENCE
        )
        try:
            mapping = parse_mapping([f"{k}={v}" for k, v in data.mapping.items()], rt)
            plan, rows = read_rows(data.csv.encode(), rt, mapping, allowed)
        except ImportRefused as exc:
            raise InvalidInput(str(exc).replace("--map", "mapping")) from None
        job_id = await jobs.start(actor, rt.resource, plan, rows, dry_run=data.dry_run)
        return _job(await _view(jobs, UUID(job_id)))

    @get("/{job_id:uuid}", description="How far an import job has got.")
    async def get_import(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        job_id: FromPath[UUID],
    ) -> ImportJobOut:
        return _job(await _view(_jobs(request), job_id))

    @get(
        "/{job_id:uuid}/report",
        description=(
            "An import job's report: the summary, the columns ignored and why, and the rows "
            "skipped or refused by line number, field name and reason (never a value)."
        ),
    )
    async def get_report(
        self,
        request: Request[Any, Any, Any],
        identity: NamedDependency[StaffIdentity],
        job_id: FromPath[UUID],
    ) -> ImportReportOut:
        view = await _view(_jobs(request), job_id)
        return ImportReportOut(
            _job(view),
            view.summary(),
            view.ignored_columns,
            [ReportEntry(line, name, reason) for line, name, reason in view.report],
            view.report_entries,
        )
