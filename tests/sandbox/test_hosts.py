"""Tenant hosts from the shared templates, path based and host based."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from bipsync_sandbox.hosts import HostTemplate, is_valid_slug


def test_it_builds_and_matches_path_based_bases() -> None:
    template = HostTemplate("http://127.0.0.1:8100/t/{tenant}/api", name="T")
    assert template.base("acme") == "http://127.0.0.1:8100/t/acme/api"
    match = template.match("localhost:8100", "/t/acme/api/v1/oauth/token")
    assert match is not None
    assert (match.tenant, match.rest) == ("acme", "/v1/oauth/token")
    assert template.match("x", "/t/acme/apiv1") is None
    assert template.match("x", "/t/ACME/api/") is None


def test_it_builds_and_matches_host_based_bases() -> None:
    template = HostTemplate("https://{tenant}-api.bipsync.com", name="T")
    assert template.base("acme") == "https://acme-api.bipsync.com"
    match = template.match("Acme-API.bipsync.com", "/v1/research")
    assert match is not None
    assert (match.tenant, match.rest) == ("acme", "/v1/research")
    assert template.match("acme.bipsync.com", "/v1/research") is None
    assert template.allowed_host() == ".bipsync.com"


@pytest.mark.parametrize("slug", ["acme", "a", "a-b-9", "x" * 63])
def test_it_accepts_valid_slugs(slug: str) -> None:
    assert is_valid_slug(slug)


@pytest.mark.parametrize("slug", ["", "-a", "a-", "A", "a_b", "a.b", "x" * 64, "a/b"])
def test_it_rejects_invalid_slugs(slug: str) -> None:
    assert not is_valid_slug(slug)
    with pytest.raises(ValueError, match="slug"):
        HostTemplate("http://h/t/{tenant}", name="T").base(slug)


@pytest.mark.parametrize(
    "bad",
    ["http://h/t/api", "ftp://{tenant}.x", "https://{tenant}.x/?q=1", "http://{tenant}/{tenant}"],
)
def test_it_refuses_bad_templates(bad: str) -> None:
    with pytest.raises(ImproperlyConfigured):
        HostTemplate(bad, name="T")
