"""Survey results and NPS surveys in the admin (``/feedback``).

Results (``feedback_report view``) are read from counts that name nobody, with the
small-group rule applied (server.feedback). Creating an NPS survey (``survey manage``)
ties it to an e-mail campaign whose text holds ``{survey_link}``; the campaign's own send,
consent-gated, then mails each person their link.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.response import Redirect, Template

from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.feedback.service import Feedback, scale_labels
from server.gateway import Forbidden, InvalidInput
from server.web import services_of

BASE = "/feedback"


def _feedback(request: Request[Any, Any, Any], visit: Visit) -> Feedback:
    feedback = services_of(request).feedback
    if not feedback.may_view(visit.identity.role):
        raise Forbidden("your role may not see survey results")
    return feedback


class FeedbackPages(Controller):
    path = BASE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        error: InvalidInput | None = None,
        values: dict[str, str] | None = None,
    ) -> Template:
        feedback = _feedback(request, visit)
        results = [await feedback.results(visit.actor, s.id) for s in await feedback.surveys()]
        may_manage = feedback.may_manage(visit.identity.role)
        campaigns = []
        services = services_of(request)
        if may_manage and services.campaigns.may_manage(visit.identity.role):
            campaigns = [
                c
                for c in await services.campaigns.campaigns(visit.actor)
                if c.channel == "email" and c.status == "draft"
            ]
        return await render(
            request,
            "feedback/index.html",
            visit=visit,
            status=400 if error else 200,
            title="Feedback",
            results=results,
            labels={kind: scale_labels(kind) for kind in ("csat", "nps")},
            may_manage=may_manage,
            campaigns=campaigns,
            error=error,
            values=values or {},
        )

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        return await self._page(request, visit)

    @post("/surveys", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template | Redirect:
        feedback = _feedback(request, visit)
        form = await request.form()
        values = {k: v[:400] for k, v in form.items() if isinstance(v, str)}
        try:
            await feedback.create_nps_survey(visit.actor, values)
        except InvalidInput as exc:
            return await self._page(request, visit, error=exc, values=values)
        await flash(
            request,
            visit,
            "Survey created. Sending the campaign now mails each person their link.",
        )
        return see_other(BASE)
