"""Revoking tokens at Bipsync (RFC 7009) when a connection lets go of them: after a disconnect,
a reconnect that replaced them, or a cancelled change of subject."""

from __future__ import annotations

import logging
from typing import Literal

from bipsync_partner.connections import clients
from bipsync_partner.oauth import ClientConfig, GrantClient, OAuthError

log = logging.getLogger(__name__)

RevocationOutcome = Literal["revoked", "unsupported", "nothing", "failed"]


def revoke_quietly(
    tenant: str, client: ClientConfig, refresh_token: str | None, access_token: str | None
) -> tuple[RevocationOutcome, str]:
    """Revoke at Bipsync when its metadata advertises revocation (RFC 7009). Returns the outcome
    and a sentence for the history; never raises for Bipsync's or the network's failures."""
    if not refresh_token and not access_token:
        return "nothing", "There were no tokens to revoke."
    try:
        with clients.http_client() as http:
            grants: GrantClient = clients.grant_client(clients.tenant(tenant), client, http)
            if not grants.metadata.supports_revocation:
                return "unsupported", (
                    "Bipsync does not offer token revocation for this site; the tokens were "
                    "deleted here and expire there on their own."
                )
            # RFC 7009 §2.1: revoking the refresh token should end the access tokens of the same
            # grant too; the access token is revoked as well in case the server does not.
            if refresh_token:
                grants.revoke(refresh_token, token_type_hint="refresh_token")
            if access_token:
                grants.revoke(access_token, token_type_hint="access_token")
    except (OAuthError, clients.ClientNotConfigured) as exc:
        error = getattr(exc, "error", "not_configured")
        log.warning("Revocation at %s failed (%s)", tenant, error)
        return "failed", (
            f"The tokens could not be revoked at Bipsync ({error}); they were deleted here and "
            "expire there on their own."
        )
    return "revoked", "Revoked the tokens at Bipsync."
