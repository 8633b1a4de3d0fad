"""The per-tenant OAuth 2.0 authorization server, built from authlib's server components.

One :class:`SandboxAuthorizationServer` is made per request for the tenant the request is for
(every tenant is its own issuer). It registers authlib's grants, subclassed for Bipsync's
behaviour (platform reference, "Grants"):

- authorization code: PKCE S256 required, ``state`` required, ``iss`` on the redirect (RFC 9207),
  code single use; a reused code revokes what it issued (RFC 6749 §4.1.2);
- refresh token: rotation, the old pair revoked [doc]; a reused rotated refresh token is
  ``invalid_grant`` and (setting) revokes its grant (RFC 9700 §4.14.2);
- client credentials: ``team_{id}`` scope required, no refresh token;
- device code (RFC 8628) with ``slow_down`` +5 s and no ``interval`` in the authorization response;
- revocation (RFC 7009).

authlib is untyped, so its base classes are ``Any`` to mypy (``type: ignore[misc]`` on subclasses).
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Payload, OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import (
    DEVICE_CODE_GRANT_TYPE,
    AuthorizationPendingError,
    ExpiredTokenError,
    SlowDownError,
)
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint as _DeviceAuthorizationEndpoint
from authlib.oauth2.rfc8628 import DeviceCodeGrant as _DeviceCodeGrant
from authlib.oauth2.rfc9207 import IssuerParameter
from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from bipsync_sandbox.authserver import fastdb
from bipsync_sandbox.authserver import scopes as scope_words
from bipsync_sandbox.authserver.models import (
    Application,
    AuthorizationCode,
    DeviceCode,
    DeviceStatus,
    PrincipalKind,
    ServiceAccount,
    Token,
    digest,
)
from bipsync_sandbox.control.runtime import Lifetimes, lifetimes
from bipsync_sandbox.identity.models import Team, Tenant, User

# RFC 8628 §6.1: user codes from an alphabet without vowels (no accidental words) and without
# look-alike characters; 20^8 ≈ 2.6e10 codes for 60-second lifetimes.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8

HINTS: dict[str, str] = {
    "invalid_request": "Check the request parameters (RFC 6749) and the Bipsync OAuth documentation.",
    "invalid_client": (
        "Check the client_id and client_secret, the client authentication method, and that the "
        "application is enabled for this Bipsync site."
    ),
    "invalid_grant": (
        "The code or refresh token is invalid, expired, already used or revoked, or belongs to "
        "another client. Start a new authorization."
    ),
    "unauthorized_client": "This grant type is not enabled for the application.",
    "unsupported_grant_type": "Use one of the grant types listed in the server metadata.",
    "invalid_scope": (
        "Ask only for scopes enabled for the application; a refresh may narrow but not widen the "
        "granted scope; client credentials need exactly one team_{id} scope."
    ),
    "authorization_pending": "The user has not approved yet; keep polling at your interval.",
    "slow_down": "You polled too fast; wait 5 seconds longer between polls from now on.",
    "expired_token": "The device code expired; start a new device authorization.",
    "access_denied": "The user denied the request.",
    "unsupported_token_type": "token_type_hint must be access_token or refresh_token.",
    "insecure_transport": "Use https, or set SANDBOX_INSECURE_TRANSPORT=1 for a local network.",
}

DESCRIPTIONS: dict[str, str] = {
    "invalid_client": "Client authentication failed.",
    "invalid_grant": "The provided authorization grant or refresh token is invalid.",
    "unauthorized_client": "The client is not authorized to use this grant type.",
    "invalid_request": "The request is missing a parameter or is otherwise malformed.",
    "authorization_pending": "The authorization request is still pending.",
    "slow_down": "Polling too frequently; the interval was increased by 5 seconds.",
    "expired_token": "The device code has expired.",
    "access_denied": "The resource owner denied the request.",
}


@dataclass(frozen=True)
class Principal:
    """Whom a token acts as: a user, an application's service account in a team, or a team."""

    kind: str
    user: User | None = None
    service_account: ServiceAccount | None = None
    team: Team | None = None


