"""``AdminUI``: plugs the web admin into the application built by ``create_app()``.

Adds the page controllers, the Jinja templates, the static files (our own and the pinned
npm packages in ``admin_ui/node_modules``), CSRF protection for everything but the JSON
API and probes, the security headers and the HTML error pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Response, Router, get
from litestar.config.app import AppConfig
from litestar.exceptions import HTTPException
from litestar.plugins import InitPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from admin_ui import display
from admin_ui.pages.account import (
    account,
    change_password,
    change_time_zone,
    end_session,
    enrol,
    security,
)
from admin_ui.pages.alerts import AlertPages
from admin_ui.pages.calendar import CalendarPages
from admin_ui.pages.campaigns import CampaignPages
from admin_ui.pages.compliance import CompliancePages
from admin_ui.pages.consent import ConsentPages
from admin_ui.pages.customer360 import CustomerPages
from admin_ui.pages.dashboard import dashboard
from admin_ui.pages.duplicates import DuplicatePages
from admin_ui.pages.erasure import ErasurePages
from admin_ui.pages.feedback import FeedbackPages
from admin_ui.pages.forecast import ForecastPages
from admin_ui.pages.funnel import FunnelPages
from admin_ui.pages.holds import HoldPages
from admin_ui.pages.imports import ExportPages, ImportPages
from admin_ui.pages.integrations import RecipientPages, WebhookPages
from admin_ui.pages.knowledge import KnowledgePages
from admin_ui.pages.leads import LeadConvertPages
from admin_ui.pages.mailboxes import MailboxPages
from admin_ui.pages.my_day import MyDayPages
from admin_ui.pages.notes import NotePanel
from admin_ui.pages.pipeline import BoardPages, PipelineSettingsPages
from admin_ui.pages.processing_record import ProcessingRecordPage
from admin_ui.pages.records_routes import every_record_type_pages
from admin_ui.pages.release import ReleasePages
from admin_ui.pages.report_builder import ReportBuilderPages
from admin_ui.pages.reports import ReportPages
from admin_ui.pages.requests import RequestPages
from admin_ui.pages.search import SearchPages
from admin_ui.pages.service_desk import ServiceDeskPages
from admin_ui.pages.sign_in import SignInPages
from admin_ui.pages.tokens import TokenPages
from admin_ui.pages.users import UserPages
from admin_ui.rendering import gateway_error_handler, http_error_handler, redirect_handler
from admin_ui.security import csrf_config, security_headers
from admin_ui.session import PageRedirect
from server.gateway import GatewayError
from server.services import Services, load_session_secret
from server.settings import Settings

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
NODE_MODULES = HERE / "node_modules"  # `npm ci` in admin_ui/; optional (pages work without)
VENDOR = {  # URL folder under /static/vendor/ -> folder of an installed npm package
    "pico": NODE_MODULES / "@picocss" / "pico" / "css",
    "htmx": NODE_MODULES / "htmx.org" / "dist",
    "chartjs": NODE_MODULES / "chart.js" / "dist",
}


def template_engine() -> JinjaTemplateEngine:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    display.install(environment)
    return JinjaTemplateEngine.from_environment(environment)


def admin_router() -> Router:
    """Every admin page, with HTML answers for gateway refusals and redirects."""
    return Router(
        path="/",
        route_handlers=[
            dashboard,
            SignInPages,
            account,
            change_password,
            change_time_zone,
            end_session,
            security,
            enrol,
            UserPages,
            TokenPages,  # /account/tokens, /admin/service-accounts (API tokens)
            CompliancePages,
            AlertPages,
            ConsentPages,
            RequestPages,
            ErasurePages,  # /compliance/requests/{id}/erase
            ReleasePages,  # /compliance/requests/{id}/release
            HoldPages,
            ProcessingRecordPage,
            ReportPages,
            ForecastPages,  # /forecast (issue 20)
            FunnelPages,  # /campaigns/funnel (issue 20)
            ReportBuilderPages,
            ImportPages,  # /import (admins)
            ExportPages,  # /export/{kind}
            CustomerPages,  # /contacts/{id}/360
            DuplicatePages,  # /contacts/duplicates, /merges
            # /contacts, /deals, ...: every record type with a page_path in the data map
            *every_record_type_pages(),
            MyDayPages,
            NotePanel,  # POST /notes/add, from any record's notes panel
            MailboxPages,  # /mailboxes, /mail/{id}/thread (issue 21: mailbox capture)
            LeadConvertPages,
            BoardPages,  # /pipeline
            PipelineSettingsPages,  # /admin/pipelines
            WebhookPages,  # /admin/webhooks
            RecipientPages,  # /admin/recipients (Art. 19 register)
            CampaignPages,  # /campaigns: segments and campaigns (marketing, admin)
            KnowledgePages,  # /knowledge: the knowledge base (issue 21)
            CalendarPages,  # /calendar/import: meetings from .ics files or CalDAV (issue 21)
            FeedbackPages,  # /feedback: CSAT and NPS results, NPS surveys (issue 21)
            SearchPages,  # /search: the header search box, its results, record pickers
            ServiceDeskPages,  # /desk: queues, case conversations, SLA, request flags
        ],
        exception_handlers={
            GatewayError: gateway_error_handler,
            PageRedirect: redirect_handler,
        },
        include_in_schema=False,
    )


@get("/favicon.ico", include_in_schema=False, cache=86_400, media_type="image/svg+xml")
async def favicon() -> Response[bytes]:
    """Browsers ask for /favicon.ico whatever the page links to (the portal, the API
    docs, a PDF viewer); answer with the same small SVG icon instead of a 404."""
    return Response((STATIC / "favicon.svg").read_bytes(), media_type="image/svg+xml")


def static_routers() -> list[Router | Any]:
    routers: list[Router | Any] = [
        create_static_files_router("/static", [STATIC], name="admin-static"),
        favicon,
    ]
    routers += [
        create_static_files_router(f"/static/vendor/{name}", [folder], name=f"vendor-{name}")
        for name, folder in VENDOR.items()
    ]
    return routers


class AdminUI(InitPlugin):
    """The staff web admin. Register with ``Litestar(plugins=[AdminUI(settings, services)])``."""

    __slots__ = ("services", "settings")

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.services = services

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend([admin_router(), *static_routers()])
        app_config.template_config = TemplateConfig(instance=template_engine())
        app_config.csrf_config = csrf_config(
            load_session_secret(self.services.settings),
            cookie_secure=self.settings.cookie_secure,
        )
        app_config.before_send.append(security_headers(https=self.settings.cookie_secure))
        app_config.exception_handlers.setdefault(HTTPException, http_error_handler)
        return app_config
