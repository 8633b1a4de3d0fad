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

``sandbox_world`` (function scope) -> :class:`SandboxWorld`
    A fresh tenant (unique slug) with a team, an admin and a member user, and four applications
    enabled for it: ``user_app`` (confidential, authorization code + refresh), ``service_app``
    (confidential, service account), ``device_app`` (public, device code + refresh) and
    ``team_app`` (the customer's own client-credentials app, owned by the team).

:class:`Sandbox` API (all admin calls raise :class:`SandboxError` on a non-2xx answer)::

    sandbox.base_url: str                    # http://127.0.0.1:PORT
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
                      client_id=None, grant_type=None, path_prefix=None) -> dict   # kind: status | slow | close | lose_response | rate_limit
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

import base64
import contextlib
import hashlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from devtools.services import process_alive
from tests.support.processes import die_with_parent

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8000/connections/callback/"
DEMO_SCOPES = ("rest_api:read", "rest_api:write", "rest_api:fields:read")


class SandboxError(AssertionError):
    """The sandbox refused an admin call or a page step; the message says what it answered."""


# --- PKCE / URLs ------------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(48)[:64]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    return verifier, challenge.rstrip("=")


def authorization_url(
    web_base: str,
    client_id: str,
    redirect_uri: str,
    *,
    scope: str = "rest_api:read",
    state: str | None = None,
    code_challenge: str | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri}
    if scope:
        params["scope"] = scope
    if state is not None:
        params["state"] = state
    if code_challenge is not None:
        params["code_challenge"] = code_challenge
        params["code_challenge_method"] = "S256"
    params.update(extra or {})
    return f"{web_base}/oauth/authorize?{urlencode(params)}"


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


# --- the running server -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_url() -> str:
    raw = os.environ.get("DATABASE_URL", "")
    if not raw:
        return DEFAULT_SERVER_URL
    parts = urlsplit(raw)
    return f"{parts.scheme}://{parts.netloc}"


def _recreate_database(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        # Sessions run concurrently on a shared machine, so every session has its own database;
        # databases of sessions that died without cleaning up are dropped here.
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'test_bipsync_sandbox_%%'"
        ).fetchall()
        for (stale,) in rows:
            suffix = stale.rsplit("_", 1)[-1]
            if suffix.isdigit() and not process_alive(int(suffix)):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(stale))
                )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