def principal_of(row: Token | AuthorizationCode | DeviceCode) -> Principal | None:
    if isinstance(row, Token) and row.kind == PrincipalKind.TEAM:
        return Principal(PrincipalKind.TEAM, team=row.team)
    user = row.user
    if user is not None and not user.is_active:
        return None
    service_account = row.service_account
    if service_account is not None:
        return Principal(
            PrincipalKind.SERVICE_ACCOUNT,
            user=user,
            service_account=service_account,
            team=service_account.team,
        )
    if user is None:
        return None
    return Principal(PrincipalKind.USER, user=user)


def includes_subject() -> bool:
    """SANDBOX_TOKEN_RESPONSE_INCLUDES_SUBJECT, or its run-time override (admin API,
    ``/_sandbox/api-settings``)."""
    from bipsync_sandbox.api.models import ApiSettings

    override = (
        ApiSettings.objects.filter(pk=ApiSettings.SINGLETON_ID)
        .values_list("token_response_includes_subject", flat=True)
        .first()
    )
    return bool(settings.SANDBOX_TOKEN_RESPONSE_INCLUDES_SUBJECT if override is None else override)


def subject_parameters(principal: Principal) -> dict[str, str]:
    """Who a token acts as, for the token response ([choice], SANDBOX_TOKEN_RESPONSE_INCLUDES_SUBJECT).

    Bipsync documents no way for a client to learn this; RFC 6749 §5.1 lets a token response carry
    additional parameters, and clients must ignore unknown ones. ``subject`` is the 24-hex id of
    the user, the service account or (client credentials) the team; ``subject_name`` its name;
    ``subject_team`` and ``subject_team_name`` the Bipsync team a service account or team token
    acts in (a user may belong to several teams, so a user's token names none).
    """
    if principal.kind == PrincipalKind.SERVICE_ACCOUNT and principal.service_account is not None:
        team = principal.service_account.team
        return {
            "subject": principal.service_account.id,
            "subject_name": principal.service_account.name,
            "subject_team": team.id,
            "subject_team_name": team.name,
        }
    if principal.kind == PrincipalKind.TEAM and principal.team is not None:
        return {
            "subject": principal.team.id,
            "subject_name": principal.team.name,
            "subject_team": principal.team.id,
            "subject_team_name": principal.team.name,
        }
    if principal.user is not None:
        return {
            "subject": principal.user.id,
            "subject_name": principal.user.name or principal.user.email,
        }
    return {}


def revoke_grant(grant_id: uuid.UUID, reason: str) -> int:
    """Revoke every token of one grant (a code's or a device authorization's descendants)."""
    now = timezone.now()
    count = Token.objects.filter(grant_id=grant_id, refresh_revoked_at__isnull=True).update(
        refresh_revoked_at=now, access_revoked_at=now, revoke_reason=reason
    )
    count += Token.objects.filter(grant_id=grant_id, access_revoked_at__isnull=True).update(
        access_revoked_at=now
    )
    return count


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def normalize_user_code(raw: str) -> str:
    """Accept what people type: lower case, spaces and dashes (RFC 8628 §6.1)."""
    return "".join(ch for ch in raw.upper() if ch.isalnum())


class BadBody(Exception):
    pass


