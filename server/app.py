"""``create_app()``: the one place the Litestar application is composed."""

from __future__ import annotations

from litestar import Litestar
from litestar.config.response_cache import ResponseCacheConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from server import db
from server.auth.routes import AuthRoutes
from server.contacts.routes import ContactRoutes
from server.gateway import GatewayError
from server.health import health, ready
from server.logs import configure_logging
from server.organizations.routes import OrganizationRoutes
from server.requests import request_id_middleware
from server.services import Services, build_services
from server.settings import Settings, get_settings
from server.web import gateway_error_handler

MAX_BODY_BYTES = 1_000_000


def create_app(settings: Settings | None = None, services: Services | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    services = services or build_services(settings)
    engine = db.get_engine()

    async def on_startup(app: Litestar) -> None:
        await db.start(engine)

    async def on_shutdown(app: Litestar) -> None:
        await db.stop(engine)

    app = Litestar(
        route_handlers=[health, ready, AuthRoutes, ContactRoutes, OrganizationRoutes],
        middleware=[request_id_middleware],
        exception_handlers={GatewayError: gateway_error_handler},
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        openapi_config=OpenAPIConfig(
            title="Consentry API",
            version="1",
            description="Privacy-first CRM. Every call is policy-checked and audited.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        request_max_body_size=MAX_BODY_BYTES,
        response_cache_config=ResponseCacheConfig(),
        logging_config=None,
        debug=False,
    )
    app.state.services = services
    return app
