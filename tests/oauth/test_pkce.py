from __future__ import annotations

import pytest

from bipsync_partner.oauth import ConfigurationError, generate_code_verifier, s256_code_challenge


def test_it_computes_the_rfc_7636_appendix_b_challenge() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize("length", [43, 64, 128])
def test_it_generates_verifiers_of_allowed_lengths(length: int) -> None:
    verifier = generate_code_verifier(length)
    assert len(verifier) == length
    assert verifier.isalnum()


def test_it_generates_a_different_verifier_each_time() -> None:
    assert len({generate_code_verifier() for _ in range(50)}) == 50


@pytest.mark.parametrize(
    "verifier",
    [
        pytest.param("a" * 42, id="too-short"),
        pytest.param("a" * 129, id="too-long"),
        pytest.param("a" * 42 + "+", id="plus"),
        pytest.param("a" * 42 + " ", id="space"),
        pytest.param("a" * 42 + "é", id="non-ascii"),
    ],
)
def test_it_refuses_verifiers_rfc_7636_forbids(verifier: str) -> None:
    with pytest.raises(ConfigurationError):
        s256_code_challenge(verifier)


@pytest.mark.parametrize("length", [42, 129])
def test_it_refuses_to_generate_verifiers_of_forbidden_lengths(length: int) -> None:
    with pytest.raises(ConfigurationError):
        generate_code_verifier(length)
