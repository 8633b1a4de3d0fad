"""Callback validation: state, iss (RFC 9207), error redirects, duplicates, expiry, reuse."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlencode

import pytest

from bipsync_partner.oauth import (
    CallbackDenied,
    CallbackError,
    CallbackSuccess,
    ClientConfig,
    InMemoryPendingStore,
    PendingAuthorization,
    ServerMetadata,
    complete_callback,
    start_authorization,
    validate_callback,
    validate_metadata,
)
from tests.oauth.conftest import NOW, metadata_document

CLIENT = ClientConfig("user-client", "secret")
REDIRECT = "https://partner.example/cb"
FOREIGN_STATE = "Z" * 43


@pytest.fixture
def pending(metadata: ServerMetadata) -> PendingAuthorization:
    return start_authorization(metadata, CLIENT, redirect_uri=REDIRECT, scopes="a", now=NOW)[1]


@pytest.fixture
def pending_without_iss() -> PendingAuthorization:
    issuer = "https://acme-api.bipsync.com"
    metadata = validate_metadata(
        metadata_document(issuer, authorization_response_iss_parameter_supported=False),
        expected_issuer=issuer,
    )
    return start_authorization(metadata, CLIENT, redirect_uri=REDIRECT, scopes="a", now=NOW)[1]


def test_it_accepts_a_matching_response(pending: PendingAuthorization) -> None:
    query = urlencode({"code": "abc123", "state": pending.state, "iss": pending.issuer})
    result = validate_callback(query, pending, now=NOW + timedelta(seconds=30))
    assert isinstance(result, CallbackSuccess)
    assert result.code == "abc123"
    assert result.iss == pending.issuer
    assert "abc123" not in repr(result)


def test_it_accepts_pairs_as_well_as_a_query_string(pending: PendingAuthorization) -> None:
    pairs = [("code", "abc"), ("state", pending.state), ("iss", pending.issuer)]
    assert isinstance(validate_callback(pairs, pending, now=NOW), CallbackSuccess)


def test_it_turns_an_error_redirect_into_a_denied_result(pending: PendingAuthorization) -> None:
    query = urlencode(
        {
            "error": "access_denied",
            "error_description": "The user denied the request",
            "state": pending.state,
            "iss": pending.issuer,
        }
    )
    result = validate_callback(query, pending, now=NOW)
    assert result == CallbackDenied("access_denied", "The user denied the request", None)
    assert isinstance(result, CallbackDenied)
    assert result.access_denied


def test_it_does_not_require_iss_when_the_server_does_not_advertise_it(
    pending_without_iss: PendingAuthorization,
) -> None:
    query = urlencode({"code": "abc", "state": pending_without_iss.state})
    assert isinstance(validate_callback(query, pending_without_iss, now=NOW), CallbackSuccess)


def test_it_checks_iss_when_sent_even_if_not_advertised(
    pending_without_iss: PendingAuthorization,
) -> None:
    query = urlencode({"code": "abc", "state": pending_without_iss.state, "iss": "https://evil"})
    with pytest.raises(CallbackError) as raised:
        validate_callback(query, pending_without_iss, now=NOW)
    assert raised.value.error == "iss_mismatch"


def _params(pending: PendingAuthorization, **changes: str | None) -> list[tuple[str, str]]:
    values: dict[str, str | None] = {
        "code": "abc",
        "state": pending.state,
        "iss": pending.issuer,
        **changes,
    }
    return [(k, v) for k, v in values.items() if v is not None]


@pytest.mark.parametrize(
    ("make", "error"),
    [
        pytest.param(
            lambda p: _params(p, state=FOREIGN_STATE), "state_mismatch", id="foreign-state"
        ),
        pytest.param(lambda p: _params(p, state=p.state[:-1]), "state_mismatch", id="state-prefix"),
        pytest.param(
            lambda p: _params(p, state=p.state + "x"), "state_mismatch", id="state-longer"
        ),
        pytest.param(lambda p: _params(p, state="é" * 43), "state_mismatch", id="state-non-ascii"),
        pytest.param(lambda p: _params(p, state=None), "missing_parameter", id="no-state"),
        pytest.param(lambda p: _params(p, state=""), "missing_parameter", id="empty-state"),
        pytest.param(
            lambda p: _params(p, iss="https://evil-api.bipsync.com"), "iss_mismatch", id="wrong-iss"
        ),
        pytest.param(lambda p: _params(p, iss=p.issuer + "/"), "iss_mismatch", id="iss-slash"),
        pytest.param(lambda p: _params(p, iss=None), "missing_parameter", id="missing-iss"),
        pytest.param(lambda p: _params(p, code=None), "missing_parameter", id="no-code"),
        pytest.param(lambda p: _params(p, code=""), "missing_parameter", id="empty-code"),
        pytest.param(lambda p: _params(p, code="a\x00b"), "invalid_callback", id="code-control"),
        pytest.param(
            lambda p: [*_params(p), ("state", p.state)], "duplicate_parameter", id="duplicate-state"
        ),
        pytest.param(
            lambda p: [*_params(p), ("code", "other")], "duplicate_parameter", id="duplicate-code"
        ),
        pytest.param(
            lambda p: [*_params(p), ("iss", p.issuer)], "duplicate_parameter", id="duplicate-iss"
        ),
        pytest.param(
            lambda p: [*_params(p), ("error", "access_denied")],
            "invalid_callback",
            id="code-and-error",
        ),
        pytest.param(
            lambda p: [*_params(p, code=None), ("error", 'bad"code')],
            "invalid_callback",
            id="malformed-error-code",
        ),
        pytest.param(
            lambda p: [*_params(p, state=FOREIGN_STATE, code=None), ("error", "access_denied")],
            "state_mismatch",
            id="error-redirect-with-foreign-state",
        ),
    ],
)
def test_it_rejects_bad_callbacks(pending: PendingAuthorization, make: object, error: str) -> None:
    with pytest.raises(CallbackError) as raised:
        validate_callback(make(pending), pending, now=NOW)  # type: ignore[operator]
    assert raised.value.error == error
    assert not raised.value.transient
    assert pending.state not in str(raised.value)


def test_it_refuses_a_response_when_nothing_is_pending(pending: PendingAuthorization) -> None:
    with pytest.raises(CallbackError) as raised:
        validate_callback(_params(pending), None, now=NOW)
    assert raised.value.error == "unknown_state"


def test_it_refuses_a_pending_authorization_older_than_its_lifetime(
    pending: PendingAuthorization,
) -> None:
    assert isinstance(
        validate_callback(_params(pending), pending, now=NOW + timedelta(minutes=10)),
        CallbackSuccess,
    )
    with pytest.raises(CallbackError) as raised:
        validate_callback(_params(pending), pending, now=NOW + timedelta(minutes=10, seconds=1))
    assert raised.value.error == "expired_request"
    with pytest.raises(CallbackError):
        validate_callback(
            _params(pending), pending, now=NOW + timedelta(minutes=2), lifetime=timedelta(minutes=1)
        )


def test_it_rejects_reused_state(pending: PendingAuthorization) -> None:
    store = InMemoryPendingStore()
    store.put(pending)
    assert isinstance(complete_callback(_params(pending), store, now=NOW), CallbackSuccess)
    with pytest.raises(CallbackError) as raised:
        complete_callback(_params(pending), store, now=NOW)
    assert raised.value.error == "unknown_state"


def test_it_rejects_a_foreign_state_against_a_store(pending: PendingAuthorization) -> None:
    store = InMemoryPendingStore()
    store.put(pending)
    with pytest.raises(CallbackError) as raised:
        complete_callback(_params(pending, state=FOREIGN_STATE), store, now=NOW)
    assert raised.value.error == "unknown_state"
    # The legitimate response still works: a foreign state does not consume the real one.
    assert isinstance(complete_callback(_params(pending), store, now=NOW), CallbackSuccess)


def test_it_refuses_a_mapping_that_would_hide_duplicates(pending: PendingAuthorization) -> None:
    with pytest.raises(TypeError):
        validate_callback(cast(Any, {"code": "a", "state": pending.state}), pending, now=NOW)
