"""``consentry users ...``: staff accounts."""

from __future__ import annotations

import getpass
from typing import Any

import click

from policy.enforcer import ROLES
from server.cli.runtime import fail, load_services, run_with_database
from server.settings import get_settings


@click.group()
def users() -> None:
    """Manage staff accounts."""


@users.command("create")
@click.argument("email")
@click.option(
    "--role",
    required=True,
    type=click.Choice(ROLES),
    help="What the user may see and do (policy/policy.csv).",
)
@click.option(
    "--team",
    default="default",
    show_default=True,
    help="Team name: records owned by the team are visible to team-scoped roles.",
)
@click.option("--name", "display_name", default="", help="Display name.")
@click.option(
    "--prompt-password",
    is_flag=True,
    help="Type the password instead of having a strong one generated.",
)
def users_create(
    email: str, role: str, team: str, display_name: str, prompt_password: bool
) -> None:
    """Create a staff account; prints the generated password once."""
    from server.auth.passwords import WeakPassword
    from server.auth.service import AccountError

    password: str | None = None
    if prompt_password:
        password = getpass.getpass("Password (12+ characters): ")
        if password != getpass.getpass("Repeat password: "):
            fail("passwords do not match")
    services = load_services(get_settings())

    async def go() -> tuple[Any, str]:
        result: tuple[Any, str] = await services.accounts.create_user(
            email, role, team=team, display_name=display_name, password=password
        )
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return result

    try:
        identity, secret = run_with_database(go)
    except (AccountError, WeakPassword) as exc:
        fail(str(exc))
    click.echo(f"created {role} user {identity.email} (id {identity.user_id}, team {team})")
    if password is None:
        click.echo(f"password: {secret}")