class Sandbox:
    """A running sandbox server and a client for its admin API and pages."""

    def __init__(
        self,
        base_url: str,
        admin_key: str,
        *,
        process: subprocess.Popen[bytes] | None = None,
        database_url: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.database_url = database_url
        # The environment the server runs with, for running sandbox commands against it.
        self.env = dict(env or {})
        self.api_template = self.base_url + "/t/{tenant}/api"
        self.web_template = self.base_url + "/t/{tenant}/web"
        self.admin_key = admin_key
        self.process = process
        self.http = httpx.Client(timeout=30.0, headers={"X-Sandbox-Admin-Key": admin_key})

    # -- addresses ---------------------------------------------------------------------------
    def api_base(self, tenant: str) -> str:
        return self.api_template.replace("{tenant}", tenant)

    def web_base(self, tenant: str) -> str:
        return self.web_template.replace("{tenant}", tenant)

    def token_url(self, tenant: str) -> str:
        return self.api_base(tenant) + "/v1/oauth/token"

    def device_url(self, tenant: str) -> str:
        return self.api_base(tenant) + "/v1/oauth/device"

    def revoke_url(self, tenant: str) -> str:
        return self.api_base(tenant) + "/v1/oauth/revoke"

    def metadata_url(self, tenant: str) -> str:
        return self.api_base(tenant) + "/.well-known/oauth-authorization-server"

    def authorize_url(self, tenant: str) -> str:
        return self.web_base(tenant) + "/oauth/authorize"

    # -- admin API -----------------------------------------------------------------------------
    def admin(
        self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        response = self.http.request(method, self.base_url + path, json=json, params=params)
        if response.status_code >= 300:
            raise SandboxError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def create_tenant(self, slug: str, *, ip_allowlist: Sequence[str] = ()) -> dict[str, Any]:
        result: dict[str, Any] = self.admin(
            "POST", "/_sandbox/tenants", {"slug": slug, "ip_allowlist": list(ip_allowlist)}
        )
        return result

    def create_team(self, tenant: str, name: str, *, team_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if team_id:
            body["id"] = team_id
        result: dict[str, Any] = self.admin("POST", f"/_sandbox/tenants/{tenant}/teams", body)
        return result

    def create_user(
        self,
        tenant: str,
        team_id: str | None,
        email: str,
        password: str,
        admin: bool = False,
        *,
        name: str | None = None,
        active: bool = True,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "email": email,
            "password": password,
            "team_id": team_id,
            "admin": admin,
            "active": active,
        }
        if name:
            body["name"] = name
        result: dict[str, Any] = self.admin("POST", f"/_sandbox/tenants/{tenant}/users", body)
        return result

    def create_application(
        self,
        name: str,
        *,
        confidential: bool = True,
        redirect_uris: Sequence[str] = (),
        grant_types: Sequence[str] = ("authorization_code", "refresh_token"),
        scopes: Sequence[str] = ("rest_api:read",),
        service_account: bool = False,
        tenants: Sequence[str] = (),
        team_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "confidential": confidential,
            "redirect_uris": list(redirect_uris),
            "grant_types": list(grant_types),
            "scopes": list(scopes),
            "service_account": service_account,
            "tenants": list(tenants),
            "team_id": team_id,
        }
        if client_id:
            body["client_id"] = client_id
        if client_secret:
            body["client_secret"] = client_secret
        result: dict[str, Any] = self.admin("POST", "/_sandbox/applications", body)
        return result

    def enable_application(self, client_id: str, tenant: str) -> None:
        self.admin("POST", f"/_sandbox/applications/{client_id}/tenants/{tenant}")

    def disable_application(self, client_id: str, tenant: str) -> None:
        self.admin("DELETE", f"/_sandbox/applications/{client_id}/tenants/{tenant}")

    def set_allowlist(self, tenant: str, cidrs: Sequence[str]) -> dict[str, Any]:
        result: dict[str, Any] = self.admin(
            "PUT", f"/_sandbox/tenants/{tenant}/allowlist", {"cidrs": list(cidrs)}
        )
        return result

    def set_lifetimes(
        self,
        *,
        access: int | None = None,
        refresh: int | None = None,
        code: int | None = None,
        device: int | None = None,
        device_interval: int | None = None,
        client_id: str | None = None,
    ) -> dict[str, Any]:
        """Override lifetimes (seconds) for all apps, or for one app when ``client_id`` is given.

        Prefer the per-app form in tests: it cannot leak into other tests.
        """
        body: dict[str, Any] = {
            key: value
            for key, value in {
                "access": access,
                "refresh": refresh,
                "code": code,
                "device": device,
                "device_interval": device_interval,
            }.items()
            if value is not None
        }
        if client_id:
            body["client_id"] = client_id
        result: dict[str, Any] = self.admin("PUT", "/_sandbox/lifetimes", body)
        return result

    def reset_lifetimes(self, client_id: str | None = None) -> None:
        self.admin(
            "DELETE", "/_sandbox/lifetimes", params={"client_id": client_id} if client_id else None
        )

    def set_fault(
        self,
        kind: str,
        *,
        target: str = "token",
        status: int | None = None,
        delay_ms: int = 0,
        when: str = "before",
        count: int | None = None,
        tenant: str | None = None,
        client_id: str | None = None,
        grant_type: str | None = None,
        path_prefix: str | None = None,
    ) -> dict[str, Any]:
        """Switch a fault on. ``count`` limits it to the next N matching requests.

        Scope faults with ``client_id`` (or ``tenant``) so that they cannot hit other tests.
        """
        body: dict[str, Any] = {"kind": kind, "target": target, "delay_ms": delay_ms, "when": when}
        for key, value in {
            "status": status,
            "count": count,
            "tenant": tenant,
            "client_id": client_id,
            "grant_type": grant_type,
            "path_prefix": path_prefix,
        }.items():
            if value is not None:
                body[key] = value
        result: dict[str, Any] = self.admin("POST", "/_sandbox/faults", body)
        return result

    def clear_faults(self, *, client_id: str | None = None, target: str | None = None) -> None:
        params = {k: v for k, v in {"client_id": client_id, "target": target}.items() if v}
        self.admin("DELETE", "/_sandbox/faults", params=params or None)

    def counters(self, client_id: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.admin(
            "GET", "/_sandbox/counters", params={"client_id": client_id} if client_id else None
        )
        return result

    def token_requests(
        self, client_id: str, grant_type: str = "refresh_token", outcome: str | None = "ok"
    ) -> int:
        """How many token requests this client made with this grant type (and outcome)."""
        by_outcome = (
            self.counters(client_id).get(client_id, {}).get("token", {}).get(grant_type, {})
        )
        if outcome is None:
            return sum(by_outcome.values())
        return int(by_outcome.get(outcome, 0))

    def expire_tokens(self, client_id: str, *, access: bool = True, refresh: bool = False) -> None:
        if access:
            self.admin(
                "POST", f"/_sandbox/applications/{client_id}/tokens", {"action": "expire_access"}
            )
        if refresh:
            self.admin(
                "POST", f"/_sandbox/applications/{client_id}/tokens", {"action": "expire_refresh"}
            )

    def revoke_tokens(self, client_id: str) -> None:
        self.admin("POST", f"/_sandbox/applications/{client_id}/tokens", {"action": "revoke"})

    def expire_codes(self, client_id: str, *, device: bool = False) -> None:
        """Expire the client's authorization codes (or device codes) now."""
        action = "expire_device_codes" if device else "expire_codes"
        self.admin("POST", f"/_sandbox/applications/{client_id}/tokens", {"action": action})

    def introspect(self, token: str) -> dict[str, Any]:
        """Whether a token is active and whom it acts as: kind (user / service_account / team),
        user_id, service_account_id, team_id, scope, granted_scope, client_id, grant_type, ..."""
        result: dict[str, Any] = self.admin("POST", "/_sandbox/introspect", {"token": token})
        return result

    # -- research (REST slice) ---------------------------------------------------------------------
    def generate_research(
        self,
        tenant: str,
        team_id: str,
        count: int,
        *,
        seed: int | None = None,
        share_with: Sequence[str] = (),
        private_fraction: float = 0.1,
    ) -> dict[str, Any]:
        """Create ``count`` documents in the team; ``{"created": n, "seconds": s}``.

        ``share_with``: client ids whose service accounts see every non-private document.
        """
        body: dict[str, Any] = {
            "tenant": tenant,
            "team": team_id,
            "count": count,
            "share_with": list(share_with),
            "private_fraction": private_fraction,
        }
        if seed is not None:
            body["seed"] = seed
        result: dict[str, Any] = self.admin("POST", "/_sandbox/research/generate", body)
        return result

    def mutate_research(
        self,
        tenant: str,
        team_id: str,
        fraction: float,
        *,
        seed: int | None = None,
        share_with: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Edit, delete and create documents; ``{"edited", "deleted", "created", "seconds"}``."""
        body: dict[str, Any] = {
            "tenant": tenant,
            "team": team_id,
            "fraction": fraction,
            "share_with": list(share_with),
        }
        if seed is not None:
            body["seed"] = seed
        result: dict[str, Any] = self.admin("POST", "/_sandbox/research/mutate", body)
        return result

    def set_api_rate_limit(self, requests: int, window: int = 1) -> dict[str, Any]:
        """At most ``requests`` REST calls per ``window`` seconds per access token (0 = off)."""
        result: dict[str, Any] = self.admin(
            "PUT", "/_sandbox/api-settings", {"rate_limit": requests, "rate_window": window}
        )
        return result

    def reset_api_settings(self) -> None:
        """Back to the configured rate limit, and forget every token's request count."""
        self.admin("DELETE", "/_sandbox/api-settings")

    def api_requests(
        self, client_id: str, route: str = "GET /v1/research", outcome: str | None = "ok"
    ) -> int:
        """REST calls this client made to ``route`` ("GET /v1/research", "POST /v2/research/note",
        ...) with this outcome: "ok", an error code ("invalid_token", "rate_limited", ...),
        "fault_503", "fault_close", ...; ``None`` counts them all."""
        by_outcome = self.counters(client_id).get(client_id, {}).get("api", {}).get(route, {})
        if outcome is None:
            return sum(by_outcome.values())
        return int(by_outcome.get(outcome, 0))

    # -- people at the pages ----------------------------------------------------------------------
    def _browser(self) -> httpx.Client:
        return httpx.Client(timeout=30.0, follow_redirects=False)

    @staticmethod
    def _csrf(page: httpx.Response) -> str:
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if not match:
            raise SandboxError(f"No form on {page.url} ({page.status_code}): {page.text[:500]}")
        return match.group(1)

    def _sign_in_if_asked(
        self, browser: httpx.Client, response: httpx.Response, email: str, password: str
    ) -> httpx.Response:
        location = response.headers.get("location", "")
        if response.status_code not in (302, 303) or "/login?" not in location:
            return response
        login_url = urljoin(str(response.url), location)
        page = browser.get(login_url)
        next_url = query_of(login_url).get("next", "")
        posted = browser.post(
            login_url.split("?", 1)[0],
            data={
                "csrfmiddlewaretoken": self._csrf(page),
                "email": email,
                "password": password,
                "next": next_url,
            },
        )
        if posted.status_code != 302:
            raise SandboxError(f"Sign-in refused ({posted.status_code}) for {email}")
        return browser.get(urljoin(str(posted.url), posted.headers["location"]))

    @contextlib.contextmanager
    def sign_in(self, tenant: str, email: str, password: str) -> Iterator[httpx.Client]:
        """``with sandbox.sign_in(...) as browser``: a cookie jar signed in to the tenant's pages."""
        with self._browser() as browser:
            login_url = self.web_base(tenant) + "/login"
            page = browser.get(login_url)
            posted = browser.post(
                login_url,
                data={
                    "csrfmiddlewaretoken": self._csrf(page),
                    "email": email,
                    "password": password,
                },
            )
            if posted.status_code != 302:
                raise SandboxError(f"Sign-in refused ({posted.status_code}) for {email}")
            yield browser

    def authorize(
        self,
        authorize_url: str,
        email: str,
        password: str,
        approve: bool = True,
        *,
        team_id: str | None = None,
    ) -> str:
        """Sign in and approve (or deny) on the consent page; return the redirect to the client."""
        with self._browser() as browser:
            response = browser.get(authorize_url)
            response = self._sign_in_if_asked(browser, response, email, password)
            if response.status_code in (302, 303):
                # An error the client hears about on its redirect URI (before any consent).
                return urljoin(str(response.url), response.headers["location"])
            if response.status_code != 200:
                raise SandboxError(
                    f"Consent page answered {response.status_code}: {_text(response)}"
                )
            data = {
                "csrfmiddlewaretoken": self._csrf(response),
                "decision": "approve" if approve else "deny",
            }
            if team_id:
                data["team_id"] = team_id
            decided = browser.post(str(response.url), data=data)
            if decided.status_code not in (302, 303):
                raise SandboxError(f"Consent answered {decided.status_code}: {_text(decided)}")
            return urljoin(str(decided.url), decided.headers["location"])

    def approve_device(
        self,
        tenant: str,
        user_code: str,
        email: str,
        password: str,
        approve: bool = True,
        *,
        team_id: str | None = None,
    ) -> None:
        """Enter ``user_code`` on the device page as ``email`` and approve (or deny)."""
        url = self.web_base(tenant) + "/oauth/device?" + urlencode({"user_code": user_code})
        with self._browser() as browser:
            response = self._sign_in_if_asked(browser, browser.get(url), email, password)
            if response.status_code != 200:
                raise SandboxError(
                    f"Device page answered {response.status_code}: {_text(response)}"
                )
            data = {
                "csrfmiddlewaretoken": self._csrf(response),
                "user_code": user_code,
                "decision": "approve" if approve else "deny",
            }
            if team_id:
                data["team_id"] = team_id
            done = browser.post(self.web_base(tenant) + "/oauth/device", data=data)
            if done.status_code != 200:
                raise SandboxError(f"Device decision answered {done.status_code}: {_text(done)}")

    def close(self) -> None:
        self.http.close()


def _text(response: httpx.Response) -> str:
    """The visible text of a page, for assertion messages."""
    text = re.sub(r"<style.*?</style>|<[^>]+>", " ", response.text, flags=re.S)
    return re.sub(r"\s+", " ", text).strip()[:600]


def start_sandbox(*, workers: int = 2, threads: int = 4) -> Iterator[Sandbox]:
    server_url = _server_url()
    db_name = f"test_bipsync_sandbox_{os.getpid()}"
    _recreate_database(server_url, db_name)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    admin_key = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "SANDBOX_DATABASE_URL": f"{server_url}/{db_name}",
        "SANDBOX_SECRET_KEY": secrets.token_urlsafe(40),
        "SANDBOX_ADMIN_KEY": admin_key,
        "SANDBOX_DEBUG": "0",
        "SANDBOX_PASSWORD_ITERATIONS": "1000",
        "BIPSYNC_API_BASE_TEMPLATE": base_url + "/t/{tenant}/api",
        "BIPSYNC_WEB_BASE_TEMPLATE": base_url + "/t/{tenant}/web",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log_path = Path(
        os.environ.get("SANDBOX_TEST_LOG", f"/tmp/bipsync-sandbox-test-{os.getpid()}.log")
    )
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bipsync_sandbox",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    sandbox = Sandbox(
        base_url, admin_key, process=process, database_url=env["SANDBOX_DATABASE_URL"], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"The sandbox exited with {process.returncode}: {log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(base_url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"The sandbox did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield sandbox
    finally:
        sandbox.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        log.close()
        _drop_database(server_url, db_name)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    yield from start_sandbox()


# --- a fresh world per test -------------------------------------------------------------------


@dataclass(frozen=True)
class WorldUser:
    id: str
    email: str
    password: str


@dataclass(frozen=True)
class WorldApp:
    client_id: str
    client_secret: str | None
    redirect_uri: str | None
    scopes: tuple[str, ...]

    @property
    def auth(self) -> dict[str, str]:
        """Client authentication as form/JSON body parameters (client_secret_post / public)."""
        body = {"client_id": self.client_id}
        if self.client_secret:
            body["client_secret"] = self.client_secret
        return body


@dataclass(frozen=True)
class AuthorizationStart:
    url: str
    state: str
    verifier: str


@dataclass
class SandboxWorld:
    sandbox: Sandbox
    tenant: str
    team_id: str
    admin: WorldUser
    member: WorldUser
    user_app: WorldApp
    service_app: WorldApp
    device_app: WorldApp
    team_app: WorldApp
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))

    @property
    def api_base(self) -> str:
        return self.sandbox.api_base(self.tenant)

    @property
    def web_base(self) -> str:
        return self.sandbox.web_base(self.tenant)

    @property
    def token_url(self) -> str:
        return self.sandbox.token_url(self.tenant)

    def start(self, app: WorldApp, *, scope: str | None = None, **extra: str) -> AuthorizationStart:
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        assert app.redirect_uri
        url = authorization_url(
            self.web_base,
            app.client_id,
            app.redirect_uri,
            scope=" ".join(app.scopes) if scope is None else scope,
            state=state,
            code_challenge=challenge,
            extra=extra or None,
        )
        return AuthorizationStart(url, state, verifier)

    def exchange(self, app: WorldApp, code: str, verifier: str) -> httpx.Response:
        return self.http.post(
            self.token_url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": app.redirect_uri or "",
                "code_verifier": verifier,
                **app.auth,
            },
        )

    def connect(
        self,
        app: WorldApp | None = None,
        *,
        user: WorldUser | None = None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """Run the authorization-code flow as ``user`` (default: the admin); return the tokens."""
        app = app or self.user_app
        user = user or self.admin
        start = self.start(app, scope=scope)
        location = self.sandbox.authorize(start.url, user.email, user.password)
        params = query_of(location)
        if "code" not in params:
            raise SandboxError(f"No code on the redirect: {params}")
        response = self.exchange(app, params["code"], start.verifier)
        if response.status_code != 200:
            raise SandboxError(f"Code exchange answered {response.status_code}: {response.text}")
        tokens: dict[str, Any] = response.json()
        return tokens

    def refresh(self, app: WorldApp, refresh_token: str, **extra: str) -> httpx.Response:
        return self.http.post(
            self.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                **app.auth,
                **extra,
            },
        )


def make_world(sandbox: Sandbox, *, redirect_uri: str = DEFAULT_REDIRECT_URI) -> SandboxWorld:
    slug = "t" + uuid.uuid4().hex[:12]
    sandbox.create_tenant(slug)
    team = sandbox.create_team(slug, "Research")
    password = "pw-" + secrets.token_urlsafe(12)
    admin = sandbox.create_user(
        slug, team["id"], f"admin@{slug}.example", password, admin=True, name="Ada Admin"
    )
    member = sandbox.create_user(
        slug, team["id"], f"member@{slug}.example", password, name="Max Member"
    )

    def app(**kwargs: Any) -> WorldApp:
        created = sandbox.create_application(
            client_id=f"{kwargs.pop('prefix')}-{slug}", tenants=[slug], **kwargs
        )
        uris = kwargs.get("redirect_uris") or [None]
        return WorldApp(
            created["client_id"], created["client_secret"], uris[0], tuple(kwargs["scopes"])
        )

    return SandboxWorld(
        sandbox=sandbox,
        tenant=slug,
        team_id=team["id"],
        admin=WorldUser(admin["id"], admin["email"], password),
        member=WorldUser(member["id"], member["email"], password),
        user_app=app(
            prefix="user",
            name="Partner Sync",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            scopes=list(DEMO_SCOPES),
        ),
        service_app=app(
            prefix="svc",
            name="Partner Sync (service account)",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            scopes=list(DEMO_SCOPES),
            service_account=True,
        ),
        device_app=app(
            prefix="device",
            name="Partner CLI",
            confidential=False,
            grant_types=["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            scopes=list(DEMO_SCOPES),
        ),
        team_app=app(
            prefix="team",
            name="Customer nightly export",
            grant_types=["client_credentials"],
            scopes=["rest_api:read", "rest_api:write"],
            team_id=team["id"],
        ),
    )


@pytest.fixture
def sandbox_world(sandbox: Sandbox) -> Iterator[SandboxWorld]:
    world = make_world(sandbox)
    try:
        yield world
    finally:
        world.http.close()
