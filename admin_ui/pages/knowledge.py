"""The knowledge base in the admin (``/knowledge``): search and read articles, write and
edit them, manage categories. Reading needs ``knowledge_article read``, writing
``knowledge_article manage`` (policy); the service checks again and audits every change.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Redirect, Template

from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.gateway import Forbidden, InvalidInput
from server.knowledge.service import (
    MAX_BODY,
    MAX_CATEGORY,
    MAX_TITLE,
    VISIBILITIES,
    Article,
    KnowledgeBase,
)
from server.web import services_of

BASE = "/knowledge"
MAX_FORM_VALUE = MAX_BODY + 100


def _kb(request: Request[Any, Any, Any], visit: Visit) -> KnowledgeBase:
    kb = services_of(request).knowledge
    if not kb.may_read(visit.identity.role):
        raise Forbidden("your role may not read the knowledge base")
    return kb


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {k: v[:MAX_FORM_VALUE] for k, v in form.items() if isinstance(v, str)}


def _page_number(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and len(raw) < 6 else 1


def _article_values(article: Article | None) -> dict[str, Any]:
    if article is None:
        return {"title": "", "body": "", "category_id": "", "visibility": "internal"}
    return {
        "title": article.title,
        "body": article.body,
        "category_id": article.category_id or "",
        "visibility": article.visibility,
        "published": article.published,
    }


class KnowledgePages(Controller):
    path = BASE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Articles, most recently changed first; search by words and filter by category."""
        kb = _kb(request, visit)
        q = str(request.query_params.get("q") or "")[:200]
        category = str(request.query_params.get("category") or "")[:64]
        page = await kb.search(
            q,
            category_id=category,
            public_only=False,
            page=_page_number(request.query_params.get("page")),
        )

        def link(number: int) -> str:
            params = {k: v for k, v in (("q", q), ("category", category)) if v}
            return f"{BASE}?{urlencode({**params, 'page': number})}"

        return await render(
            request,
            "knowledge/index.html",
            visit=visit,
            title="Knowledge base",
            result=page,
            q=q,
            category=category,
            categories=await kb.categories(),
            may_manage=kb.may_manage(visit.identity.role),
            prev_link=link(page.page - 1) if page.page > 1 else "",
            next_link=link(page.page + 1) if page.page < page.pages else "",
            max_category=MAX_CATEGORY,
        )

    async def _form_page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        kb: KnowledgeBase,
        *,
        article: Article | None,
        values: dict[str, Any],
        error: InvalidInput | None = None,
    ) -> Template:
        return await render(
            request,
            "knowledge/form.html",
            visit=visit,
            status=400 if error else 200,
            title=f"Edit: {article.title}" if article else "New article",
            article=article,
            values=values,
            error=error,
            categories=await kb.categories(),
            visibilities=VISIBILITIES,
            max_title=MAX_TITLE,
            max_body=MAX_BODY,
        )

    @get("/new")
    async def new(self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]) -> Template:
        kb = _kb(request, visit)
        if not kb.may_manage(visit.identity.role):
            raise Forbidden("your role may not change the knowledge base")
        return await self._form_page(request, visit, kb, article=None, values=_article_values(None))

    @post("/new", status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template | Redirect:
        kb = _kb(request, visit)
        values = await _form(request)
        try:
            article = await kb.create(visit.actor, values)
        except InvalidInput as exc:
            return await self._form_page(
                request, visit, kb, article=None, values=dict(values), error=exc
            )
        await flash(request, visit, "Article saved.")
        return see_other(f"{BASE}/{article.id}")

    @get("/{article_id:str}")
    async def show(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        article_id: FromPath[str],
    ) -> Template:
        kb = _kb(request, visit)
        article = await kb.get(article_id[:64], public_only=False)
        categories = {c.id: c.name for c in await kb.categories()}
        return await render(
            request,
            "knowledge/article.html",
            visit=visit,
            title=article.title,
            article=article,
            category_name=categories.get(article.category_id or "", ""),
            may_manage=kb.may_manage(visit.identity.role),
        )

    @get("/{article_id:str}/edit")
    async def edit(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        article_id: FromPath[str],
    ) -> Template:
        kb = _kb(request, visit)
        if not kb.may_manage(visit.identity.role):
            raise Forbidden("your role may not change the knowledge base")
        article = await kb.get(article_id[:64], public_only=False)
        return await self._form_page(
            request, visit, kb, article=article, values=_article_values(article)
        )

    @post("/{article_id:str}/edit", status_code=200)
    async def save(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        article_id: FromPath[str],
    ) -> Template | Redirect:
        kb = _kb(request, visit)
        values = await _form(request)
        article = await kb.get(article_id[:64], public_only=False)
        try:
            await kb.update(visit.actor, article.id, values)
        except InvalidInput as exc:
            return await self._form_page(
                request, visit, kb, article=article, values=dict(values), error=exc
            )
        await flash(request, visit, "Article saved.")
        return see_other(f"{BASE}/{article.id}")

    @post("/{article_id:str}/delete")
    async def delete(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        article_id: FromPath[str],
    ) -> Redirect:
        kb = _kb(request, visit)
        await kb.delete(visit.actor, article_id[:64])
        await flash(request, visit, "Article deleted.")
        return see_other(BASE)

    @post("/categories")
    async def add_category(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Redirect:
        kb = _kb(request, visit)
        form = await _form(request)
        try:
            await kb.add_category(visit.actor, form.get("name", "")[:200])
        except InvalidInput as exc:
            await flash(request, visit, f"Category not added: {exc.message}.", "error")
        else:
            await flash(request, visit, "Category added.")
        return see_other(BASE)

    @post("/categories/{category_id:str}/delete")
    async def delete_category(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        category_id: FromPath[str],
    ) -> Redirect:
        kb = _kb(request, visit)
        try:
            await kb.delete_category(visit.actor, category_id[:64])
        except InvalidInput as exc:
            await flash(request, visit, f"Category not removed: {exc.message}.", "error")
        else:
            await flash(request, visit, "Category removed.")
        return see_other(BASE)
