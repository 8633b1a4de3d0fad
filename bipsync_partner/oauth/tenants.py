"""Tenant resolution: a validated slug plus two host templates give a tenant's hosts.

Every Bipsync customer has its own hosts (Bipsync reference, "Tenants and hosts"): the API base,
which is also the OAuth issuer, and the web base. They are built from configured templates with a
``{tenant}`` placeholder and a slug validated against a strict pattern, never from a URL typed by a
user (that would be an SSRF hole).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from bipsync_partner.oauth.errors import ConfigurationError

#: A DNS-label-like slug: lowercase letters, digits and inner hyphens, 1-63 characters.
SLUG_PATTERN: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
PLACEHOLDER: Final = "{tenant}"

DEFAULT_API_BASE_TEMPLATE: Final = "https://{tenant}-api.bipsync.com"
DEFAULT_WEB_BASE_TEMPLATE: Final = "https://{tenant}.bipsync.com"
#: The local sandbox's path-based templates (docs/bipsync.md, "Where each [choice] is a setting").
SANDBOX_API_BASE_TEMPLATE: Final = "http://127.0.0.1:8100/t/{tenant}/api"
SANDBOX_WEB_BASE_TEMPLATE: Final = "http://127.0.0.1:8100/t/{tenant}/web"


def validate_slug(slug: object) -> str:
    """Return ``slug`` if it is a plain tenant slug, else raise ``ConfigurationError``
    (``error="invalid_tenant"``). Nothing is normalised: ``"Acme"`` is refused, not lowercased,
    so that one tenant has exactly one spelling."""
    # fullmatch, not match: "$" alone would accept a trailing newline.
    if not isinstance(slug, str) or SLUG_PATTERN.fullmatch(slug) is None:
        raise ConfigurationError(
            "a tenant must be 1-63 lowercase letters, digits or inner hyphens",
            error="invalid_tenant",
        )
    return slug


def _validate_template(template: str, name: str) -> str:
    if template.count(PLACEHOLDER) != 1:
        raise ConfigurationError(f"{name} must contain {PLACEHOLDER} exactly once")
    probe = template.replace(PLACEHOLDER, "tenant")
    parts = urlsplit(probe)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"{name} must be an absolute http(s) URL")
    if parts.query or parts.fragment or "{" in probe or "}" in probe:
        raise ConfigurationError(f"{name} must not have a query, fragment or other braces")
    return template.rstrip("/")


@dataclass(frozen=True)
class HostTemplates:
    """The two host templates, validated on construction.

    ``api_base`` is e.g. ``https://{tenant}-api.bipsync.com``; ``web_base`` is e.g.
    ``https://{tenant}.bipsync.com``. A trailing slash is dropped so that the issuer built from the
    template compares equal to the one the server publishes.
    """

    api_base: str = DEFAULT_API_BASE_TEMPLATE
    web_base: str = DEFAULT_WEB_BASE_TEMPLATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_base", _validate_template(self.api_base, "api_base"))
        object.__setattr__(self, "web_base", _validate_template(self.web_base, "web_base"))


@dataclass(frozen=True)
class Tenant:
    """A resolved tenant. ``api_base`` is the OAuth issuer (RFC 8414 §2)."""

    slug: str
    api_base: str
    web_base: str

    @property
    def issuer(self) -> str:
        """The issuer identifier the tenant's metadata must publish, exactly."""
        return self.api_base


def resolve_tenant(slug: str, templates: HostTemplates | None = None) -> Tenant:
    """Validate ``slug`` and build the tenant's hosts from ``templates`` (production defaults).

    Raises ``ConfigurationError`` (``invalid_tenant``) for anything that is not a plain slug.
    """
    templates = templates or HostTemplates()
    slug = validate_slug(slug)
    # str.replace, not str.format: the template is configuration, not a format string.
    return Tenant(
        slug=slug,
        api_base=templates.api_base.replace(PLACEHOLDER, slug),
        web_base=templates.web_base.replace(PLACEHOLDER, slug),
    )
