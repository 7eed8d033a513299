"""Tokens signed with our keys verify with PyJWT and jwcrypto using only the public JWKS."""

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jwt as jwc_jwt

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.guard import encode_public_jwks
from jwks_operator.core.secretdata import secret_data
from jwks_operator.core.spec import parse_spec
from jwks_operator.core.state import KeySetState
from jwks_operator.core.tokens import sign_token
from tests.unit.test_lifecycle import Harness

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CLAIMS = {"sub": "alice", "iss": "https://issuer.example", "exp": int(time.time()) + 600}


def verify_pyjwt(token: str, jwks_text: str) -> dict[str, Any]:
    keyset = jwt.PyJWKSet.from_json(jwks_text)
    kid = jwt.get_unverified_header(token)["kid"]
    matching = [k for k in keyset.keys if k.key_id == kid]
    if not matching:
        raise LookupError(f"kid {kid} is not in the JWKS")
    key = matching[0]
    return jwt.decode(token, key.key, algorithms=[key.algorithm_name])


def verify_jwcrypto(token: str, jwks_text: str) -> dict[str, Any]:
    keyset = jwc_jwk.JWKSet.from_json(jwks_text)
    alg = json.loads(jwt.utils.base64url_decode(token.split(".")[0]))["alg"]
    parsed = jwc_jwt.JWT(jwt=token, key=keyset, algs=[alg])
    return dict(json.loads(parsed.claims))


def spec_for(algorithm: str) -> Any:
    raw: dict[str, Any] = {
        "algorithm": algorithm,
        "rotation": {"interval": "60s", "prePublish": "20s", "retireAfter": "30s"},
    }
    return parse_spec("interop", raw)


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_active_key_tokens_verify_with_real_libraries(algorithm: str) -> None:
    h = Harness(spec_for(algorithm))
    result = h.step(T0)
    jwks_text = encode_public_jwks(result.jwks)
    state = result.state
    assert state.active is not None
    ours = sign_token(state.active.material, CLAIMS)
    pem = secret_data(state)["signing.pem"]
    theirs = jwt.encode(CLAIMS, pem, algorithm=algorithm, headers={"kid": state.active.kid})
    for token in (ours, theirs):
        assert verify_pyjwt(token, jwks_text)["sub"] == "alice"
        assert verify_jwcrypto(token, jwks_text)["sub"] == "alice"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_retired_key_still_verifies_and_revoked_key_does_not(algorithm: str) -> None:
    h = Harness(spec_for(algorithm))
    first: KeySetState = h.step(T0).state
    assert first.active is not None
    old_token = sign_token(first.active.material, CLAIMS)
    rotated = h.step(T0 + timedelta(seconds=60))
    assert rotated.state.active and rotated.state.active.kid != first.active.kid
    jwks_text = encode_public_jwks(rotated.jwks)
    assert verify_pyjwt(old_token, jwks_text)["sub"] == "alice"
    assert verify_jwcrypto(old_token, jwks_text)["sub"] == "alice"

    revoked = h.step(
        T0 + timedelta(seconds=61),
        spec=spec_for(algorithm).__class__(
            **{**spec_for(algorithm).__dict__, "revoked_keys": frozenset({first.active.kid})}
        ),
    )
    jwks_text = encode_public_jwks(revoked.jwks)
    with pytest.raises(LookupError):
        verify_pyjwt(old_token, jwks_text)
    with pytest.raises(Exception, match=r"(?i)key|kid"):
        verify_jwcrypto(old_token, jwks_text)
