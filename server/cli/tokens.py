"""``consentry tokens ...``: API tokens, personal and service accounts."""

from __future__ import annotations

from typing import Any

import click

from server.cli.runtime import fail, load_services, run_with_database
from server.settings import get_settings


@click.group()
def tokens() -> None:
    """API tokens: personal tokens and service accounts (Authorization: Bearer ...).

    Each is made for a staff account (--as), bound to a role no wider than theirs, the
    purposes it may act for, optionally a field allow-list, and an expiry. The secret is
    printed once; only a keyed hash of it is stored. Revocation is effective at once.
    """


def _token_owner(services: Any, email: str) -> Any:
    identity = run_with_database(lambda: services.accounts.find_by_email(email))
    if identity is None:
        fail(f"no staff account with the e-mail {email}")
    return identity


@tokens.command("create")
@click.option("--as", "owner", required=True, help="E-mail of the staff account making it.")
@click.option("--name", required=True, help="What it is for, e.g. 'Website sign-up form'.")
@click.option(
    "--kind",
    type=click.Choice(["personal", "service"]),
    default="personal",
    show_default=True,
    help="A personal token of --as, or a service account (admins).",
)
@click.option("--role", required=True, help="Role it acts with: no wider than --as's own.")
@click.option(
    "--purpose", "purposes", multiple=True, required=True, help="A purpose it may act for (repeat)."
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    help="Only these fields (repeat; 'email' or 'contact.email'). Default: the role's fields.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=90,
    show_default=True,
    help="Days until it expires.",
)
def tokens_create(
    owner: str,
    name: str,
    kind: str,
    role: str,
    purposes: tuple[str, ...],
    fields: tuple[str, ...],
    days: int,
) -> None:
    """Make a token; prints its secret once."""
    from server.auth.tokens import TokenError, TokenKind

    services = load_services(get_settings())
    identity = _token_owner(services, owner)

    async def go() -> Any:
        made = await services.tokens.create(
            identity,
            TokenKind(kind),
            name=name,
            role=role,
            purposes=purposes,
            fields=fields or None,
            days=days,
        )
        await services.audit_trail.seal_all()  # no server may be running to seal it
        return made

    try:
        made = run_with_database(go)
    except TokenError as exc:
        fail(str(exc))
    click.echo(
        f"created {kind} token {made.info.id} ({role}; expires {made.info.expires_at:%Y-%m-%d})"
    )
    click.echo(f"secret (shown once): {made.secret}")


@tokens.command("list")
@click.option("--as", "owner", required=True, help="E-mail of the staff account.")
@click.option(
    "--kind",
    type=click.Choice(["personal", "service"]),
    default="personal",
    show_default=True,
    help="Personal tokens of --as, or every service account.",
)
def tokens_list(owner: str, kind: str) -> None:
    """List tokens: --as's personal tokens, or every service account."""
    from server.auth.tokens import TokenKind

    services = load_services(get_settings())
    identity = _token_owner(services, owner)
    found = run_with_database(lambda: services.tokens.list(identity, TokenKind(kind)))
    if not found:
        click.echo("no tokens")
    for info in found:
        state = "active" if info.active else ("revoked" if info.revoked_at else "expired")
        used = f"{info.last_used_at:%Y-%m-%d %H:%M}" if info.last_used_at else "never"
        click.echo(
            f"{info.id}  {info.hint}...  {state:<7}  {info.role:<10}  "
            f"{','.join(info.purposes)}  last used {used}  {info.name}"
        )


@tokens.command("revoke")
@click.argument("token_id")
@click.option("--as", "owner", required=True, help="E-mail of the staff account.")
def tokens_revoke(token_id: str, owner: str) -> None:
    """Revoke a token: its next call fails, in every worker."""
    from server.auth.tokens import TokenError

    services = load_services(get_settings())
    identity = _token_owner(services, owner)

    async def go() -> Any:
        info = await services.tokens.revoke(identity, token_id)
        await services.audit_trail.seal_all()
        return info

    try:
        info = run_with_database(go)
    except TokenError as exc:
        fail(str(exc))
    click.echo(f"revoked token {info.id}")
