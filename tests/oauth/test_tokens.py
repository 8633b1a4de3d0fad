"""Strict token response parsing (RFC 6749 §5.1), and a property test of its error contract."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bipsync_partner.oauth import (
    OAuthError,
    ProtocolError,
    Token,
    UnusableTokenResponse,
    parse_token_response,
)
from tests.oauth.conftest import NOW

GOOD: dict[str, Any] = {
    "token_type": "bearer",
    "expires_in": 3600,
    "access_token": "eyJhbGciOi.eyJzdWIi.sig",
    "refresh_token": "def50200abc",
}


def _body(**changes: Any) -> bytes:
    document = {**GOOD, **changes}
    return json.dumps({k: v for k, v in document.items() if v is not ...}).encode()


def _parse(status: int, body: bytes, **kwargs: Any) -> Token:
    return parse_token_response(status, body, received_at=NOW, **kwargs)


def test_it_parses_bipsyncs_example_response() -> None:
    token = _parse(200, _body(), requested_scopes=("rest_api:read",))
    assert token.access_token == GOOD["access_token"]
    assert token.refresh_token == GOOD["refresh_token"]
    assert token.token_type == "Bearer"
    assert token.expires_at == NOW + timedelta(hours=1)
    assert token.scopes == ("rest_api:read",)
    assert token.received_at == NOW


@pytest.mark.parametrize("token_type", ["bearer", "Bearer", "BEARER", "bEaReR"])
def test_it_compares_the_token_type_case_insensitively(token_type: str) -> None:
    assert _parse(200, _body(token_type=token_type)).token_type == "Bearer"


@pytest.mark.parametrize(("value", "seconds"), [(3600, 3600), ("3600", 3600), (0, 0)])
def test_it_accepts_expires_in_as_an_integer_or_a_numeric_string(
    value: object, seconds: int
) -> None:
    token = _parse(200, _body(expires_in=value))
    assert token.expires_at == NOW + timedelta(seconds=seconds)


def test_it_leaves_the_expiry_unknown_without_expires_in() -> None:
    token = _parse(200, _body(expires_in=...))
    assert token.expires_at is None
    assert not token.is_expired(NOW + timedelta(days=365))


def test_it_uses_the_granted_scope_when_the_server_names_one() -> None:
    token = _parse(200, _body(scope="rest_api:read  team_x"), requested_scopes=("a", "b"))
    assert token.scopes == ("rest_api:read", "team_x")


def test_it_ignores_unknown_members() -> None:
    assert _parse(200, _body(id_token="x", foo={"bar": [1]})).access_token == GOOD["access_token"]


def test_it_knows_when_it_is_expired_with_a_leeway() -> None:
    token = _parse(200, _body(expires_in=600))
    assert not token.is_expired(NOW, leeway=timedelta(0))
    assert not token.is_expired(NOW + timedelta(seconds=539))
    assert token.is_expired(NOW + timedelta(seconds=540))  # default leeway 60 s
    assert token.is_expired(NOW + timedelta(seconds=600), leeway=timedelta(0))
    assert token.expires_in(NOW) == 600


def test_it_never_shows_tokens_in_repr_or_str() -> None:
    token = _parse(200, _body())
    for text in (repr(token), str(token), f"{token}", repr([token])):
        assert GOOD["access_token"] not in text
        assert GOOD["refresh_token"] not in text
    assert "has_refresh_token=True" in repr(token)


def test_it_refuses_a_naive_receive_time() -> None:
    with pytest.raises(TypeError):
        parse_token_response(200, _body(), received_at=NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("status", "body", "error", "transient"),
    [
        pytest.param(
            200,
            b"<!DOCTYPE html><html><body>Error</body></html>",
            "invalid_response",
            True,
            id="html-error-page",
        ),
        pytest.param(
            502, b"<html><body>Bad Gateway</body></html>", "invalid_response", True, id="html-502"
        ),
        pytest.param(200, b"", "invalid_response", True, id="empty-body"),
        pytest.param(200, b"   \n", "invalid_response", True, id="blank-body"),
        pytest.param(200, b'["access_token"]', "invalid_response", True, id="json-array"),
        pytest.param(200, b'"token"', "invalid_response", True, id="json-string"),
        pytest.param(200, b"null", "invalid_response", True, id="json-null"),
        pytest.param(200, b"{", "invalid_response", True, id="truncated-json"),
        pytest.param(200, b"\xff\xfe{}", "invalid_response", True, id="not-utf8"),
        pytest.param(200, _body(token_type="mac"), "unsupported_token_type", False, id="mac"),
        pytest.param(
            200,
            _body(token_type="bearer "),
            "unsupported_token_type",
            False,
            id="bearer-with-space",
        ),
        pytest.param(200, _body(token_type=...), "invalid_response", True, id="no-token-type"),
        pytest.param(200, _body(token_type=1), "invalid_response", True, id="token-type-int"),
        pytest.param(200, _body(expires_in=True), "invalid_response", True, id="expires-in-true"),
        pytest.param(200, _body(expires_in=False), "invalid_response", True, id="expires-in-false"),
        pytest.param(
            200, _body(expires_in=3600.0), "invalid_response", True, id="expires-in-float"
        ),
        pytest.param(
            200,
            _body(expires_in="3600.5"),
            "invalid_response",
            True,
            id="expires-in-decimal-string",
        ),
        pytest.param(
            200, _body(expires_in="-1"), "invalid_response", True, id="expires-in-negative-string"
        ),
        pytest.param(200, _body(expires_in=-1), "invalid_response", True, id="expires-in-negative"),
        pytest.param(
            200, _body(expires_in=" 60"), "invalid_response", True, id="expires-in-padded"
        ),
        pytest.param(
            200, _body(expires_in="٣٦٠٠"), "invalid_response", True, id="expires-in-arabic-digits"
        ),
        pytest.param(200, _body(expires_in=10**30), "invalid_response", True, id="expires-in-huge"),
        pytest.param(200, _body(expires_in=[3600]), "invalid_response", True, id="expires-in-list"),
        pytest.param(
            200, _body(access_token=...), "invalid_response", True, id="missing-access-token"
        ),
        pytest.param(
            200, _body(access_token=""), "invalid_response", True, id="empty-access-token"
        ),
        pytest.param(
            200, _body(access_token=None), "invalid_response", True, id="null-access-token"
        ),
        pytest.param(
            200, _body(access_token="a b"), "invalid_response", True, id="access-token-with-space"
        ),
        pytest.param(
            200, _body(access_token={"t": 1}), "invalid_response", True, id="access-token-object"
        ),
        pytest.param(200, _body(refresh_token=5), "invalid_response", True, id="refresh-token-int"),
        pytest.param(200, _body(scope=["a"]), "invalid_response", True, id="scope-list"),
        pytest.param(200, _body(scope='a"b'), "invalid_response", True, id="scope-bad-char"),
        pytest.param(
            200,
            b'{"access_token":"a","access_token":"b","token_type":"bearer"}',
            "invalid_response",
            True,
            id="duplicate-member",
        ),
        pytest.param(
            200,
            b'{"access_token":"a","token_type":"bearer","expires_in":NaN}',
            "invalid_response",
            True,
            id="nan",
        ),
        pytest.param(
            200, b'{"error":"invalid_grant"}', "invalid_grant", False, id="error-with-200"
        ),
        pytest.param(
            400,
            b'{"error":"invalid_grant","error_description":"revoked"}',
            "invalid_grant",
            False,
            id="invalid-grant",
        ),
        pytest.param(
            401, b'{"error":"invalid_client"}', "invalid_client", False, id="invalid-client"
        ),
        pytest.param(400, _body(), "invalid_response", True, id="token-with-400-status"),
        pytest.param(
            503,
            b'{"error":"temporarily_unavailable"}',
            "temporarily_unavailable",
            True,
            id="unavailable",
        ),
        pytest.param(201, _body(), "invalid_response", True, id="201-status"),
    ],
)
def test_it_rejects_bad_token_responses(
    status: int, body: bytes, error: str, transient: bool
) -> None:
    with pytest.raises(ProtocolError) as raised:
        _parse(status, body)
    assert raised.value.error == error
    assert raised.value.status == status
    assert raised.value.transient is transient
    assert GOOD["access_token"] not in str(raised.value)


@pytest.mark.parametrize(
    ("changes", "error", "transient"),
    [
        pytest.param({"token_type": "mac"}, "unsupported_token_type", False, id="mac"),
        pytest.param({"access_token": ...}, "invalid_response", True, id="no-access-token"),
        pytest.param({"expires_in": -1}, "invalid_response", True, id="bad-expires-in"),
    ],
)
def test_an_unusable_200_hands_over_its_rotated_refresh_token_without_showing_it(
    changes: dict[str, Any], error: str, transient: bool
) -> None:
    with pytest.raises(UnusableTokenResponse) as raised:
        _parse(200, _body(**changes))
    assert raised.value.refresh_token == GOOD["refresh_token"]
    assert (raised.value.error, raised.value.transient) == (error, transient)
    for shown in (str(raised.value), repr(raised.value)):
        assert GOOD["refresh_token"] not in shown
    # Without a well-formed refresh token there is nothing to keep: a plain protocol error.
    with pytest.raises(ProtocolError) as plain:
        _parse(200, _body(**changes, refresh_token="bad token"))
    assert not isinstance(plain.value, UnusableTokenResponse)


def test_it_rejects_a_deeply_nested_body_within_the_error_family() -> None:
    with pytest.raises(ProtocolError):
        _parse(200, b"[" * 100_000 + b"]" * 100_000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
token_like = st.fixed_dictionaries(
    {},
    optional={
        "access_token": json_values
        | st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)),
        "token_type": json_values | st.sampled_from(["bearer", "Bearer", "mac", ""]),
        "expires_in": json_values | st.integers() | st.from_regex(r"\A-?[0-9]{0,20}\Z"),
        "refresh_token": json_values,
        "scope": json_values | st.text(),
        "error": json_values | st.sampled_from(["invalid_grant", "slow_down"]),
        "error_description": json_values,
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | token_like.map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=400, deadline=None)
@given(
    status=st.integers(min_value=100, max_value=599),
    body=bodies,
    requested=st.lists(st.text(max_size=10), max_size=3),
    media_type=st.sampled_from(["", "application/json", "text/html"]),
)
def test_the_parser_never_raises_anything_but_our_error_family(
    status: int, body: bytes, requested: list[str], media_type: str
) -> None:
    outcome: Token | OAuthError
    try:
        outcome = parse_token_response(
            status, body, received_at=NOW, requested_scopes=requested, media_type=media_type
        )
    except OAuthError as exc:  # anything else propagates and fails the test
        outcome = exc
    if isinstance(outcome, OAuthError):
        assert outcome.error
        assert isinstance(outcome.transient, bool)
    else:
        assert status == 200
        assert outcome.token_type == "Bearer"
        assert outcome.access_token


def test_it_keeps_additional_string_parameters_but_never_shows_them() -> None:
    token = _parse(200, _body(subject="5f0c9a1b2c3d4e5f60718293", foo={"bar": [1]}, n=3))
    assert dict(token.extra) == {"subject": "5f0c9a1b2c3d4e5f60718293"}
    assert "5f0c9a1b" not in repr(token)
