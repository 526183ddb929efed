"""The start page: who you are and how many records you can reach."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency, Provide
from litestar.response import Template

from admin_ui.rendering import render
from admin_ui.session import Visit, page_access, provide_visit
from server.gateway import GatewayError
from server.web import services_of

COUNTED = (
    ("contact", "Contacts", "/contacts"),
    ("organization", "Organizations", "/organizations"),
)


@get(
    "/",
    include_in_schema=False,
    dependencies={"visit": Provide(provide_visit)},
    opt=page_access(),
)
async def dashboard(request: Request[Any, Any, Any], visit: NamedDependency[Visit]) -> Template:
    """Counts come from the gateway: the user's scope, audited as counts (no customer is
    touched, so opening the start page never shows up in anyone's access report)."""
    gateway = services_of(request).gateway
    counts = []
    for resource, label, path in COUNTED:
        try:
            total: int | None = await gateway.count(visit.actor, resource)
        except GatewayError:
            total = None
        counts.append({"label": label, "path": path, "total": total})
    return await render(
        request,
        "dashboard.html",
        visit=visit,
        section="dashboard",
        title="Dashboard",
        counts=counts,
        purpose=gateway.default_purpose(visit.identity.role),
    )
