from __future__ import annotations

import pytest

from bipsync_partner.oauth import ConfigurationError, HostTemplates, resolve_tenant, validate_slug


def test_it_builds_production_hosts_from_a_slug() -> None:
    tenant = resolve_tenant("acme")
    assert tenant.api_base == "https://acme-api.bipsync.com"
    assert tenant.web_base == "https://acme.bipsync.com"
    assert tenant.issuer == tenant.api_base


def test_it_builds_sandbox_hosts_from_path_templates() -> None:
    templates = HostTemplates(
        "http://127.0.0.1:8100/t/{tenant}/api/", "http://127.0.0.1:8100/t/{tenant}/web"
    )
    tenant = resolve_tenant("acme-2", templates)
    assert tenant.issuer == "http://127.0.0.1:8100/t/acme-2/api"
    assert tenant.web_base == "http://127.0.0.1:8100/t/acme-2/web"


@pytest.mark.parametrize(
    "slug",
    [
        pytest.param("", id="empty"),
        pytest.param("Acme", id="uppercase"),
        pytest.param("-acme", id="leading-hyphen"),
        pytest.param("acme-", id="trailing-hyphen"),
        pytest.param("acme\n", id="trailing-newline"),
        pytest.param("acme.evil.com", id="dots"),
        pytest.param("acme/../x", id="path"),
        pytest.param("evil.com#", id="fragment"),
        pytest.param("ac me", id="space"),
        pytest.param("a" * 64, id="too-long"),
        pytest.param("acmé", id="non-ascii"),
        pytest.param("{tenant}", id="placeholder"),
        pytest.param(None, id="none"),
    ],
)
def test_it_rejects_anything_but_a_plain_slug(slug: object) -> None:
    with pytest.raises(ConfigurationError) as raised:
        validate_slug(slug)
    assert raised.value.error == "invalid_tenant"
    assert not raised.value.transient


def test_it_accepts_the_longest_slug() -> None:
    assert validate_slug("a" * 63) == "a" * 63


@pytest.mark.parametrize(
    ("api", "web"),
    [
        pytest.param("https://bipsync.com", "https://{tenant}.bipsync.com", id="no-placeholder"),
        pytest.param(
            "https://{tenant}.{tenant}.com", "https://{tenant}.bipsync.com", id="two-placeholders"
        ),
        pytest.param("ftp://{tenant}.bipsync.com", "https://{tenant}.bipsync.com", id="ftp"),
        pytest.param("https://{tenant}.x.com?a=1", "https://{tenant}.x.com", id="query"),
        pytest.param("https://{tenant}.x.com/{0}", "https://{tenant}.x.com", id="format-field"),
        pytest.param("{tenant}", "https://{tenant}.x.com", id="not-absolute"),
    ],
)
def test_it_rejects_unusable_host_templates(api: str, web: str) -> None:
    with pytest.raises(ConfigurationError):
        HostTemplates(api, web)
