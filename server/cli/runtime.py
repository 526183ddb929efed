"""What every ``consentry`` command shares: running a coroutine with the database started
and stopped around it, the services built from the settings, the one-line failures and
their exit codes, and the staff account named by ``--as``.

Exit codes: 0 success; 1 a ``ClickException`` (:func:`fail`) or a command's own "some of
it went wrong"; 2 unusable input (:class:`UnusableInput`, also click's own usage errors)
or a configuration error caught by :func:`server.cli.main`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from server.settings import ConfigurationError, Settings

T = TypeVar("T")
Decorated = TypeVar("Decorated", bound=Callable[..., Any])


def run_with_database(factory: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine with the database started and stopped around it."""
    from server import db

    async def main() -> T:
        await db.start()
        try:
            return await factory()
        finally:
            await db.stop()

    return asyncio.run(main())


def fail(message: str) -> None:
    raise click.ClickException(message)


def run_or_fail(factory: Callable[[], Awaitable[T]], *errors: type[Exception]) -> T:
    """Run one coroutine like :func:`run_with_database`; one of ``errors`` becomes a one-line
    failure (exit code 1) with the error's ``message`` (or its text)."""
    try:
        return run_with_database(factory)
    except errors as exc:
        raise click.ClickException(getattr(exc, "message", None) or str(exc)) from exc


def output_option(help: str, *, required: bool = True) -> Callable[[Decorated], Decorated]:
    """The ``-o/--output`` file option of every command that writes a file."""
    return click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        required=required,
        help=help,
    )


def fail_unless_verified(what: str, report: Any) -> None:
    """One line for a bundle or slice that does not verify: its first problem and how many
    more there are (the offline checks of exports and audit slices report alike)."""
    if not report.ok:
        more = len(report.problems) - 1
        fail(
            f"{what} does NOT verify: {report.problems[0]}"
            + (f" (and {more} more problem(s))" if more else "")
        )


def load_services(settings: Settings) -> Any:
    from server.services import build_services

    try:
        return build_services(settings)
    except ConfigurationError as exc:
        fail(str(exc))


class UnusableInput(click.ClickException):
    """The file or the options cannot be used at all: exit code 2, one line."""

    exit_code = 2


async def cli_actor(services: Any, email: str | None, job: str, team: str = "") -> Any:
    """The staff account named by ``--as`` (active), or the system actor for ``job``."""
    from server.gateway import Actor

    if not email:
        return Actor.system(job, team)
    identity = await services.accounts.find_by_email(email)
    found = identity and await services.accounts.get_user(identity.user_id)
    if not found or not found[1]:
        raise UnusableInput(f"--as: no active staff account {email}")
    return Actor.staff(identity.user_id, identity.role, identity.team, f"cli-{job}")


def describe_url(url: str) -> str:
    """A database URL fit to print: its password, if any, replaced by ``***``."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
