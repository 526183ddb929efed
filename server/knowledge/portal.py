"""``/portal/help``: the public, published knowledge-base articles for signed-in customers
(issue 21, item 5), under the portal's one-time-link sign-in and cookie. Articles name
nobody, so reading them is not an audited access to personal data."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER

from server.gateway import NotFound
from server.knowledge.service import KnowledgeBase
from server.portal.routes import PORTAL_COOKIE
from server.web import services_of

BASE = "/portal/help"


def _page(
    request: Request[Any, Any, Any], template: str, status: int = 200, **context: Any
) -> Template:
    settings = services_of(request).settings
    return Template(
        template_name=f"portal/{template}",
        context={
            "controller": settings.controller_name,
            "controller_contact": settings.controller_contact,
            "signed_in": True,
            **context,
        },
        status_code=status,
    )


async def _signed_in(request: Request[Any, Any, Any]) -> bool:
    portal = services_of(request).portal
    return await portal.session(request.cookies.get(PORTAL_COOKIE, "")) is not None


class PortalHelp(Controller):
    path = BASE
    include_in_schema = False

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], *, knowledge: NamedDependency[KnowledgeBase]
    ) -> Response[Any]:
        if not await _signed_in(request):
            return Redirect("/portal", status_code=HTTP_303_SEE_OTHER)
        kb = knowledge
        q = str(request.query_params.get("q") or "")[:200]
        category = str(request.query_params.get("category") or "")[:64]
        raw_page = str(request.query_params.get("page") or "1")
        number = int(raw_page) if raw_page.isdigit() and len(raw_page) < 6 else 1
        result = await kb.search(q, category_id=category, public_only=True, page=number)

        def link(page: int) -> str:
            params = {k: v for k, v in (("q", q), ("category", category)) if v}
            return f"{BASE}?{urlencode({**params, 'page': page})}"

        return _page(
            request,
            "help.html",
            title="Help articles",
            result=result,
            q=q,
            category=category,
            categories=await kb.categories(),
            prev_link=link(result.page - 1) if result.page > 1 else "",
            next_link=link(result.page + 1) if result.page < result.pages else "",
        )

    @get("/{article_id:str}")
    async def article(
        self,
        request: Request[Any, Any, Any],
        article_id: FromPath[str],
        *,
        knowledge: NamedDependency[KnowledgeBase],
    ) -> Response[Any]:
        if not await _signed_in(request):
            return Redirect("/portal", status_code=HTTP_303_SEE_OTHER)
        kb = knowledge
        try:
            article = await kb.get(article_id[:64], public_only=True)
        except NotFound:
            return _page(request, "help_missing.html", 404, title="Article not found")
        names = {c.id: c.name for c in await kb.categories()}
        return _page(
            request,
            "help_article.html",
            title=article.title,
            article=article,
            category_name=names.get(article.category_id or "", ""),
        )