def parse_body(request: HttpRequest) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Form-encoded or JSON body [doc: Bipsync accepts both] as flat string parameters."""
    content_type = (request.content_type or "").lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            loaded = json.loads(request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise BadBody("The JSON body could not be parsed.") from None
        if not isinstance(loaded, dict):
            raise BadBody("The JSON body must be an object.")
        data: dict[str, str] = {}
        for key, value in loaded.items():
            if not isinstance(value, str):
                raise BadBody("Every JSON body parameter must be a string.")
            data[str(key)] = value
        return data, {key: [value] for key, value in data.items()}
    return request.POST.dict(), {key: request.POST.getlist(key) for key in request.POST}


def query_parameters(request: HttpRequest) -> tuple[dict[str, str], dict[str, list[str]]]:
    return request.GET.dict(), {key: request.GET.getlist(key) for key in request.GET}


class SandboxPayload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, data: dict[str, str], datalist: dict[str, list[str]]) -> None:
        self._data = data
        self._datalist = datalist

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class SandboxRequest(OAuth2Request):  # type: ignore[misc]
    """authlib's request over a Django request, with parameters from the body (form or JSON)."""

    def __init__(
        self, request: HttpRequest, data: dict[str, str], datalist: dict[str, list[str]]
    ) -> None:
        super().__init__(
            request.method or "GET", request.build_absolute_uri(), headers=request.headers
        )
        self.payload = SandboxPayload(data, datalist)
        self.django_request = request
        self._form = data
        # Set by grants for save_token.
        self.sandbox_grant_id: uuid.UUID | None = None
        self.sandbox_granted_scope: str | None = None

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> Any:
        return self.django_request.GET


