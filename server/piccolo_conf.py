"""Piccolo's configuration module (``PICCOLO_CONF=server.piccolo_conf``).

``DB`` is resolved lazily from the settings so that the CLI, the server and the tests all
migrate the database they were configured for.
"""

from __future__ import annotations

from typing import Any

from piccolo.conf.apps import AppRegistry

APP_REGISTRY = AppRegistry(
    apps=[
        "migrations.staff.piccolo_app",
        "migrations.crm.piccolo_app",
        "migrations.audit.piccolo_app",
        "migrations.consent.piccolo_app",
        "migrations.dsr.piccolo_app",
        "migrations.portal.piccolo_app",
        "migrations.pipelines.piccolo_app",
        "migrations.campaigns.piccolo_app",
        "migrations.imports.piccolo_app",
        "migrations.duplicates.piccolo_app",
        "migrations.leads.piccolo_app",
        "migrations.search.piccolo_app",
        "migrations.integrations.piccolo_app",
        "migrations.outbox.piccolo_app",
        "migrations.analytics.piccolo_app",
        "migrations.reporting.piccolo_app",
        "migrations.mailcapture.piccolo_app",
        "migrations.knowledge.piccolo_app",
        "migrations.calendar.piccolo_app",
        "migrations.feedback.piccolo_app",
        "migrations.servicedesk.piccolo_app",
    ]
)


def __getattr__(name: str) -> Any:
    if name == "DB":
        from server.db import get_engine

        return get_engine()
    raise AttributeError(name)
