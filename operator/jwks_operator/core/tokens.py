"""Compact JWS signing with a stored key, for ``jwks-operator sign``, demos and tests.

Signing uses ``cryptography`` directly so that the project's own tokens do not depend on
a JWT library's defaults; interop tests check them with PyJWT and jwcrypto.
"""

import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.keys import KeyMaterial, b64url, load_private_key

_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    256: hashes.SHA256,
    384: hashes.SHA384,
    512: hashes.SHA512,
}
_EC_SIZES = {"P-256": 32, "P-384": 48, "P-521": 66}


def _json_segment(document: Mapping[str, Any]) -> str:
    return b64url(json.dumps(document, separators=(",", ":")).encode("utf-8"))


def sign_token(
    material: KeyMaterial,
    claims: Mapping[str, Any],
    extra_headers: Mapping[str, Any] | None = None,
) -> str:
    """A compact JWT signed by ``material``, with ``alg``, ``kid`` and ``typ`` headers."""
    header = {"alg": material.algorithm, "kid": material.kid, "typ": "JWT", **(extra_headers or {})}
    signing_input = f"{_json_segment(header)}.{_json_segment(claims)}".encode("ascii")
    key = load_private_key(material.private_jwk)
    info = ALGORITHMS[material.algorithm]
    if isinstance(key, rsa.RSAPrivateKey):
        digest = _HASHES[info.hash_bits]()
        if material.algorithm.startswith("PS"):
            pad: padding.AsymmetricPadding = padding.PSS(
                mgf=padding.MGF1(digest), salt_length=digest.digest_size
            )
        else:
            pad = padding.PKCS1v15()
        signature = key.sign(signing_input, pad, digest)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        assert info.curve is not None
        der = key.sign(signing_input, ec.ECDSA(_HASHES[info.hash_bits]()))
        r, s = decode_dss_signature(der)
        size = _EC_SIZES[info.curve]
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(signing_input)
    else:  # pragma: no cover - load_private_key returns only the kinds above
        raise TypeError("unsupported key")
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"
