"""The ``consentry`` command line: serve, migrate, keys, users, tokens, check, consent, audit.

Every command exits 0 on success and non-zero with a one-line reason on failure.

This package is a composition root: ``cli`` is the top-level group and each command group
lives in its own module (``serving``, ``keys``, ``audit_log``, ``dsr``, ``csvio``, ...),
sharing only ``runtime``. ``main`` is the console script (``consentry = server.cli:main``)
and ``python -m server.cli`` runs it too (``__main__.py``; the daily scoring child does).
"""

from __future__ import annotations

import sys

import click

from server.cli import (
    analytics,
    audit_log,
    backups,
    calendars,
    consent,
    csvio,
    desk,
    dsr,
    keys,
    mail,
    mentions,
    search,
    serving,
    tokens,
    users,
)
from server.settings import ConfigurationError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Consentry: a privacy-first CRM.

    Configuration comes from CONSENTRY_* environment variables (see README.md):
    CONSENTRY_HOME (data directory, default ./consentry-data), CONSENTRY_DATABASE_URL
    (default: SQLite in the data directory), CONSENTRY_MASTER_KEY_FILE or
    CONSENTRY_MASTER_KEY, CONSENTRY_SESSION_SECRET.
    """


for _command in (
    serving.serve,
    serving.migrate,
    serving.check,
    serving.db_group,
    search.search,
    mentions.mentions,
    keys.keys,
    backups.backup_command,
    backups.restore_command,
    users.users,
    tokens.tokens,
    consent.consent,
    audit_log.audit,
    dsr.dsr,
    dsr.retention,
    csvio.import_group,
    csvio.export_records,
    analytics.analytics,
    mail.mail,
    calendars.calendar_group,
    desk.desk_group,
):
    cli.add_command(_command)


def main() -> None:
    try:
        cli(prog_name="consentry")
    except ConfigurationError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
