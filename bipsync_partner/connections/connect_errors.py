"""The sentence people read when a connection cannot be made, and the page status that shows it.

Nothing here ever puts a token, code, verifier or secret in a message.
"""

from __future__ import annotations

from bipsync_partner.oauth import OAuthError


class ConnectError(Exception):
    """A sentence for people and the HTTP status of the page that shows it."""

    def __init__(self, message: str, *, status: int = 400, code: str = "connect_failed") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def oauth_sentence(exc: OAuthError, doing: str) -> str:
    """Bipsync's (or the network's) failure while ``doing`` something, as a sentence."""
    detail = f": {exc.description}" if exc.description else ""
    if exc.transient:
        return (
            f"Bipsync could not be reached or did not answer properly while {doing} "
            f"({exc.error}{detail}). Try again in a moment."
        )
    return f"Bipsync refused {doing} ({exc.error}{detail})."
