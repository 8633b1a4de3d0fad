"""pytest plugin: a running Bipsync sandbox (gunicorn subprocess) and fresh "worlds" in it.

Register with ``pytest_plugins = ["tests.support.sandbox"]`` in ``tests/conftest.py``.

Fixtures
--------
``sandbox`` (session scope) -> :class:`Sandbox`
    Starts ``python -m bipsync_sandbox serve`` (migrate + gunicorn, 2 workers x 4 threads)
    on a free port against its own database ``test_bipsync_sandbox_<pid>`` (created fresh, dropped
    at the end; the server part of ``DATABASE_URL`` is reused if set, else
    ``postgres://postgres@127.0.0.1:5432``). The subprocess's host templates are
    ``http://127.0.0.1:{port}/t/{tenant}/api`` and ``.../web``.

The partner's side has an address of the session's own too: ``sandbox.partner_url`` is
    ``http://127.0.0.1:{port}`` on a port the session holds bound and never listens on, so that a
    redirect to ``sandbox.redirect_uri`` (its ``/connections/callback/``) reaches nothing, even
    while ``bin/run`` serves the development stack on 127.0.0.1:8000 on the same machine.

``sandbox_world`` (function scope) -> :class:`SandboxWorld`
    A fresh tenant (unique slug) with a team, an admin and a member user, and four applications
    enabled for it: ``user_app`` (confidential, authorization code + refresh), ``service_app``
    (confidential, service account), ``device_app`` (public, device code + refresh) and
    ``team_app`` (the customer's own client-credentials app, owned by the team).

:class:`Sandbox` (``devtools.sandbox_server``) is a :class:`~bipsync_sandbox.client.SandboxClient`
(all admin calls raise :class:`SandboxError` on a non-2xx answer) with the server's process::

    sandbox.base_url: str                    # http://127.0.0.1:PORT
    sandbox.partner_url / redirect_uri: str  # the partner's address, reserved (see above)
    sandbox.database_url / env               # the server's database and environment (to run commands)
    sandbox.api_template / web_template: str # with {tenant}
    sandbox.admin_key: str
    sandbox.api_base(tenant) -> str          # == issuer
    sandbox.web_base(tenant) -> str
    sandbox.token_url(tenant) / device_url(tenant) / revoke_url(tenant) / authorize_url(tenant) / metadata_url(tenant) -> str
    sandbox.create_tenant(slug, *, ip_allowlist=()) -> dict   # slug, api_base, web_base, issuer, ...
    sandbox.create_team(tenant, name, *, team_id=None) -> dict  # id (24 hex), name, tenant
    sandbox.create_user(tenant, team_id, email, password, admin=False, *, name=None, active=True) -> dict  # id, email, ...
    sandbox.create_application(name, *, confidential=True, redirect_uris=(), grant_types=("authorization_code", "refresh_token"),
                               scopes=("rest_api:read",), service_account=False, tenants=(), team_id=None,
                               client_id=None, client_secret=None) -> dict  # client_id, client_secret (None if public), ...
    sandbox.enable_application(client_id, tenant) / disable_application(client_id, tenant)
    sandbox.set_allowlist(tenant, cidrs) -> dict
    sandbox.set_lifetimes(*, access=None, refresh=None, code=None, device=None, device_interval=None, client_id=None) -> dict
    sandbox.reset_lifetimes(client_id=None)
    sandbox.set_fault(kind, *, target="token", status=None, delay_ms=0, when="before", count=None, tenant=None,
                      client_id=None, grant_type=None, path_prefix=None, alter=None, keep=None) -> dict
                      # kind: status | slow | close | lose_response | rate_limit | alter_response (alter)
                      #       | empty_page | short_page | end_early (keep) | status_after (commit, then status)
                      # also probability=0..1 (share of matching requests), method="POST"
    sandbox.clear_faults(*, client_id=None, target=None)
    sandbox.counters(client_id=None) -> dict  # {client_id: {endpoint: {grant_type: {outcome: n}}}}
    sandbox.token_requests(client_id, grant_type="refresh_token", outcome="ok") -> int
    sandbox.expire_tokens(client_id, *, access=True, refresh=False)
    sandbox.revoke_tokens(client_id)
    sandbox.expire_codes(client_id, *, device=False)
    sandbox.introspect(token) -> dict   # active, token_type, kind, user_id, service_account_id, team_id, scope, ...
    sandbox.generate_research(tenant, team_id, count, *, seed=None, share_with=(), private_fraction=0.1) -> dict  # created, seconds
    sandbox.mutate_research(tenant, team_id, fraction, *, seed=None, share_with=()) -> dict  # edited, deleted, created, seconds
    sandbox.set_api_rate_limit(requests, window=1) -> dict / sandbox.reset_api_settings()   # REST per-token rate limit
    sandbox.api_requests(client_id, route="GET /v1/research", outcome="ok") -> int   # REST calls counted (outcome None: all)
    sandbox.note_counts(tenant, source) -> {value: notes}          # notes per external id (2+ = written twice)
    sandbox.notes_by_external_id(tenant, source, value) -> list    # id, title, content, history, attachments (size, sha256)
    sandbox.ingest_counts(tenant, source) -> {value: records} / sandbox.ingest_records(tenant, source, value) -> list
    sandbox.seed_ingest_record(tenant, source, value, document_type, properties=None) -> dict   # even a duplicate
    with sandbox.sign_in(tenant, email, password) as browser: ...  # httpx.Client signed in to the pages
    sandbox.authorize(authorize_url, email, password, approve=True, *, team_id=None) -> str   # the redirect Location
    sandbox.approve_device(tenant, user_code, email, password, approve=True, *, team_id=None) -> None

``authorize`` and ``approve_device`` drive the sandbox's sign-in, consent and device pages over real
HTTP with a cookie jar, as a browser would, and raise :class:`SandboxError` when a page refuses.

Helpers: :func:`pkce_pair`, :func:`authorization_url`, :class:`SandboxWorld` (``world.start(app)``
builds an authorization request with PKCE and state; ``world.connect(app)`` runs the whole
authorization-code flow and returns the token response).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bipsync_sandbox.client import (
    SandboxError,
    authorization_url,
    pkce_pair,
    query_of,
)
from devtools.sandbox_server import CALLBACK_PATH, Sandbox, free_port, start_sandbox
from devtools.sandbox_world import (
    DEMO_SCOPES,
    GRAPHQL_SCOPES,
    AuthorizationStart,
    SandboxWorld,
    WorldApp,
    WorldUser,
    make_world,
)

__all__ = [
    "CALLBACK_PATH",
    "DEMO_SCOPES",
    "GRAPHQL_SCOPES",
    "REPO_ROOT",
    "AuthorizationStart",
    "Sandbox",
    "SandboxError",
    "SandboxWorld",
    "WorldApp",
    "WorldUser",
    "authorization_url",
    "free_port",
    "make_world",
    "pkce_pair",
    "query_of",
    "sandbox",
    "sandbox_world",
    "start_sandbox",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    yield from start_sandbox()


@pytest.fixture
def sandbox_world(sandbox: Sandbox) -> Iterator[SandboxWorld]:
    world = make_world(sandbox)
    try:
        yield world
    finally:
        world.http.close()
