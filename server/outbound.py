"""Where addresses typed into Consentry may make the server connect.

Webhook URLs (and any other host staff or an API token can enter: a mailbox to sync, a
calendar to fetch) make the server open a connection on someone's behalf. Left open, that
is a way into the network the server sits in: an admin token pointed at
``http://127.0.0.1:5432``, ``http://10.0.0.7/`` or a cloud metadata address
(``169.254.169.254``) turns the server into a probe, and the delivery log tells which
ports answered. So a destination must resolve only to public addresses, unless the
deployment names a private network it trusts (``CONSENTRY_OUTBOUND_ALLOW``, CIDR ranges,
e.g. an intranet mail server).

The check resolves the name when the address is saved and again just before each
connection. What it cannot stop is a name that resolves to a public address at the check
and to a private one a moment later (DNS rebinding between check and connect);
docs/webhooks.md says so.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import TypeAlias
from urllib.parse import urlsplit

from server.settings import ConfigurationError

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(Exception):
    """The address may not be connected to; ``reason`` is one line a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_networks(ranges: Iterable[str]) -> tuple[Network, ...]:
    """CIDR ranges from the settings; a bad one stops start-up with its name."""
    networks: list[Network] = []
    for text in ranges:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ConfigurationError(
                f"CONSENTRY_OUTBOUND_ALLOW: {text.strip()!r} is not an address range "
                "(write CIDR ranges such as 10.1.2.0/24, separated by commas)"
            ) from None
    return tuple(networks)


class Destinations:
    """The one check every outbound connection to a user-entered host goes through."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = parse_networks(allowed)

    def _permitted(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    async def check(self, host: str, port: int) -> None:
        """Refuse unless every address ``host`` resolves to is public or allowed.

        Every address, not the first: a name with one public and one private record
        would otherwise reach the private one on a retry."""
        host = host.strip().strip("[]")
        if not host:
            raise DestinationRefused("the address has no host name")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError, ValueError):
            raise DestinationRefused(f"the host name {host} cannot be resolved") from None
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}
        if not addresses:
            raise DestinationRefused(f"the host name {host} cannot be resolved")
        for address in sorted(addresses, key=str):
            if not self._permitted(address):
                raise DestinationRefused(
                    f"{host} is a private, loopback or reserved address ({address}); "
                    "the server only connects to public addresses unless "
                    "CONSENTRY_OUTBOUND_ALLOW names the range"
                )

    async def check_url(self, url: str) -> None:
        """``check`` for an http(s) URL's host and port (80/443 when it names none)."""
        parts = urlsplit(url.strip())
        try:
            port = parts.port
        except ValueError:
            raise DestinationRefused("the address has an invalid port") from None
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        await self.check(parts.hostname or "", port)
