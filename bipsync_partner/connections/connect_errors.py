"""The sentence people read when a connection cannot be made, and the page status that shows it.

Sentences are for the people on the page: no OAuth error codes in parentheses, no Python reprs,
one sentence per reason. Nothing here ever puts a token, code, verifier or secret in a message.
"""

from __future__ import annotations

import ast
import re

from bipsync_partner.oauth import OAuthError


class ConnectError(Exception):
    """A sentence for people and the HTTP status of the page that shows it."""

    def __init__(self, message: str, *, status: int = 400, code: str = "connect_failed") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


#: What Bipsync's refusal means, by RFC 6749 §5.2 error code; ``{what}`` names what was asked
#: for ("these credentials", "the connection").
REFUSALS: dict[str, str] = {
    "invalid_client": "Bipsync does not accept {what}: check the client id and secret.",
    "invalid_scope": "{What} are not allowed that scope at Bipsync.",
    "unauthorized_client": (
        "{What} may not use this way of connecting: Bipsync has not enabled it for the application."
    ),
    "invalid_grant": "Bipsync no longer accepts the authorization of {what}; start it again.",
    "access_denied": "Bipsync refused {what}: access was denied.",
    "unsupported_grant_type": "Bipsync does not offer this way of connecting for {what}.",
    "invalid_request": "Bipsync could not read the request for {what}.",
    # Ours, not Bipsync's: the tenant's metadata failed the checks of docs/bipsync.md,
    # "Endpoints", so nothing was sent to the endpoints it names.
    "invalid_metadata": (
        "The Bipsync site's published details did not pass this app's safety checks, so "
        "nothing was sent to it."
    ),
}


def plain_description(description: str | None) -> str:
    """The server's ``error_description`` as text for people: a list written as a Python or
    JSON literal ("['a', 'b']") becomes "a; b", and whitespace is tidied."""
    text = (description or "").strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            items = None
        if isinstance(items, list | tuple):
            text = "; ".join(str(item).strip() for item in items if str(item).strip())
    text = re.sub(r"\s+", " ", text)
    if text and text[-1] not in ".!?":
        text += "."
    return text


def oauth_sentence(exc: OAuthError, what: str) -> str:
    """Bipsync's (or the network's) failure while asking for ``what``, as a sentence."""
    if exc.transient:
        return (
            f"Bipsync could not be reached or did not answer properly about {what}. Try again "
            "in a moment."
        )
    template = REFUSALS.get(exc.error, "Bipsync refused {what}.")
    sentence = template.format(what=what, What=what[:1].upper() + what[1:])
    said = plain_description(exc.description)
    if said and said.lower() != sentence.lower():
        said = said[:1].upper() + said[1:]
        sentence += f" {said}" if exc.error == "invalid_metadata" else f" Bipsync said: {said}"
    return sentence
