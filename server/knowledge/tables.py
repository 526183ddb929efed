"""Knowledge-base tables. Content, not customer data: an article is checked on every save
for e-mail addresses and phone numbers (server.knowledge.service) and refused if it holds
one, so nothing here is about a person and the text is stored in clear for word search.
Only :class:`server.knowledge.service.KnowledgeBase` writes to these tables.
"""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class KbCategory(Table, tablename="kb_category"):
    id = UUID(primary_key=True)
    name = Varchar(length=80)
    position = Integer(default=0)
    created_at = Timestamptz()


class KbArticle(Table, tablename="kb_article"):
    id = UUID(primary_key=True)
    title = Varchar(length=200)
    body = Text()
    category_id = UUID(null=True, default=None, index=True)
    visibility = Varchar(length=8, default="internal")  # public | internal
    published = Boolean(default=False)
    created_at = Timestamptz()
    updated_at = Timestamptz(index=True)
    updated_by = Varchar(length=64, default="")  # the staff actor's audit id ("user:3")
