"""A client of a running sandbox: its admin API and its pages, over real HTTP.

The one client the test suite, the soak and the benchmarks use to set up worlds, switch faults on
and read counters. It needs only httpx and the sandbox's address and admin key (``SANDBOX_ADMIN_KEY``),
so it works against a sandbox started by any means: ``python -m bipsync_sandbox serve``, compose, or
a partner's CI.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterator, Sequence
from typing import Any, Self
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx


class SandboxError(AssertionError):
    """The sandbox refused an admin call or a page step; the message says what it answered.

    An ``AssertionError``, because a refused set-up step in a test or a soak is a failed
    expectation of the caller's, reported as such."""


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


class SandboxClient:
    """A client of one sandbox's admin API (``/_sandbox/``, with the admin key) and of its pages,
    driven over real HTTP as a browser would."""

    def __init__(self, base_url: str, admin_key: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_template = self.base_url + "/t/{tenant}/api"
        self.web_template = self.base_url + "/t/{tenant}/web"
        self.admin_key = admin_key
        self.http = httpx.Client(timeout=timeout, headers={"X-Sandbox-Admin-Key": admin_key})

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
        alter: dict[str, Any] | None = None,
        keep: int | None = None,
        probability: float | None = None,
        method: str | None = None,
    ) -> dict[str, Any]:
        """Switch a fault on. ``count`` limits it to the next N matching requests; ``alter``
        (kind ``alter_response``) names the members to set in the answer (None removes one);
        ``keep`` (listing faults) how many results a page keeps; ``probability`` (0..1) makes
        it hit only that share of matching requests; ``method`` matches one HTTP method.
        Kinds for writes: ``lose_response`` (commit, then close without answering) and
        ``status_after`` (commit, then answer ``status``).

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
            "alter": alter,
            "keep": keep,
            "probability": probability,
            "method": method,
        }.items():
            if value is not None:
                body[key] = value
        result: dict[str, Any] = self.admin("POST", "/_sandbox/faults", body)
        return result

    def faults(self) -> list[dict[str, Any]]:
        """The faults switched on, with how many matches each has left (``remaining``)."""
        result: list[dict[str, Any]] = self.admin("GET", "/_sandbox/faults")
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

    def revoke_grants(self, grant_ids: Sequence[str]) -> int:
        """Revoke these grants (every token of each), as a Bipsync admin would; how many rows."""
        result = self.admin("POST", "/_sandbox/grants/revoke", {"grant_ids": list(grant_ids)})
        return int(result["revoked"])

    def mint_grants(self, client_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Mint grants in bulk for a client (the grants API), without the pages."""
        result: dict[str, Any] = self.admin(
            "POST", f"/_sandbox/applications/{client_id}/grants", body
        )
        return result

    def introspect_batch(self, tokens: Sequence[str]) -> list[dict[str, Any]]:
        """:meth:`introspect` for many tokens in one request, in their order."""
        result = self.admin("POST", "/_sandbox/introspect/batch", {"tokens": list(tokens)})
        answers: list[dict[str, Any]] = result["results"]
        return answers

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

    def set_token_subject_parameters(self, on: bool | None) -> None:
        """Send (True) or leave out (False) the token response's ``subject*`` parameters;
        None: back to SANDBOX_TOKEN_RESPONSE_INCLUDES_SUBJECT."""
        self.admin("PUT", "/_sandbox/api-settings", {"token_response_includes_subject": on})

    # -- the Rules engine -------------------------------------------------------------------------
    def create_rule(
        self,
        tenant: str,
        url: str,
        body: str,
        *,
        name: str = "Webhook",
        events: Sequence[str] = ("created", "modified", "deleted"),
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """A rule calling ``url`` with ``body`` (Mustache: ``{{event}}``, ``{{document._id}}``,
        ``{{document.title}}``, ``{{document.user._id}}``, ``{{document.created.sec}}``, ...)
        when research of the tenant is created, modified or deleted; ``{"id", ...}``."""
        result: dict[str, Any] = self.admin(
            "POST",
            f"/_sandbox/tenants/{tenant}/rules",
            {
                "url": url,
                "body": body,
                "name": name,
                "events": list(events),
                "content_type": content_type,
            },
        )
        return result

    def delete_rule(self, tenant: str, rule_id: str) -> None:
        self.admin("DELETE", f"/_sandbox/tenants/{tenant}/rules/{rule_id}")

    def rule_calls(self, tenant: str) -> list[dict[str, Any]]:
        """The calls the tenant's rules made: rule, event, document_id, status (None when the
        receiver did not answer), error."""
        result: list[dict[str, Any]] = self.admin("GET", f"/_sandbox/tenants/{tenant}/rules/calls")
        return result

    # -- what GraphQL reads ------------------------------------------------------------------
    def generate_categories(
        self, tenant: str, count: int, *, with_tickers: bool = True, seed: int | None = None
    ) -> dict[str, Any]:
        """``count`` companies (classification "Company", a ticker and a ``crm`` external id
        each) in one bulk write; ``{"created": n, "seconds": s}``."""
        return self._generate(tenant, "categories", count, with_tickers=with_tickers, seed=seed)

    def generate_contacts(
        self, tenant: str, count: int, *, seed: int | None = None
    ) -> dict[str, Any]:
        return self._generate(tenant, "contacts", count, seed=seed)

    def generate_projects(
        self, tenant: str, count: int, *, seed: int | None = None
    ) -> dict[str, Any]:
        return self._generate(tenant, "projects", count, seed=seed)

    def _generate(self, tenant: str, kind: str, count: int, **options: Any) -> dict[str, Any]:
        body = {"count": count, **{k: v for k, v in options.items() if v is not None}}
        result: dict[str, Any] = self.admin(
            "POST", f"/_sandbox/tenants/{tenant}/generate/{kind}", body
        )
        return result

    def create_attachment(
        self, tenant: str, note_id: str, file_name: str, length: int, *, user: str | None = None
    ) -> dict[str, Any]:
        """An uploaded attachment of ``length`` bytes on the note: ``id``, ``sha256`` (of the
        deterministic bytes its download serves), ..."""
        body: dict[str, Any] = {"note": note_id, "file_name": file_name, "length": length}
        if user is not None:
            body["user"] = user
        result: dict[str, Any] = self.admin("POST", f"/_sandbox/tenants/{tenant}/attachments", body)
        return result

    def set_graphql_limits(
        self,
        *,
        max_complexity: int | None = None,
        timeout_ms: int | None = None,
        max_response_bytes: int | None = None,
    ) -> dict[str, Any]:
        """Lower (or raise) GraphQL limits at run time; the others keep their settings."""
        body = {
            key: value
            for key, value in {
                "max_complexity": max_complexity,
                "timeout_ms": timeout_ms,
                "max_response_bytes": max_response_bytes,
            }.items()
            if value is not None
        }
        result: dict[str, Any] = self.admin("PUT", "/_sandbox/graphql-settings", body)
        return result

    def reset_graphql_limits(self) -> None:
        self.admin("DELETE", "/_sandbox/graphql-settings")

    # -- what partners wrote --------------------------------------------------------------------
    def note_counts(self, tenant: str, source: str) -> dict[str, int]:
        """``{value: number of notes}`` for every external id of ``source`` on the tenant."""
        result = self.admin(
            "GET", f"/_sandbox/tenants/{tenant}/notes/external-ids", params={"source": source}
        )
        return {str(k): int(v) for k, v in result["counts"].items()}

    def notes_by_external_id(self, tenant: str, source: str, value: str) -> list[dict[str, Any]]:
        """The notes carrying this external id: id, title, content, fields, history (each write
        applied, in order), attachments (file_name, length, uploaded_size, sha256, uploads)."""
        result: list[dict[str, Any]] = self.admin(
            "GET",
            f"/_sandbox/tenants/{tenant}/notes/by-external-id",
            params={"source": source, "value": value},
        )
        return result

    def ingest_counts(self, tenant: str, source: str) -> dict[str, int]:
        """``{value: number of records}`` upserted with external ids of ``source``."""
        result = self.admin(
            "GET", f"/_sandbox/tenants/{tenant}/ingest/external-ids", params={"source": source}
        )
        return {str(k): int(v) for k, v in result["counts"].items()}

    def ingest_records(self, tenant: str, source: str, value: str) -> list[dict[str, Any]]:
        """The category, contact and project records with this external id (and ``writes``)."""
        result: list[dict[str, Any]] = self.admin(
            "GET",
            f"/_sandbox/tenants/{tenant}/ingest/by-external-id",
            params={"source": source, "value": value},
        )
        return result

    def seed_ingest_record(
        self,
        tenant: str,
        source: str,
        value: str,
        document_type: str,
        properties: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a record with this external id even if one exists (to make a duplicate)."""
        result: dict[str, Any] = self.admin(
            "POST",
            f"/_sandbox/tenants/{tenant}/ingest",
            {
                "source": source,
                "value": value,
                "document_type": document_type,
                "properties": properties or {},
            },
        )
        return result

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _text(response: httpx.Response) -> str:
    """The visible text of a page, for assertion messages."""
    text = re.sub(r"<style.*?</style>|<[^>]+>", " ", response.text, flags=re.S)
    return re.sub(r"\s+", " ", text).strip()[:600]
