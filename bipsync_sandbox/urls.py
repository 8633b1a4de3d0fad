"""URLs of the sandbox.

Tenant requests arrive here already routed by :mod:`bipsync_sandbox.middleware`: the API host
tree is ``_api/`` and the web host tree is ``_web/``.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, URLResolver, include, path

from bipsync_sandbox import about, hosts
from bipsync_sandbox.api import admin_api as api_admin
from bipsync_sandbox.api import graph_admin, rules_admin, writes_admin
from bipsync_sandbox.authserver import api_views, pages
from bipsync_sandbox.control import admin_api, grants_api
from bipsync_sandbox.identity.models import Tenant
from bipsync_sandbox.middleware import API_PREFIX


def rfc8414_metadata(request: HttpRequest, issuer_path: str) -> HttpResponse:
    """RFC 8414 §3.1's form for issuers with a path: /.well-known/oauth-authorization-server/{path}.

    Bipsync documents ``{api}/.well-known/oauth-authorization-server``; this form is served too so
    that generic RFC 8414 clients work against the path-based local hosts.
    """
    match = hosts.api_template().match(request.get_host(), "/" + issuer_path)
    tenant = (
        Tenant.objects.filter(slug=match.tenant).first() if match and match.rest == "/" else None
    )
    if tenant is None:
        return JsonResponse({"error": "not_found"}, status=404)
    request.sandbox_tenant = tenant  # type: ignore[attr-defined]
    request.path_info = API_PREFIX + "/.well-known/oauth-authorization-server"
    return api_views.metadata_endpoint(request)


api_patterns: list[URLPattern | URLResolver] = [
    path("_api/.well-known/oauth-authorization-server", api_views.metadata_endpoint),
    path("_api/v1/oauth/token", api_views.token_endpoint),
    path("_api/v1/oauth/device", api_views.device_authorization_endpoint),
    path("_api/v1/oauth/revoke", api_views.revocation_endpoint),
    path("_api/", include("bipsync_sandbox.api.urls")),
]

web_patterns: list[URLPattern | URLResolver] = [
    path("_web/", pages.home_page),
    path("_web/login", pages.login_page),
    path("_web/logout", pages.logout_page),
    path("_web/oauth/authorize", pages.authorize_page),
    path("_web/oauth/device", pages.device_page),
]

admin_patterns: list[URLPattern | URLResolver] = [
    path("healthz", admin_api.health),
    path("_sandbox/tenants", admin_api.create_tenant),
    path("_sandbox/tenants/<str:slug>/allowlist", admin_api.set_allowlist),
    path("_sandbox/tenants/<str:slug>/teams", admin_api.create_team),
    path("_sandbox/tenants/<str:slug>/users", admin_api.create_user),
    path("_sandbox/applications", admin_api.create_application),
    path(
        "_sandbox/applications/<str:client_id>/tenants/<str:slug>",
        admin_api.application_tenant,
    ),
    path("_sandbox/applications/<str:client_id>/tokens", admin_api.application_tokens),
    path("_sandbox/applications/<str:client_id>/grants", grants_api.mint_grants),
    path("_sandbox/grants/revoke", grants_api.revoke_grants),
    path("_sandbox/introspect", admin_api.introspect),
    path("_sandbox/introspect/batch", grants_api.introspect_batch),
    path("_sandbox/lifetimes", admin_api.lifetimes_view),
    path("_sandbox/faults", admin_api.faults_view),
    path("_sandbox/counters", admin_api.counters_view),
    path("_sandbox/research/generate", api_admin.generate_research),
    path("_sandbox/research/mutate", api_admin.mutate_research),
    path("_sandbox/api-settings", api_admin.api_settings_view),
    path("_sandbox/graphql-settings", graph_admin.graphql_settings_view),
    path("_sandbox/tenants/<str:slug>/generate/<str:kind>", graph_admin.generate_directory),
    path("_sandbox/tenants/<str:slug>/attachments", graph_admin.create_attachment),
    path("_sandbox/tenants/<str:slug>/notes/external-ids", writes_admin.note_counts),
    path("_sandbox/tenants/<str:slug>/notes/by-external-id", writes_admin.notes_by_external_id),
    path("_sandbox/tenants/<str:slug>/ingest/external-ids", writes_admin.ingest_counts),
    path("_sandbox/tenants/<str:slug>/ingest/by-external-id", writes_admin.ingest_by_external_id),
    path("_sandbox/tenants/<str:slug>/ingest", writes_admin.seed_ingest_record),
    path("_sandbox/tenants/<str:slug>/rules", rules_admin.rules_view),
    path("_sandbox/tenants/<str:slug>/rules/calls", rules_admin.rule_calls_view),
    path("_sandbox/tenants/<str:slug>/rules/<str:rule_id>", rules_admin.rule_view),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("", about.about_page),
    *admin_patterns,
    *api_patterns,
    *web_patterns,
    path(".well-known/oauth-authorization-server/<path:issuer_path>", rfc8414_metadata),
]
