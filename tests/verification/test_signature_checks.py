"""The checks of a signature itself, each pinned by a test that fails without it.

Found by mutation testing: replacing the PSS salt length by ``PSS.AUTO`` and removing the
ECDSA signature length check both passed every earlier test.
"""

from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jwks_operator.core.keys import load_private_key
from jwks_operator.verification import build_verifier
from jwks_operator.verification.keys import load_verifying_key
from jwks_operator.verification.verdict import Accepted, Reason, Refused
from tests.verification.helpers import (
    NOW,
    jwks,
    material,
    policy_json,
    replace_signature,
    sign_bytes,
    token,
)

DIGESTS: dict[str, Any] = {"PS256": hashes.SHA256, "PS384": hashes.SHA384, "PS512": hashes.SHA512}


def _verify(algorithm: str, compact: str) -> object:
    return build_verifier(jwks(material(algorithm)), policy_json(algorithm)).verify(compact, NOW)


def _pss_token(algorithm: str, salt_length: Any) -> str:
    key = material(algorithm)
    compact = token(key)
    signing_input = compact.rsplit(".", 1)[0].encode("ascii")
    private = load_private_key(key.private_jwk)
    assert isinstance(private, rsa.RSAPrivateKey)
    digest = DIGESTS[algorithm]()
    signature = private.sign(
        signing_input, padding.PSS(mgf=padding.MGF1(digest), salt_length=salt_length), digest
    )
    return replace_signature(compact, signature)


@pytest.mark.parametrize("algorithm", sorted(DIGESTS))
def test_pss_salt_must_be_the_hash_length(algorithm: str) -> None:
    """RFC 7518 3.5. A verifier that detects the salt length (PSS.AUTO) accepts all three."""
    size = DIGESTS[algorithm]().digest_size
    assert isinstance(_verify(algorithm, _pss_token(algorithm, size)), Accepted)
    for salt in (0, size - 1, size + 1, padding.PSS.MAX_LENGTH):
        verdict = _verify(algorithm, _pss_token(algorithm, salt))
        assert isinstance(verdict, Refused) and verdict.reason == Reason.BAD_SIGNATURE, salt


@pytest.mark.parametrize(("algorithm", "size"), [("ES256", 32), ("ES384", 48), ("ES512", 66)])
def test_ecdsa_signature_must_be_exactly_twice_the_curve_size(algorithm: str, size: int) -> None:
    """Each half padded with a zero byte still encodes the same (r, s): jwcrypto, which
    splits any signature in two halves, would accept it. One signature, one spelling."""
    key = material(algorithm)
    compact = token(key)
    signature = sign_bytes(key, compact.rsplit(".", 1)[0].encode("ascii"))
    assert len(signature) == 2 * size
    r, s = signature[:size], signature[size:]
    assert isinstance(_verify(algorithm, compact), Accepted)
    for changed in (b"\0" + r + b"\0" + s, b"\0\0" + r + b"\0\0" + s, signature + b"\0"):
        verdict = _verify(algorithm, replace_signature(compact, changed))
        assert isinstance(verdict, Refused) and verdict.reason == Reason.BAD_SIGNATURE


@pytest.mark.parametrize("algorithm", ["ES256", "ES384", "ES512"])
def test_ecdsa_zero_halves_are_refused_before_any_arithmetic(algorithm: str) -> None:
    """ "Psychic signatures" (CVE-2022-21449): r = 0 or s = 0 never verifies."""
    key = material(algorithm)
    check = load_verifying_key(key.public_jwk, algorithm).check
    compact = token(key)
    signing_input = compact.rsplit(".", 1)[0].encode("ascii")
    signature = sign_bytes(key, signing_input)
    half = len(signature) // 2
    assert check(signature, signing_input)
    for changed in (
        bytes(2 * half),
        bytes(half) + signature[half:],
        signature[:half] + bytes(half),
    ):
        assert not check(changed, signing_input)


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "EdDSA"])
def test_rsa_and_eddsa_signatures_have_one_length(algorithm: str) -> None:
    key = material(algorithm)
    compact = token(key)
    signature = sign_bytes(key, compact.rsplit(".", 1)[0].encode("ascii"))
    for changed in (b"\0" + signature, signature[1:], signature + b"\0"):
        verdict = _verify(algorithm, replace_signature(compact, changed))
        assert isinstance(verdict, Refused) and verdict.reason == Reason.BAD_SIGNATURE
