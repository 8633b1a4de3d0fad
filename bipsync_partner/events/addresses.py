"""Which addresses an endpoint may have: https (unless DEBUG or ``EVENTS_ALLOW_HTTP``) and a host
that resolves only to public addresses (unless ``EVENTS_ALLOW_PRIVATE_ADDRESSES``).

A URL that a team admin types is a request this server makes on their behalf; without the check
it would reach the cloud's metadata service, the database or anything else on the private
network. The check runs when the endpoint is saved and again before every send, because DNS can
change between the two; the send then connects to the address that was checked (the host name
still names the TLS certificate and the Host header), so a second lookup cannot swap it.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings


class AddressRefused(Exception):
    """The URL may not be sent to; the message is a sentence for the admin."""


@dataclass(frozen=True)
class Target:
    """Where a send goes: the URL rewritten to the checked address, and the original host."""

    url: str
    #: The host name, for TLS (SNI and the certificate's name).
    host: str
    #: The Host header: the URL's own host and port.
    host_header: str


def _schemes() -> tuple[str, ...]:
    return ("https", "http") if settings.DEBUG or settings.EVENTS_ALLOW_HTTP else ("https",)


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def check(url: str) -> Target:
    """Resolve and check ``url``; the target to connect to, or AddressRefused."""
    parts = urlsplit(url)
    if parts.scheme not in _schemes():
        raise AddressRefused(
            "The URL must start with https:// (events carry your team's data)."
            if parts.scheme != "https"
            else "The URL must start with https://."
        )
    host = parts.hostname
    if not host:
        raise AddressRefused("The URL has no host name.")
    if parts.username or parts.password:
        raise AddressRefused("The URL must not contain a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("The URL's port is not a number between 0 and 65535.") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise AddressRefused(f"The host name {host} does not resolve.") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise AddressRefused(f"The host name {host} does not resolve.")
    if not settings.EVENTS_ALLOW_PRIVATE_ADDRESSES:
        for address in addresses:
            if _refused(address):
                raise AddressRefused(
                    f"{host} resolves to {address}, a private, loopback, link-local or "
                    "reserved address; events are only sent to public addresses."
                )
    pinned = addresses[0]
    netloc = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    if parts.port:
        netloc += f":{parts.port}"
    return Target(url=parts._replace(netloc=netloc).geturl(), host=host, host_header=parts.netloc)
