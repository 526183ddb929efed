"""Knowledge base (issue 21, item 4): categories and articles (no personal data)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.defaults.uuid import UUID4
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-02T19:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "knowledge base categories and articles"


def _params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
    }
    params.update(overrides)
    return params


TABLES: dict[str, tuple[str, dict[str, tuple[type, dict[str, Any]]]]] = {
    "KbCategory": (
        "kb_category",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "name": (Varchar, _params(default="", length=80)),
            "position": (Integer, _params(default=0)),
            "created_at": (Timestamptz, _params(default=TimestamptzNow())),
        },
    ),
    "KbArticle": (
        "kb_article",
        {
            "id": (UUID, _params(default=UUID4(), primary_key=True)),
            "title": (Varchar, _params(default="", length=200)),
            "body": (Text, _params(default="")),
            "category_id": (UUID, _params(default=None, null=True, index=True)),
            "visibility": (Varchar, _params(default="internal", length=8)),
            "published": (Boolean, _params(default=False)),
            "created_at": (Timestamptz, _params(default=TimestamptzNow())),
            "updated_at": (Timestamptz, _params(default=TimestamptzNow(), index=True)),
            "updated_by": (Varchar, _params(default="", length=64)),
        },
    ),
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="knowledge", description=DESCRIPTION)
    for class_name, (tablename, columns) in TABLES.items():
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
        for name, (column_class, params) in columns.items():
            manager.add_column(
                table_class_name=class_name,
                tablename=tablename,
                column_name=name,
                db_column_name=name,
                column_class_name=column_class.__name__,
                column_class=column_class,
                params=params,
                schema=None,
            )
    return manager
