"""``consentry calendar ...``: meetings from iCalendar files or CalDAV calendars
(docs/calendar.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from server.cli.runtime import UnusableInput, cli_actor, load_services, run_with_database
from server.settings import get_settings


@click.group("calendar")
def calendar_group() -> None:
    """Meetings from iCalendar files or CalDAV calendars (docs/calendar.md)."""


@calendar_group.command("import")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--url", default=None, help="Fetch the calendar from this URL instead of a FILE.")
@click.option(
    "--as", "as_email", required=True, metavar="EMAIL", help="Import as this staff account."
)
def calendar_import_command(file: Path | None, url: str | None, as_email: str) -> None:
    """Import the meetings of an .ics FILE (or --url) as meeting interactions.

    Attendees are matched by e-mail address to the contacts (else leads) the --as account
    may search for; each matched contact gets a meeting interaction, a matched lead a note.
    Importing again updates instead of duplicating; cancelled events are removed.
    Exit code 0: imported; 2: the file, URL or options cannot be used (nothing written).
    """
    from server.calendar.ics import CalendarError
    from server.calendar.service import calendar_import
    from server.gateway import GatewayError

    if (file is None) == (url is None):
        raise UnusableInput("give either FILE or --url")
    content = b""
    if file is not None:
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise UnusableInput(
                f"{file}: cannot read the file ({exc.strerror or type(exc).__name__})"
            ) from None
    services = load_services(get_settings())

    async def go() -> Any:
        actor = await cli_actor(services, as_email, "calendar-import")
        importer = calendar_import(services)
        try:
            if url is not None:
                report = await importer.import_url(actor, url)
            else:
                report = await importer.import_ics(actor, content)
        except CalendarError as exc:
            raise UnusableInput(f"nothing imported: {exc}") from None
        except GatewayError as exc:
            raise UnusableInput(f"nothing imported: {exc.message}") from None
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return report

    click.echo(run_with_database(go).summary())
