"""Tokens made by PyJWT, a signer we did not write, verify; and ours verify in PyJWT.

Both directions matter: a gateway in front of services that sign with a common library,
and services that keep verifying locally what the gateway accepted.
"""

import jwt
import pytest

from jwks_operator.core.algorithms import ALGORITHM_NAMES
from jwks_operator.core.keys import load_private_key
from jwks_operator.verification import Accepted, Refused, build_verifier
from tests.verification.helpers import (
    AUDIENCE,
    ISSUER,
    NOW,
    claims,
    jwks,
    material,
    policy_json,
    token,
)


@pytest.mark.parametrize("algorithm", ALGORITHM_NAMES)
def test_pyjwt_tokens_verify(algorithm: str) -> None:
    key = material(algorithm)
    private = load_private_key(key.private_jwk)
    encoded = jwt.encode(claims(), private, algorithm=algorithm, headers={"kid": key.kid})
    verifier = build_verifier(jwks(key), policy_json(algorithm))
    verdict = verifier.verify(encoded, NOW)
    assert isinstance(verdict, Accepted), verdict
    assert verdict.claims == claims()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_pyjwt_refuses_what_we_refuse_for_a_wrong_key(algorithm: str) -> None:
    """Control: a PyJWT token by another key is refused by both verifiers alike."""
    ours, other = material(algorithm), material(algorithm, 1)
    encoded = jwt.encode(
        claims(),
        load_private_key(other.private_jwk),
        algorithm=algorithm,
        headers={"kid": ours.kid},
    )
    assert isinstance(
        build_verifier(jwks(ours), policy_json(algorithm)).verify(encoded, NOW), Refused
    )
    public = jwt.PyJWK(dict(ours.public_jwk)).key
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            encoded,
            public,
            algorithms=[algorithm],
            audience=AUDIENCE,
            options={"verify_exp": False},
        )


@pytest.mark.parametrize("algorithm", ["RS256", "PS384", "ES512", "EdDSA"])
def test_tokens_we_accept_also_verify_in_pyjwt(algorithm: str) -> None:
    key = material(algorithm)
    signed = token(key)
    assert isinstance(
        build_verifier(jwks(key), policy_json(algorithm)).verify(signed, NOW), Accepted
    )
    public = jwt.PyJWK(dict(key.public_jwk)).key
    decoded = jwt.decode(
        signed,
        public,
        algorithms=[algorithm],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded["sub"] == "alice"
