"""A fresh "world" in a sandbox: a tenant with a team, an admin and a member, and the four
applications a partner integration meets (its user and service-account clients, its command-line
client, and a customer's own client-credentials application), with helpers for the flows.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from bipsync_sandbox.client import (
    SandboxError,
    authorization_url,
    pkce_pair,
    query_of,
)
from devtools.sandbox_server import Sandbox

DEMO_SCOPES = ("rest_api:read", "rest_api:write", "rest_api:fields:read")
#: GraphQL's read scopes of the types the sandbox serves; every world app may be granted them.
GRAPHQL_SCOPES = (
    "research:read",
    "users:read",
    "categories:read",
    "classifications:read",
    "contacts:read",
    "projects:read",
    "attachments:read",
    "external_ids:read",
)


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


def make_world(sandbox: Sandbox, *, redirect_uri: str | None = None) -> SandboxWorld:
    redirect_uri = redirect_uri or sandbox.redirect_uri
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
        # The app may be granted the GraphQL scopes too; what it asks for by default stays the
        # REST scopes (``WorldApp.scopes``).
        requested = tuple(kwargs.pop("scopes"))
        created = sandbox.create_application(
            client_id=f"{kwargs.pop('prefix')}-{slug}",
            tenants=[slug],
            scopes=[*requested, *GRAPHQL_SCOPES],
            **kwargs,
        )
        uris = kwargs.get("redirect_uris") or [None]
        return WorldApp(created["client_id"], created["client_secret"], uris[0], requested)

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
