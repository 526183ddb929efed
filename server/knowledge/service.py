"""The knowledge base: articles in categories, found by word search; public published
articles are shown to signed-in customers in the portal (``/portal/help``).

An article is content, not a record about anyone: on every save its title and body are
checked with the data map's own detection of e-mail addresses and phone numbers
(:func:`server.gateway.mentions.contact_details_in`, the patterns erasure and subject
exports use), and a save that holds one is refused with a message naming the kind found,
never the value. So the text can be kept in clear and searched with plain SQL.

Who may read internal articles and who may write them are policy questions
(``knowledge_article read`` / ``manage``); every change is audited (``kb.create`` ...) with
the article id and the names of the fields changed, never their text.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import PolicyEngine
from server import db
from server.gateway import Actor, Forbidden, InvalidInput, NotFound
from server.gateway.mentions import contact_details_in
from server.knowledge.tables import KbArticle, KbCategory

RESOURCE = "knowledge_article"  # policy: ``knowledge_article read`` / ``manage``
AUDIT_PREFIX = "kb"  # audit actions: kb.create, kb.category_create ... (32 characters at most)
VISIBILITIES = ("internal", "public")
MAX_TITLE = 200
MAX_BODY = 20_000
MAX_CATEGORY = 80
MAX_CATEGORIES = 100
MAX_QUERY_WORDS = 8
PAGE_SIZE = 20
# Markdown without raw HTML: tags typed into an article are shown as text, and
# markdown-it refuses javascript:, vbscript:, file: and data: links.
_TAG = re.compile(r"<[^>]+>")
_BREAKS = ("</p", "</li", "</h", "<br", "</pre", "</blockquote")  # tags between words
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    position: int


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    body: str
    category_id: str | None
    visibility: str
    published: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def public(self) -> bool:
        return self.visibility == "public" and self.published

    @property
    def html(self) -> str:
        """The body as HTML: Markdown with every raw tag escaped (safe to mark ``safe``)."""
        return str(_MARKDOWN.render(self.body))

    @property
    def excerpt(self) -> str:
        """The start of the text as read (Markdown rendered, then its tags dropped)."""
        plain = _TAG.sub(lambda tag: " " if tag.group(0).startswith(_BREAKS) else "", self.html)
        text = " ".join(html.unescape(plain).split())
        return text if len(text) <= 180 else text[:177].rstrip() + "…"


@dataclass(frozen=True)
class ArticlePage:
    items: tuple[Article, ...]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _to_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _utc(value: Any) -> dt.datetime:
    """A stored moment as an aware UTC datetime (SQLite hands back naive ones)."""
    moment: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _article(row: Mapping[str, Any]) -> Article:
    category = row["category_id"]
    return Article(
        id=str(row["id"]),
        title=str(row["title"]),
        body=str(row["body"]),
        category_id=str(category) if category else None,
        visibility=str(row["visibility"]),
        published=bool(row["published"]),
        created_at=_utc(row["created_at"]),
        updated_at=_utc(row["updated_at"]),
    )


def query_words(query: str) -> list[str]:
    """The words of a search, without LIKE wildcards; at most ``MAX_QUERY_WORDS``."""
    words = [w.replace("%", "").replace("_", " ").strip() for w in query.split()]
    return [w for w in words if w][:MAX_QUERY_WORDS]


class KnowledgeBase:
    def __init__(self, audit: AuditLog, policy: PolicyEngine, *, default_region: str) -> None:
        self._audit = audit
        self._policy = policy
        self._region = default_region

    # --- who may do what -------------------------------------------------------------------

    def may_read(self, role: str) -> bool:
        return self._policy.allows(role, RESOURCE, "read")

    def may_manage(self, role: str) -> bool:
        return self._policy.allows(role, RESOURCE, "manage")

    async def _require(self, actor: Actor, action: str, resource_id: str = "") -> None:
        if self.may_manage(actor.role):
            return
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action=f"{AUDIT_PREFIX}.{action}",
                resource_type=RESOURCE,
                resource_id=resource_id or None,
                outcome=Outcome.DENIED,
                reason="not_allowed",
                request_id=actor.request_id,
            )
        )
        raise Forbidden("your role may not change the knowledge base")

    async def _record(
        self, actor: Actor, action: str, resource_id: str, fields: tuple[str, ...] = ()
    ) -> None:
        await self._audit.append(
            audit_event(
                actor_id=actor.id,
                actor_role=actor.role,
                action=f"{AUDIT_PREFIX}.{action}",
                resource_type=RESOURCE,
                resource_id=resource_id,
                fields=fields,
                outcome=Outcome.ALLOWED,
                request_id=actor.request_id,
            )
        )

    # --- categories ------------------------------------------------------------------------

    async def categories(self) -> tuple[Category, ...]:
        rows = await KbCategory.select().order_by(KbCategory.position).order_by(KbCategory.name)
        return tuple(Category(str(r["id"]), str(r["name"]), int(r["position"])) for r in rows)

    async def add_category(self, actor: Actor, name: str) -> Category:
        await self._require(actor, "category_create")
        name = " ".join(name.split())
        if not name or len(name) > MAX_CATEGORY:
            raise InvalidInput(
                f"a category needs a name of 1 to {MAX_CATEGORY} characters",
                problems={"name": "invalid length"},
            )
        self._refuse_contact_details({"name": name})
        existing = await self.categories()
        if any(c.name.casefold() == name.casefold() for c in existing):
            raise InvalidInput(
                "there is already a category of that name", problems={"name": "taken"}
            )
        if len(existing) >= MAX_CATEGORIES:
            raise InvalidInput(f"at most {MAX_CATEGORIES} categories")
        category = Category(str(uuid.uuid4()), name, len(existing))
        async with db.write_transaction():
            await KbCategory.insert(
                KbCategory(
                    id=uuid.UUID(category.id),
                    name=name,
                    position=category.position,
                    created_at=dt.datetime.now(dt.UTC),
                )
            ).run()
            await self._record(actor, "category_create", category.id, ("name",))
        return category

    async def delete_category(self, actor: Actor, category_id: str) -> None:
        """Remove an empty category (articles must be moved out first)."""
        await self._require(actor, "category_delete", category_id[:64])
        wanted = _to_uuid(category_id)
        if wanted is None or not await KbCategory.exists().where(KbCategory.id == wanted):
            raise NotFound("no such category")
        if await KbArticle.exists().where(KbArticle.category_id == wanted):
            raise InvalidInput(
                "the category still has articles: move them to another category first",
                problems={"category": "not empty"},
            )
        async with db.write_transaction():
            await KbCategory.delete().where(KbCategory.id == wanted)
            await self._record(actor, "category_delete", str(wanted))

    # --- articles --------------------------------------------------------------------------

    async def search(
        self,
        query: str = "",
        *,
        category_id: str = "",
        public_only: bool,
        page: int = 1,
        page_size: int = PAGE_SIZE,
    ) -> ArticlePage:
        """Articles whose title or body holds every word of ``query`` (any case), in one
        category if given. ``public_only``: published public articles (the portal)."""
        conditions: list[Any] = []
        if public_only:
            conditions += [KbArticle.visibility == "public", KbArticle.published.eq(True)]
        if category_id:
            wanted = _to_uuid(category_id)
            if wanted is None:
                return ArticlePage((), 0, 1, page_size)
            conditions.append(KbArticle.category_id == wanted)
        # SQLite's LIKE ignores case already (ASCII) and it has no ILIKE.
        contains = "like" if db.is_sqlite() else "ilike"
        for word in query_words(query):
            pattern = f"%{word}%"
            conditions.append(
                getattr(KbArticle.title, contains)(pattern)
                | getattr(KbArticle.body, contains)(pattern)
            )
        where: Any = None
        for condition in conditions:
            where = condition if where is None else where & condition
        count = KbArticle.count()
        select = KbArticle.select()
        if where is not None:
            count = count.where(where)
            select = select.where(where)
        total = await count
        pages = max(1, -(-total // page_size))
        page = min(max(1, page), pages)
        order = KbArticle.title if public_only else KbArticle.updated_at
        rows = await (
            select.order_by(order, ascending=public_only)
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
        return ArticlePage(tuple(_article(r) for r in rows), total, page, page_size)

    async def get(self, article_id: str, *, public_only: bool) -> Article:
        wanted = _to_uuid(article_id)
        row = None
        if wanted is not None:
            row = await KbArticle.select().where(KbArticle.id == wanted).first()
        if row is None:
            raise NotFound("no such article")
        article = _article(row)
        if public_only and not article.public:
            raise NotFound("no such article")  # an internal article does not exist here
        return article

    def _refuse_contact_details(self, texts: Mapping[str, str]) -> None:
        problems = {
            name: "holds " + " and ".join(f"an {k}" if k[0] in "aeiou" else f"a {k}" for k in kinds)
            for name, text in texts.items()
            if (kinds := contact_details_in(text, self._region))
        }
        if problems:
            raise InvalidInput(
                "articles must not hold personal data: remove the e-mail address or phone "
                "number (" + "; ".join(f"{k} {v}" for k, v in problems.items()) + ")",
                problems=problems,
            )

    async def _clean(self, values: Mapping[str, Any]) -> dict[str, Any]:
        problems: dict[str, str] = {}
        title = " ".join(str(values.get("title", "")).split())
        body = str(values.get("body", "")).replace("\r\n", "\n").strip()
        if not title:
            problems["title"] = "is required"
        elif len(title) > MAX_TITLE:
            problems["title"] = f"longer than {MAX_TITLE} characters"
        if len(body) > MAX_BODY:
            problems["body"] = f"longer than {MAX_BODY} characters"
        visibility = str(values.get("visibility", "internal"))
        if visibility not in VISIBILITIES:
            problems["visibility"] = "must be one of: " + ", ".join(VISIBILITIES)
        category: uuid.UUID | None = None
        if raw := str(values.get("category_id") or ""):
            category = _to_uuid(raw)
            if category is None or not await KbCategory.exists().where(KbCategory.id == category):
                problems["category_id"] = "no such category"
        if problems:
            raise InvalidInput(
                "; ".join(f"{k}: {v}" for k, v in problems.items()), problems=problems
            )
        self._refuse_contact_details({"title": title, "body": body})
        return {
            "title": title,
            "body": body,
            "category_id": category,
            "visibility": visibility,
            "published": bool(values.get("published")),
        }

    async def create(self, actor: Actor, values: Mapping[str, Any]) -> Article:
        await self._require(actor, "create")
        cleaned = await self._clean(values)
        now = dt.datetime.now(dt.UTC)
        article_id = uuid.uuid4()
        async with db.write_transaction():
            await KbArticle.insert(
                KbArticle(
                    id=article_id,
                    created_at=now,
                    updated_at=now,
                    updated_by=actor.id,
                    **cleaned,
                )
            ).run()
            await self._record(actor, "create", str(article_id), tuple(cleaned))
        return await self.get(str(article_id), public_only=False)

    async def update(self, actor: Actor, article_id: str, values: Mapping[str, Any]) -> Article:
        await self._require(actor, "update", article_id[:64])
        before = await self.get(article_id, public_only=False)
        cleaned = await self._clean(values)
        changed = tuple(
            name
            for name, value in cleaned.items()
            if (str(value) if name == "category_id" and value else value) != getattr(before, name)
        )
        async with db.write_transaction():
            await KbArticle.update(
                {
                    **{getattr(KbArticle, k): v for k, v in cleaned.items()},
                    KbArticle.updated_at: dt.datetime.now(dt.UTC),
                    KbArticle.updated_by: actor.id,
                }
            ).where(KbArticle.id == uuid.UUID(before.id))
            await self._record(actor, "update", before.id, changed)
        return await self.get(before.id, public_only=False)

    async def delete(self, actor: Actor, article_id: str) -> None:
        await self._require(actor, "delete", article_id[:64])
        article = await self.get(article_id, public_only=False)
        async with db.write_transaction():
            await KbArticle.delete().where(KbArticle.id == uuid.UUID(article.id))
            await self._record(actor, "delete", article.id)
