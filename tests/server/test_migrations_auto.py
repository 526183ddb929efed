"""The migration workflow (issue 18): ``piccolo migrations new <app> --auto`` must never
emit a destructive change by accident.

Piccolo diffs each app's ``table_classes`` against the schema its migration files build.
A table missing from ``table_classes`` becomes a ``drop_table`` (lead, task and note were
missing from the crm app), a column declared but never migrated an ``add_column`` that
fails on a real database (the staff tables' explicit ``id``). So: every table class in
the code belongs to exactly one app, and for every app the auto diff is empty - a schema
change is a table edit plus a generated migration, made and committed together
(CONTRIBUTING.md, "Add a migration").
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from piccolo.apps.migrations.commands.new import AutoMigrationManager
from piccolo.table import Table

import audit
import server
from server.piccolo_conf import APP_REGISTRY

APPS = sorted(APP_REGISTRY.app_configs)
DESTRUCTIVE = ("drop_table", "drop_column", "rename_table", "rename_column", "alter_column")


def table_classes_in_code() -> set[type[Table]]:
    found: set[type[Table]] = set()
    for package in (server, audit):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if "tables" not in module.name.rsplit(".", 1)[-1]:
                continue
            loaded = importlib.import_module(module.name)
            for _, value in inspect.getmembers(loaded, inspect.isclass):
                if issubclass(value, Table) and value.__module__ == loaded.__name__:
                    found.add(value)
    return found


def test_every_table_belongs_to_exactly_one_app() -> None:
    owners: dict[type[Table], list[str]] = {}
    for name, config in APP_REGISTRY.app_configs.items():
        for table in config.table_classes:
            owners.setdefault(table, []).append(name)
    code = table_classes_in_code()
    assert len(code) > 40  # the scan found the tables modules
    missing = sorted(t.__name__ for t in code - set(owners))
    assert not missing, (
        f"add these to an app's table_classes (migrations/*/piccolo_app.py): {missing}"
    )
    assert {t.__name__: a for t, a in owners.items() if len(a) > 1} == {}


async def auto_statements(app: str) -> list[str]:
    config = APP_REGISTRY.get_app_config(app)
    altered = await AutoMigrationManager(auto_input="n").get_alter_statements(config)
    return [statement for alter in altered for statement in alter.statements]


@pytest.mark.parametrize("app", APPS)
async def test_auto_migration_has_nothing_to_do(app: str) -> None:
    """The tables and the migrations agree: ``--auto`` would write an empty migration."""
    statements = await auto_statements(app)
    destructive = [s for s in statements if any(word in s for word in DESTRUCTIVE)]
    assert destructive == [], f"piccolo migrations new {app} --auto would run {destructive}"
    assert statements == [], f"{app}: tables changed without a migration: {statements}"


async def test_a_table_left_out_of_its_app_is_a_drop() -> None:
    """Why the lists must be complete: without Lead the crm diff drops the lead table."""
    config = APP_REGISTRY.get_app_config("crm")
    kept = list(config.table_classes)
    config.table_classes = [t for t in kept if t.__name__ != "Lead"]
    try:
        statements = await auto_statements("crm")
    finally:
        config.table_classes = kept
    assert any("drop_table" in s and "'lead'" in s for s in statements), statements
