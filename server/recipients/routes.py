"""``/notices/acknowledge/<token>``: where a recipient confirms it acted on an Art. 19
notice. No staff session: the token in the path is the credential (exempt from the
admin's CSRF check like the consent links). A GET only shows a button; the acknowledgement
happens on POST, so mail scanners that fetch links acknowledge nothing."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from server.recipients.service import Recipients
from server.web import services_of

MAX_TOKEN = 120


def _page(request: Request[Any, Any, Any], status: int = 200, **context: Any) -> Template:
    controller = services_of(request).settings.controller_name
    return Template(
        template_name="consent/acknowledge.html",
        context={"controller": controller, **context},
        status_code=status,
    )


class NoticeAcknowledgement(Controller):
    path = "/notices/acknowledge"
    include_in_schema = False

    @get("/{token:str}")
    async def show(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        recipients: NamedDependency[Recipients],
    ) -> Template:
        tokens = recipients.tokens
        if len(token) > MAX_TOKEN or tokens.notice_of(token) is None:
            return _page(request, 404, title="Link not valid", valid=False)
        return _page(request, title="Confirm the notice", valid=True, token=token, done=False)

    @post("/{token:str}", status_code=200)
    async def acknowledge(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        recipients: NamedDependency[Recipients],
    ) -> Template:
        if len(token) > MAX_TOKEN or not await recipients.acknowledge(token):
            return _page(request, 404, title="Link not valid", valid=False)
        return _page(request, title="Thank you", valid=True, token=token, done=True)
