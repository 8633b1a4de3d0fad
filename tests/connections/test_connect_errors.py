"""The sentences people read when Bipsync refuses: no OAuth codes in parentheses, no Python or
JSON list literals from a server's description."""

from __future__ import annotations

import pytest

from bipsync_partner.connections.connect_errors import oauth_sentence, plain_description
from bipsync_partner.oauth import OAuthError


@pytest.mark.parametrize(
    ("description", "text"),
    [
        ("['The client is unknown', 'Check the id']", "The client is unknown; Check the id."),
        ('["scope rest_api:write is not enabled"]', "scope rest_api:write is not enabled."),
        ("Client authentication failed.", "Client authentication failed."),
        ("  two\n lines  ", "two lines."),
        ("[not a list", "[not a list."),
        (None, ""),
    ],
)
def test_a_server_s_description_becomes_plain_text(description: str | None, text: str) -> None:
    assert plain_description(description) == text


def test_a_refused_scope_reads_as_a_sentence_without_the_error_code() -> None:
    refused = OAuthError(
        "['The scope asks for more than the application may have.']",
        error="invalid_scope",
        status=400,
    )

    sentence = oauth_sentence(refused, "these credentials")

    assert sentence.startswith("These credentials are not allowed that scope at Bipsync.")
    assert "The scope asks for more than the application may have." in sentence
    assert "invalid_scope" not in sentence
    assert "['" not in sentence


def test_bipsync_out_of_reach_is_a_sentence_that_says_to_try_again() -> None:
    down = OAuthError("upstream timed out", error="server_error", status=503)

    sentence = oauth_sentence(down, "these credentials")

    assert sentence == (
        "Bipsync could not be reached or did not answer properly about these credentials. "
        "Try again in a moment."
    )
