"""``create_app()``: the one place the Litestar application is composed."""

from __future__ import annotations

import asyncio
import traceback

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.types import ControllerRouterHandler, Scope

from admin_ui.plugin import AdminUI
from server import db
from server.auth.routes import AuthRoutes
from server.auth.staff_routes import StaffRoutes
from server.background import BackgroundJobs
from server.campaigns.routes import CampaignRoutes, SegmentRoutes
from server.compliance.audit_api import AuditRoutes
from server.compliance.routes import ComplianceRoutes
from server.consent.api import ConsentRegistryRoutes, PersonConsentRoutes
from server.consent.routes import ConsentLinks
from server.contacts.routes import ContactMergeRoutes, ContactRoutes
from server.crm.routes import CaseRoutes, DealRoutes, InteractionRoutes, NoteRoutes, TaskRoutes
from server.csvio.routes import ImportRoutes
from server.dsr.api import RequestRoutes
from server.feedback.portal import PortalSurvey
from server.feedback.routes import FeedbackRoutes
from server.forecast.routes import ForecastRoutes
from server.gateway import GatewayError
from server.health import health, ready
from server.knowledge.portal import PortalHelp
from server.leads.routes import LeadConversion, LeadRoutes, PublicLeadForm
from server.logs import configure_logging, get_logger
from server.mailcapture import jobs as mail_capture
from server.mailcapture.routes import MailRecordRoutes, MailThreadRoutes
from server.organizations.routes import OrganizationRoutes
from server.pipelines.routes import PipelineRoutes
from server.portal.routes import PortalPages, PortalTransparency
from server.recipients.routes import NoticeAcknowledgement
from server.reports.builder_routes import ReportBuilderRoutes
from server.reports.routes import ReportRoutes
from server.request_guard import RequestInputGuard
from server.requests import request_id_middleware
from server.search.routes import SearchRoutes
from server.servicedesk.portal_routes import PortalCasePages
from server.services import Services, build_services, service_dependencies
from server.settings import Settings, get_settings
from server.web import document_error_answers, gateway_error_handler

MAX_BODY_BYTES = 1_000_000
log = get_logger("consentry.app")
# Everything the app serves besides the admin UI plugin's pages; also what the OpenAPI
# document is generated from (tests/server/test_api_fuzz.py lists its operations from it).
ROUTE_HANDLERS: tuple[ControllerRouterHandler, ...] = (
    health,
    ready,
    AuthRoutes,
    ContactMergeRoutes,  # /api/v1/contacts/duplicates, /merge, /api/v1/merges
    ContactRoutes,
    OrganizationRoutes,
    DealRoutes,
    InteractionRoutes,
    CaseRoutes,
    TaskRoutes,
    NoteRoutes,
    MailRecordRoutes,  # /api/v1/mail: captured e-mail (private to its owner until shared)
    MailThreadRoutes,  # /api/v1/mail/{id}/thread/share|unshare
    FeedbackRoutes,  # /api/v1/feedback: named survey answers (issue 21)
    LeadRoutes,
    LeadConversion,
    PublicLeadForm,  # a website's contact form: no staff session, rate-limited
    ComplianceRoutes,
    ReportRoutes,
    ForecastRoutes,
    ReportBuilderRoutes,  # /api/v1/reports/builder, /saved: the report builder (report view)
    StaffRoutes,  # /api/v1/staff: staff accounts (staff manage)
    PipelineRoutes,  # /api/v1/pipelines: pipelines and stages (pipeline manage)
    ImportRoutes,  # /api/v1/imports: CSV imports as jobs (import run)
    SearchRoutes,  # /api/v1/search: name search over every type
    SegmentRoutes,
    CampaignRoutes,
    ConsentLinks,
    # Issue 19: consent, data-subject requests and the audit trail over REST.
    ConsentRegistryRoutes,
    PersonConsentRoutes,
    RequestRoutes,
    AuditRoutes,
    PortalPages,  # the customer self-service portal (own cookie, no staff session)
    PortalTransparency,  # the portal's access log with proofs, and receipts
    PortalHelp,  # /portal/help: public knowledge-base articles (issue 21)
    PortalSurvey,  # /portal/survey/<token>: a CSAT or NPS answer from an e-mailed link
    PortalCasePages,  # /portal/cases: a customer's own cases (server.servicedesk)
    NoticeAcknowledgement,  # /notices/acknowledge/<token>: recipients confirm Art. 19 notices
)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Consentry API",
        version="1",
        description="Privacy-first CRM. Every call is policy-checked and audited.",
        path="/schema",
        render_plugins=[SwaggerRenderPlugin()],
    )


async def log_unhandled(exc: Exception, scope: Scope) -> None:
    """Log a 500 so operators see it - by type and code location, never by message.

    Driver and library messages can quote the data that caused them; the exception type
    and the innermost frame are enough to find the bug and cannot carry customer data.
    """
    if isinstance(exc, HTTPException | GatewayError):
        return
    frames = traceback.extract_tb(exc.__traceback__)
    where = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}:{f.name}" for f in frames[-3:]]
    log.error(
        "unhandled exception", error=type(exc).__name__, where=where, path=scope.get("path", "")
    )


def create_app(settings: Settings | None = None, services: Services | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    services = services or build_services(settings)
    engine = db.get_engine()
    jobs = BackgroundJobs(services)
    receivers: list[asyncio.Server] = []  # the SMTP receiver, when configured

    async def on_startup(app: Litestar) -> None:
        await db.start(engine, prefill=True)
        # One line an operator can check the pool against (no address, user or file).
        pool = db.pool_status(engine)
        log.info("database pool", engine=pool.engine, pool_size=pool.size, open=pool.open)
        jobs.start()
        receiver = await mail_capture.start_receiver_in_worker(services)
        receivers.extend([receiver] if receiver is not None else [])

    async def on_shutdown(app: Litestar) -> None:
        for receiver in receivers:
            receiver.close()
        await jobs.stop()
        await db.stop(engine)

    app = Litestar(
        route_handlers=list(ROUTE_HANDLERS),
        # Every service by name (gateway, campaigns, ...): handlers ask for what they use.
        dependencies=service_dependencies(),
        # Undecodable, NUL-bearing, too-deep or malformed input and non-JSON API bodies
        # are refused here, once, before any handler parses them (server.request_guard).
        middleware=[RequestInputGuard()],
        after_exception=[log_unhandled],
        exception_handlers={GatewayError: gateway_error_handler},
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        plugins=[AdminUI(settings, services)],  # the web admin: pages, CSRF, security headers
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,
        debug=False,
    )
    # Wrap the whole ASGI handler, not just the routes: Litestar's route middleware never
    # sees the router's own 404/405 answers, which must carry a request id and be logged too.
    app.asgi_handler = request_id_middleware(app.asgi_handler)
    document_error_answers(app)
    # What the service dependencies hand out, and what guards (which Litestar's dependency
    # injection does not reach) read.
    app.state.services = services
    return app
