"""``/portal/survey/<token>``: the page an e-mailed survey link opens. The link is the
credential (like an unsubscribe link): it works once, for a limited time, without signing
in. Opening it records nothing (mail scanners fetch links); the answer is a POST."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from server.feedback.service import (
    MAX_COMMENT,
    Feedback,
    SurveyError,
    SurveyInfo,
    scale_labels,
)
from server.web import services_of

LINK_INVALID_STATUS = 410


def _page(
    request: Request[Any, Any, Any], template: str, status: int = 200, **context: Any
) -> Template:
    settings = services_of(request).settings
    return Template(
        template_name=f"portal/{template}",
        context={
            "controller": settings.controller_name,
            "controller_contact": settings.controller_contact,
            "signed_in": False,
            **context,
        },
        status_code=status,
    )


def _invalid(request: Request[Any, Any, Any], message: str) -> Template:
    return _page(
        request, "survey_invalid.html", LINK_INVALID_STATUS, title="Link not valid", message=message
    )


def _form(
    request: Request[Any, Any, Any],
    token: str,
    survey: SurveyInfo,
    *,
    error: str = "",
    status: int = 200,
) -> Template:
    labels = scale_labels(survey.kind)
    return _page(
        request,
        "survey.html",
        status,
        title=survey.name,
        survey=survey,
        choices=list(zip(survey.scale, labels, strict=True)),
        action=f"/portal/survey/{token}",
        error=error,
        max_comment=MAX_COMMENT,
    )


class PortalSurvey(Controller):
    path = "/portal/survey"
    include_in_schema = False

    @get("/{token:str}")
    async def show(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        feedback: NamedDependency[Feedback],
    ) -> Template:
        try:
            survey = await feedback.open_invitation(token[:100])
        except SurveyError as exc:
            return _invalid(request, exc.message)
        return _form(request, token, survey)

    @post("/{token:str}", status_code=200)
    async def answer(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        feedback: NamedDependency[Feedback],
    ) -> Template:
        form = await request.form()
        score = form.get("score", "")
        comment = form.get("comment", "")
        try:
            survey = await feedback.answer(
                token[:100],
                score if isinstance(score, str) else "",
                comment[: MAX_COMMENT + 1] if isinstance(comment, str) else "",
            )
        except SurveyError as exc:
            if exc.code == "bad_input":
                try:
                    survey = await feedback.open_invitation(token[:100])
                except SurveyError as gone:
                    return _invalid(request, gone.message)
                return _form(request, token, survey, error=exc.message, status=400)
            return _invalid(request, exc.message)
        return _page(request, "survey_thanks.html", title="Thank you", survey=survey)
