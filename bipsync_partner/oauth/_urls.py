"""URL checks shared by discovery and the authorization request."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from bipsync_partner.oauth.errors import ConfigurationError, MetadataError, OAuthError


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_secure_url(
    url: object,
    *,
    what: str,
    allow_insecure_loopback: bool,
    error: type[OAuthError] = MetadataError,
) -> str:
    """Return ``url`` if it is an absolute https URL without fragment, or an http URL on a
    loopback host when ``allow_insecure_loopback`` is set; raise ``error`` otherwise.

    Bipsync reference, "Shared conventions": http only on loopback and only when told so;
    RFC 8414 §2 requires https for the issuer, RFC 6749 §3.1/§3.2 TLS for the endpoints and
    forbids a fragment.
    """
    if not isinstance(url, str) or not url:
        raise error(f"{what} must be a non-empty URL string")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for an out-of-range or non-numeric port
    except ValueError:
        raise error(f"{what} is not a valid URL") from None
    if parts.fragment or "#" in url:
        raise error(f"{what} must not contain a fragment")
    if not host or any(ch.isspace() for ch in url):
        raise error(f"{what} must be an absolute URL")
    if "@" in parts.netloc:
        # Credentials in a URL would be sent to whoever the host is, and "a@b" hosts mislead.
        raise error(f"{what} must not contain user information")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and allow_insecure_loopback and is_loopback_host(host):
        return url
    raise error(
        f"{what} must use https (plain http is accepted only for loopback hosts with "
        "allow_insecure_loopback)"
    )


def check_redirect_uri(url: object) -> str:
    """An absolute https URI without fragment (RFC 6749 §3.1.2), or http on a loopback host, which
    never leaves the machine (RFC 8252 §7.3; the local partner app on 127.0.0.1:8000). Whether it
    is registered is the server's business: it compares exactly, so it is sent exactly as given."""
    return check_secure_url(
        url, what="redirect_uri", allow_insecure_loopback=True, error=ConfigurationError
    )


_DEFAULT_PORTS = {"https": 443, "http": 80}


def origin(url: str) -> tuple[str, str, int]:
    """The (scheme, host, port) a URL sends its request to, with the scheme's default port made
    explicit and the host lowercased, so that ``https://A.example`` and ``https://a.example:443``
    compare equal (RFC 6454 §4). ``url`` must already have passed :func:`check_secure_url`."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


def same_origin(url: str, base: str) -> bool:
    """True when ``url`` is on ``base``'s scheme, host and port."""
    return origin(url) == origin(base)
