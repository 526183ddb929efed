"""Legal holds in the compliance console: the holds in force, adding one (reason code and
end date from fixed lists) and releasing one. Compliance officers only (404 otherwise).

Every change goes through :class:`server.dsr.holds.LegalHolds`, which audits it; the form
offers codes only, so nothing typed reaches the audit log but a subject id and a date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from admin_ui.rendering import flash, render, see_other
from admin_ui.rights import DSR_RIGHT
from admin_ui.session import Visit, page_access, provide_visit
from server.dsr.erasure import Erasure
from server.dsr.holds import REASONS, HoldError, scopes

BASE = "/compliance/holds"


def _text(form: Any, name: str, limit: int = 64) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


class HoldPages(Controller):
    path = BASE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=DSR_RIGHT)

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        erasure: NamedDependency[Erasure],
    ) -> Template:
        """The holds in force, soonest end first, and the form to add one."""
        show_all = request.query_params.get("show") == "all"
        holds = await erasure.holds.all(include_ended=show_all)
        return await render(
            request,
            "compliance/holds.html",
            visit=visit,
            section="compliance",
            title="Legal holds",
            holds=holds,
            show_all=show_all,
            reasons=REASONS,
            scopes=scopes(),
        )

    @post("/")
    async def add(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        erasure: NamedDependency[Erasure],
    ) -> Redirect:
        form = await request.form()
        try:
            until = dt.date.fromisoformat(_text(form, "held_until", 10))
        except ValueError:
            await flash(request, visit, "Not added: enter the last day as YYYY-MM-DD.", "error")
            return see_other(BASE)
        try:
            await erasure.holds.add(
                _text(form, "subject_id"),
                _text(form, "scope"),
                _text(form, "reason"),
                until,
                by=visit.actor.id,
                by_role=visit.identity.role,
            )
        except HoldError as exc:
            await flash(request, visit, f"Not added: {exc.message}.", "error")
        else:
            await flash(request, visit, "Hold added.")
        return see_other(BASE)

    @post("/{hold_id:str}/release")
    async def release(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        hold_id: FromPath[str],
        *,
        erasure: NamedDependency[Erasure],
    ) -> Redirect:
        try:
            await erasure.holds.release(
                hold_id[:64], by=visit.actor.id, by_role=visit.identity.role
            )
        except HoldError as exc:
            await flash(request, visit, f"Not released: {exc.message}.", "error")
        else:
            await flash(
                request, visit, "Hold released; the next retention run finishes the erasure."
            )
        return see_other(BASE)
