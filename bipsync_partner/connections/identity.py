"""Whom a new token acts as: the source is a strategy, ``BIPSYNC_IDENTITY_SOURCE``.

What is known: Bipsync documents no way to ask (docs/bipsync.md, "Tokens"). What is assumed:

- ``token_response`` (the default): additional token-response parameters (RFC 6749 §5.1) named
  by ``BIPSYNC_TOKEN_SUBJECT_PARAMETER`` and its neighbours; the sandbox sends them.
- ``graphql_me``: GraphQL's ``me { user { id name email } team { id name } serviceAccount }``
  asked with the new token (the sandbox offers it, ``SANDBOX_GRAPHQL_ME_ENABLED``). A user token
  acts as its user; a service-account token is known by the Bipsync team it acts in (``me``
  names no service account, and an application has one service account per team); a team
  (client credentials) token acts as its team.

Either way an answer that says nothing leaves the subject empty, and the subject-change check
does not apply (it never holds a reconnect on a guess). Switching the source changes how a
service account's subject is spelled, so the first reconnect after a switch may ask for a
confirmation once.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from django.conf import settings

from bipsync_partner.connections import clients
from bipsync_partner.oauth import Token
from bipsync_partner.oauth.errors import ConfigurationError
from bipsync_partner.oauth.transport import BearerAuth, create_httpx_client

log = logging.getLogger(__name__)

BIPSYNC_ID = re.compile(r"[0-9a-f]{24}")
ME_QUERY = "query Me { me { user { id name email } team { id name } serviceAccount } }"
#: ``me``'s answer is a few hundred bytes; anything far larger is not it.
MAX_ME_BYTES = 64 * 1024


@dataclass(frozen=True)
class Identity:
    subject: str = ""
    subject_name: str = ""
    #: The Bipsync team the subject acts in (service accounts, teams), when known.
    subject_team: str = ""
    subject_team_name: str = ""


def identify(token: Token, tenant: str | None) -> Identity:
    """Whom ``token`` acts as, from the configured source (``tenant`` is needed by
    ``graphql_me``; without it the token response is read)."""
    if settings.BIPSYNC_IDENTITY_SOURCE == "graphql_me" and tenant:
        return from_graphql_me(token, tenant)
    return from_token_response(token)


def from_token_response(token: Token) -> Identity:
    def extra(setting: str, limit: int) -> str:
        name = getattr(settings, setting)
        value = token.extra.get(name, "") if name else ""
        return value[:limit] if isinstance(value, str) else ""

    team = extra("BIPSYNC_TOKEN_SUBJECT_TEAM_PARAMETER", 64)
    return Identity(
        subject=extra("BIPSYNC_TOKEN_SUBJECT_PARAMETER", 64),
        subject_name=extra("BIPSYNC_TOKEN_SUBJECT_NAME_PARAMETER", 200),
        # Kept only when it is a Bipsync id (docs/bipsync.md, "The REST API slice").
        subject_team=team if BIPSYNC_ID.fullmatch(team) else "",
        subject_team_name=extra("BIPSYNC_TOKEN_SUBJECT_TEAM_NAME_PARAMETER", 200),
    )


def _sendable(api_base: str) -> bool:
    # The token goes only over https, or to loopback when allowed (RFC 6750 §5.3).
    parts = urlsplit(api_base)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return loopback and clients.allow_insecure_loopback()


def from_graphql_me(token: Token, tenant: str) -> Identity:
    """Ask ``me`` once with the token. One plain request rather than the sync's GraphQL client:
    that client is built on the token service of a stored connection (``sync/`` builds on
    ``connections/``, not the other way), and this runs before the connection is stored. Any
    failure is logged and leaves the identity unknown."""
    try:
        api_base = clients.tenant(tenant).api_base
    except ConfigurationError:
        return Identity()
    if not _sendable(api_base):
        return Identity()
    url = api_base.rstrip("/") + str(settings.BIPSYNC_GRAPHQL_PATH)
    try:
        with create_httpx_client(clients.transport_settings()) as http:
            response = http.post(
                url,
                content=orjson.dumps({"query": ME_QUERY, "operationName": "Me"}),
                headers={"Content-Type": "application/json"},
                auth=BearerAuth(token.access_token),
            )
    except httpx.HTTPError as exc:
        log.warning("Whom the new token acts as is unknown: me failed (%s)", type(exc).__name__)
        return Identity()
    if response.status_code != 200 or len(response.content) > MAX_ME_BYTES:
        log.warning("Whom the new token acts as is unknown: me answered %s", response.status_code)
        return Identity()
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return Identity()
    me = (body.get("data") or {}).get("me") if isinstance(body, dict) else None
    if not isinstance(me, dict):
        log.info("Whom the new token acts as is unknown: the server offers no me")
        return Identity()
    return _identity_of(me)


def _text(node: Any, name: str, limit: int) -> str:
    value = node.get(name) if isinstance(node, dict) else None
    return value[:limit] if isinstance(value, str) else ""


def _identity_of(me: dict[str, Any]) -> Identity:
    user, team = me.get("user"), me.get("team")
    team_id = _text(team, "id", 64)
    team_id = team_id if BIPSYNC_ID.fullmatch(team_id) else ""
    team_name = _text(team, "name", 200)
    if me.get("serviceAccount") is True:
        if not team_id:
            return Identity()
        return Identity(
            subject=team_id,
            subject_name=f"Service account in {team_name or team_id}",
            subject_team=team_id,
            subject_team_name=team_name,
        )
    user_id = _text(user, "id", 64)
    if user_id:
        name = _text(user, "name", 200) or _text(user, "email", 200)
        return Identity(subject=user_id, subject_name=name)
    if team_id:
        return Identity(
            subject=team_id,
            subject_name=team_name,
            subject_team=team_id,
            subject_team_name=team_name,
        )
    return Identity()