class TenantIssuer(IssuerParameter):  # type: ignore[misc]
    """RFC 9207 ``iss`` on every authorization response, success or error."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer

    def add_issuer_parameter(self, authorization_server: Any, response: HttpResponse) -> None:
        if response.has_header("Location"):
            response["Location"] = add_params_to_uri(response["Location"], {"iss": self.issuer})


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE is enforced for every client, S256 only [doc]."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    @property
    def tenant(self) -> Tenant:
        tenant: Tenant = self.server.tenant
        return tenant

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        # [choice] state is required; the client uses it against CSRF (RFC 6749 §10.12).
        if not self.request.payload.state:
            raise InvalidRequestError("Missing 'state' parameter.", redirect_uri=redirect_uri)
        return redirect_uri

    def save_authorization_code(self, code: str, request: SandboxRequest) -> None:
        principal: Principal = request.user
        client: Application = request.client
        assert principal.user is not None
        data = request.payload.data
        AuthorizationCode.objects.create(
            code_hash=digest(code),
            tenant=self.tenant,
            application=client,
            user=principal.user,
            service_account=principal.service_account,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "",
            code_challenge=data["code_challenge"],
            code_challenge_method=data.get("code_challenge_method") or "S256",
            expires_at=timezone.now() + timedelta(seconds=self.server.lifetimes_for(client).code),
        )

    def query_authorization_code(self, code: str, client: Application) -> AuthorizationCode | None:
        row = (
            AuthorizationCode.objects.select_for_update(of=("self",))
            .select_related("user", "service_account__team")
            .filter(code_hash=digest(code), tenant=self.tenant, application=client)
            .first()
        )
        if row is None:
            return None
        if row.used_at is not None:
            # RFC 6749 §4.1.2: refuse, and revoke the tokens issued from this code.
            revoke_grant(row.grant_id, "code_reuse")
            raise InvalidGrantError(
                "The authorization code was already used; tokens issued from it are revoked."
            )
        if row.is_expired():
            raise InvalidGrantError("The authorization code has expired.")
        self.request.sandbox_grant_id = row.grant_id
        return row

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        # Kept (marked used), not deleted, so that a second use is recognised as reuse.
        AuthorizationCode.objects.filter(pk=authorization_code.pk).update(used_at=timezone.now())

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Principal | None:
        return principal_of(authorization_code)


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    # Rotation: every refresh returns a new refresh token [doc].
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        tenant: Tenant = self.server.tenant
        token = fastdb.lock_token_by_refresh_hash(digest(refresh_token), tenant.pk)
        if token is None:
            raise InvalidGrantError("The refresh token is not known.")
        if not token.check_client(self.request.client):
            raise InvalidGrantError("The refresh token was issued to another client.")
        if token.refresh_revoked_at is not None:
            if token.revoke_reason == "rotated" and settings.SANDBOX_REFRESH_REUSE_REVOKES_GRANT:
                revoke_grant(token.grant_id, "refresh_reuse")
            raise InvalidGrantError("The refresh token was already used or has been revoked.")
        if token.refresh_expires_at is None or token.refresh_expires_at <= timezone.now():
            raise InvalidGrantError("The refresh token has expired.")
        self.request.sandbox_grant_id = token.grant_id
        self.request.sandbox_granted_scope = token.granted_scope
        return token

    def authenticate_user(self, refresh_token: Token) -> Principal:
        principal = principal_of(refresh_token)
        if principal is None:
            raise InvalidGrantError("The user of this grant is no longer active.")
        return principal

    def revoke_old_credential(self, refresh_token: Token) -> None:
        # "every refresh returns a new access and refresh token and revokes the old pair" [doc]
        fastdb.rotate_token(refresh_token.pk, timezone.now())


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client: Application = self.request.client
        tenant: Tenant = self.server.tenant
        requested = scope_words.split(self.request.payload.scope)
        team_ids = [
            m.group("team_id") for m in map(scope_words.TEAM_SCOPE_RE.match, requested) if m
        ]
        if len(team_ids) != 1:
            raise InvalidScopeError("The scope must include exactly one team_{id} scope.")
        others = [item for item in requested if not scope_words.TEAM_SCOPE_RE.match(item)]
        if any(item not in client.scopes for item in others):
            raise InvalidScopeError("The scope asks for more than the application may have.")
        team = Team.objects.filter(pk=team_ids[0], tenant=tenant).first()
        if team is None or (client.owner_team_id and client.owner_team_id != team.pk):
            raise InvalidScopeError("The team scope does not name a team this application serves.")
        self.request.user = Principal(PrincipalKind.TEAM, team=team)


class DeviceCodeGrant(_DeviceCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_device_credential(self, device_code: str) -> DeviceCode | None:
        tenant: Tenant = self.server.tenant
        row = (
            DeviceCode.objects.select_for_update(of=("self",))
            .select_related("application", "user", "service_account__team")
            .filter(device_code_hash=digest(device_code), tenant=tenant)
            .first()
        )
        if row is not None:
            self.request.sandbox_grant_id = row.grant_id
        return row

    def validate_device_credential(self, credential: DeviceCode) -> Principal:
        now = timezone.now()
        if credential.status == DeviceStatus.CONSUMED:
            raise InvalidGrantError("The device code was already exchanged for tokens.")
        if credential.expires_at <= now:
            raise ExpiredTokenError()
        if credential.status == DeviceStatus.DENIED:
            raise AccessDeniedError()
        if credential.status == DeviceStatus.APPROVED:
            principal = principal_of(credential)
            if principal is None:
                raise InvalidGrantError("The approving user is no longer active.")
            return principal
        # Still pending. RFC 8628 §3.5: polling faster than the interval earns slow_down and
        # a 5-second longer interval "for this and all subsequent requests".
        too_fast = credential.last_polled_at is not None and (
            now - credential.last_polled_at
        ) < timedelta(seconds=credential.interval)
        fields = ["last_polled_at"]
        credential.last_polled_at = now
        if too_fast:
            credential.interval += settings.SANDBOX_DEVICE_SLOW_DOWN_STEP
            fields.append("interval")
        credential.save(update_fields=fields)
        if too_fast:
            raise SlowDownError()
        raise AuthorizationPendingError()

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        result: tuple[int, dict[str, Any], list[tuple[str, str]]] = super().create_token_response()
        credential: DeviceCode = self.request.credential
        DeviceCode.objects.filter(pk=credential.pk).update(status=DeviceStatus.CONSUMED)
        return result


class DeviceAuthorizationEndpoint(_DeviceAuthorizationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def create_endpoint_response(
        self, request: SandboxRequest
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: Application = self.authenticate_client(request)
        if not client.check_grant_type(DEVICE_CODE_GRANT_TYPE):
            raise UnauthorizedClientError("The device authorization grant is not enabled.")
        self.server.validate_requested_scope(request.payload.scope)
        scope = client.get_allowed_scope(request.payload.scope)
        if scope is None:
            raise InvalidScopeError("The scope asks for more than the application may have.")
        tenant: Tenant = self.server.tenant
        times: Lifetimes = self.server.lifetimes_for(client)
        device_code = self.generate_device_code()
        user_code = new_user_code()
        verification_uri = tenant.web_url("/oauth/device")
        DeviceCode.objects.create(
            device_code_hash=digest(device_code),
            user_code=user_code,
            tenant=tenant,
            application=client,
            scope=scope,
            interval=times.device_interval,
            expires_at=timezone.now() + timedelta(seconds=times.device),
        )
        # [doc] Bipsync's response has no "interval"; clients fall back to 5 s (RFC 8628 §3.2).
        data = {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": add_params_to_uri(
                verification_uri, [("user_code", user_code)]
            ),
            "expires_in": times.device,
        }
        return 200, data, default_json_headers


@dataclass
class RevocationTarget:
    token: Token
    kind: str  # "access_token" or "refresh_token"

    def check_client(self, client: Application) -> bool:
        return self.token.check_client(client)


class RevocationEndpoint(_RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(
        self, token_string: str, token_type_hint: str | None
    ) -> RevocationTarget | None:
        tenant: Tenant = self.server.tenant
        hashed = digest(token_string)
        row = (
            Token.objects.filter(tenant=tenant)
            .filter(Q(access_hash=hashed) | Q(refresh_hash=hashed))
            .first()
        )
        if row is None:
            return None
        kind = "refresh_token" if row.refresh_hash == hashed else "access_token"
        return RevocationTarget(row, kind)

    def revoke_token(self, token: RevocationTarget, request: SandboxRequest) -> None:
        if token.kind == "refresh_token":
            # RFC 7009 §2.1: revoking a refresh token also invalidates the access tokens of the
            # same grant.
            revoke_grant(token.token.grant_id, "revoked")
        else:
            Token.objects.filter(pk=token.token.pk, access_revoked_at__isnull=True).update(
                access_revoked_at=timezone.now()
            )


class SandboxAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, tenant: Tenant) -> None:
        super().__init__(scopes_supported=None)
        self.tenant = tenant
        self._clients: dict[str, Application | None] = {}
        self._lifetimes: dict[int, Lifetimes] = {}
        self.issued_scope = ""
        self.last_error: str = ""
        self.issuer = TenantIssuer(tenant.issuer)
        self.register_token_generator("default", self._generate_token)
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(DeviceCodeGrant)
        self.register_endpoint(DeviceAuthorizationEndpoint(self))
        self.register_endpoint(RevocationEndpoint(self))
        self.register_extension(self.issuer)

    # -- authlib hooks ------------------------------------------------------------------------
    def query_client(self, client_id: str | None) -> Application | None:
        if not client_id or len(client_id) > 100:
            return None
        if client_id not in self._clients:
            # A partner application exists globally but only answers on the tenants that
            # enabled it [doc: "A customer asks Bipsync to enable the partner"].
            self._clients[client_id] = fastdb.client_for_tenant(client_id, self.tenant.pk)
        return self._clients[client_id]

    def lifetimes_for(self, client: Application) -> Lifetimes:
        if client.pk not in self._lifetimes:
            self._lifetimes[client.pk] = lifetimes(client)
        return self._lifetimes[client.pk]

    def validate_requested_scope(self, scope: str | None) -> None:
        unknown = [item for item in scope_words.split(scope) if not scope_words.is_known(item)]
        if unknown:
            raise InvalidScopeError("The scope contains a scope Bipsync does not know.")

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: Any) -> SandboxRequest:
        if isinstance(request, SandboxRequest):
            return request
        data, datalist = parse_body(request)
        return SandboxRequest(request, data, datalist)

    def create_json_request(self, request: Any) -> SandboxRequest:
        return self.create_oauth2_request(request)

    def handle_response(
        self, status_code: int, payload: Any, headers: list[tuple[str, str]]
    ) -> HttpResponse:
        body = json.dumps(payload) if isinstance(payload, dict) else payload
        response = HttpResponse(body, status=status_code)
        for key, value in headers:
            response[key] = value
        return response

    def handle_error_response(self, request: Any, error: OAuth2Error) -> HttpResponse:
        self.last_error = str(error.error or "server_error")
        if isinstance(error, InvalidClientError):
            # [doc] invalid_client is 401; authlib then adds WWW-Authenticate: Basic (RFC 6749
            # §5.2 requires it when the client used HTTP Basic; RFC 9110 §15.5.2 for any 401).
            error.status_code = 401
        if not error.description:
            error.description = DESCRIPTIONS.get(self.last_error, "The request failed.")
        status, body, headers = error(self.get_error_uri(request, error))
        if error.redirect_uri:
            return self.handle_response(status, body, headers)
        body = dict(body)
        body["hint"] = getattr(error, "hint", None) or HINTS.get(self.last_error, "")
        return self.handle_response(status, body, headers)

    # -- tokens -------------------------------------------------------------------------------
    def _generate_token(
        self,
        grant_type: str,
        client: Application,
        user: Principal | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        times = self.lifetimes_for(client)
        self.issued_scope = " ".join(scope_words.split(scope))
        token: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(32),
            "token_type": settings.SANDBOX_TOKEN_TYPE,
            "expires_in": times.access,
        }
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(48)
        if settings.SANDBOX_TOKEN_RESPONSE_INCLUDES_SCOPE:
            token["scope"] = self.issued_scope
        if user is not None and includes_subject():
            token.update(subject_parameters(user))
        return token

    def save_token(self, token: dict[str, Any], request: SandboxRequest) -> None:
        client: Application = request.client
        principal: Principal = request.user
        times = self.lifetimes_for(client)
        now = timezone.now()
        refresh = token.get("refresh_token")
        granted = request.sandbox_granted_scope
        row = Token(
            tenant=self.tenant,
            application=client,
            grant_id=request.sandbox_grant_id or uuid.uuid4(),
            grant_type=request.payload.grant_type or "",
            kind=principal.kind,
            user=principal.user,
            service_account=principal.service_account,
            team=principal.team,
            scope=self.issued_scope,
            granted_scope=self.issued_scope if granted is None else granted,
            access_hash=digest(token["access_token"]),
            refresh_hash=digest(refresh) if refresh else None,
            access_expires_at=now + timedelta(seconds=times.access),
            refresh_expires_at=now + timedelta(seconds=times.refresh) if refresh else None,
        )
        fastdb.insert_token(row)

    # -- metadata -------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """RFC 8414 metadata, with RFC 9207's iss flag and RFC 8628's device endpoint."""
        tenant = self.tenant
        auth_methods = ["client_secret_post", "client_secret_basic", "none"]
        return {
            "issuer": tenant.issuer,
            "authorization_endpoint": tenant.web_url("/oauth/authorize"),
            "token_endpoint": tenant.api_url("/v1/oauth/token"),
            "device_authorization_endpoint": tenant.api_url("/v1/oauth/device"),
            "revocation_endpoint": tenant.api_url("/v1/oauth/revoke"),
            "scopes_supported": sorted(scope_words.KNOWN_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "client_credentials",
                DEVICE_CODE_GRANT_TYPE,
            ],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
        }
