"""``consentry mail ...``: mailbox capture (docs/mail-capture.md)."""

from __future__ import annotations

import sys
from typing import Any

import click

from server.cli.runtime import fail, load_services, run_with_database
from server.settings import get_settings


@click.group()
def mail() -> None:
    """Mailbox capture: sync connected mailboxes and run the SMTP receiver."""


@mail.command("sync")
@click.option(
    "--max-messages",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="At most this many new messages per mailbox in this run.",
)
def mail_sync(max_messages: int) -> None:
    """Sync every connected mailbox now (the server does it in the background).

    New messages are fetched by UID above each mailbox's watermark, matched to contacts
    and leads by their e-mail address, and filed under each person's key; mail nobody
    matched leaves no trace. Prints counts only.
    """
    from server.mailcapture.jobs import sync_all

    services = load_services(get_settings())

    async def go() -> Any:
        totals = await sync_all(services, max_messages=max_messages)
        await services.audit_trail.seal_all()
        return totals

    totals = run_with_database(go)
    click.echo(
        f"mailboxes: {totals.mailboxes}; messages seen: {totals.seen}; "
        f"captured: {totals.captured}; mailboxes failed: {totals.failed}"
    )
    if totals.failed:
        sys.exit(1)


@mail.command("receive")
def mail_receive() -> None:
    """Run the SMTP receiver for the logging address until interrupted.

    Needs CONSENTRY_SMTP_RECEIVER_PORT (and CONSENTRY_CAPTURE_ADDRESS for the logging
    address); every other recipient is refused with 550. `consentry serve` starts the
    same receiver in one of its workers.
    """
    import asyncio

    from server.mailcapture.jobs import start_receiver

    settings = get_settings()
    if not settings.smtp_receiver_port:
        fail("CONSENTRY_SMTP_RECEIVER_PORT is not set: the SMTP receiver is off")
    services = load_services(settings)

    async def go() -> None:
        server = await start_receiver(services)
        assert server is not None
        click.echo(
            f"receiving on {settings.smtp_receiver_host}:{settings.smtp_receiver_port} "
            "(Ctrl-C to stop)"
        )
        try:
            await asyncio.Event().wait()
        finally:
            server.close()

    try:
        run_with_database(go)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        fail(f"cannot listen on port {settings.smtp_receiver_port} ({exc.strerror or 'in use'})")
