"""``consentry desk ...``: the service desk from the command line.

``desk receive`` is how a mail system without the built-in SMTP receiver hands support
mail over (a procmail or fetchmail delivery command, a Postfix pipe): one RFC 5322
message on standard input or in a file.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import sys
from email.message import EmailMessage
from typing import IO

import click

from server.settings import ConfigurationError, get_settings

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
NOT_KEPT_EXIT = 3


@click.group("desk")
def desk_group() -> None:
    """The service desk: support mail into cases (docs/service-desk.md)."""


@desk_group.command("receive")
@click.argument("message_file", type=click.File("rb"), default="-")
def desk_receive(message_file: IO[bytes]) -> None:
    """Take one e-mail sent to the support address (MESSAGE_FILE, or standard input).

    A customer's message opens a case or is added to the case it answers (by the
    [#C-...] reference in the subject, or In-Reply-To). Prints the outcome and the case
    reference. Exit 0 when the message was kept; 3 when it was not (unknown sender,
    automatic mail, nothing in it); 1 for an unreadable message or configuration.
    """
    from server import db
    from server.servicedesk.inbound import receive_support_message
    from server.services import build_services

    raw = message_file.read(MAX_MESSAGE_BYTES + 1)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise click.ClickException("message larger than 25 MiB: not taken")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(parsed, EmailMessage) or not parsed.keys():
        raise click.ClickException("not an e-mail message (no headers)")
    try:
        services = build_services(get_settings())
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None

    async def run() -> tuple[str, str, bool]:
        await db.start()
        try:
            intake = await receive_support_message(services, parsed)
        finally:
            await db.stop()
        return intake.outcome, intake.ref, intake.kept

    outcome, ref, kept = asyncio.run(run())
    click.echo(f"{outcome}{f' {ref}' if ref else ''}")
    if not kept:
        sys.exit(NOT_KEPT_EXIT)
