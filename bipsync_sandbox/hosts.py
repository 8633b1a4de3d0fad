"""Tenant hosts built from the shared templates, and the reverse: which tenant a request is for.

Bipsync gives every customer its own hosts (``https://{client}-api.bipsync.com`` and
``https://{client}.bipsync.com``, see the platform reference, "Tenants and hosts"). The partner app and
the sandbox share only these two templates. Locally they are path based
(``http://127.0.0.1:8100/t/{tenant}/api``), in a host-based deployment the tenant sits in the host
name; :class:`HostTemplate` handles both.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

TENANT_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
PLACEHOLDER = "{tenant}"
_SLUG_GROUP = r"(?P<tenant>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"


def is_valid_slug(slug: str) -> bool:
    return bool(TENANT_SLUG_RE.match(slug))


@dataclass(frozen=True)
class TemplateMatch:
    tenant: str
    rest: str


class HostTemplate:
    """One base-URL template with a ``{tenant}`` placeholder."""

    def __init__(self, template: str, *, name: str) -> None:
        if template.count(PLACEHOLDER) != 1:
            raise ImproperlyConfigured(f"{name} must contain {PLACEHOLDER} exactly once.")
        probe = urlsplit(template.replace(PLACEHOLDER, "tenant"))
        if probe.scheme not in {"http", "https"} or not probe.netloc:
            raise ImproperlyConfigured(f"{name} must be an absolute http(s) URL.")
        if probe.query or probe.fragment:
            raise ImproperlyConfigured(f"{name} must not have a query or fragment.")
        self.template = template.rstrip("/")
        self.name = name
        without_scheme = self.template.split("://", 1)[1]
        netloc, _, path = without_scheme.partition("/")
        path = "/" + path if path else ""
        # Path-based templates are matched on the path alone so that the sandbox answers whatever
        # host name it is reached by (127.0.0.1, localhost, a compose service name).
        self.path_based = PLACEHOLDER in path
        self.host_template = netloc.lower()
        self.path_template = path
        if self.path_based:
            self._pattern = re.compile(
                "^"
                + re.escape(path).replace(re.escape(PLACEHOLDER), _SLUG_GROUP)
                + "(?P<rest>/.*)?$"
            )
            self._host_pattern: re.Pattern[str] | None = None
        else:
            self._host_pattern = re.compile(
                "^"
                + re.escape(self.host_template).replace(re.escape(PLACEHOLDER), _SLUG_GROUP)
                + "$"
            )
            self._pattern = re.compile("^" + re.escape(path) + "(?P<rest>/.*)?$")

    def base(self, slug: str) -> str:
        if not is_valid_slug(slug):
            raise ValueError("Not a valid tenant slug.")
        return self.template.replace(PLACEHOLDER, slug)

    def match(self, host: str, path: str) -> TemplateMatch | None:
        if self._host_pattern is not None:
            host_match = self._host_pattern.match(host.lower())
            if host_match is None:
                return None
            path_match = self._pattern.match(path)
            if path_match is None:
                return None
            return TemplateMatch(host_match.group("tenant"), path_match.group("rest") or "/")
        path_match = self._pattern.match(path)
        if path_match is None:
            return None
        return TemplateMatch(path_match.group("tenant"), path_match.group("rest") or "/")

    def allowed_host(self) -> str:
        """An ALLOWED_HOSTS entry that admits this template's hosts."""
        host = (
            self.host_template.rsplit(":", 1)[0]
            if "]" not in self.host_template
            else self.host_template
        )
        if PLACEHOLDER not in host:
            return host
        # "{tenant}-api.bipsync.com" -> ".bipsync.com" (Django's subdomain wildcard).
        after = host.split(PLACEHOLDER, 1)[1]
        return after[after.index(".") :] if "." in after else "*"


@functools.cache
def api_template() -> HostTemplate:
    from django.conf import settings

    return HostTemplate(settings.BIPSYNC_API_BASE_TEMPLATE, name="BIPSYNC_API_BASE_TEMPLATE")


@functools.cache
def web_template() -> HostTemplate:
    from django.conf import settings

    return HostTemplate(settings.BIPSYNC_WEB_BASE_TEMPLATE, name="BIPSYNC_WEB_BASE_TEMPLATE")
