"""Keys, policies and hand-built tokens for the verification tests.

Attack tokens need exact control of every byte (duplicate JSON names, odd base64, a header
no library would write), so tokens are assembled here from parts and signed with
``cryptography`` directly; interop tests use PyJWT separately.
"""

import base64
import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.keys import (
    KeyMaterial,
    generate_private_key,
    load_private_key,
    material_from_private_key,
)

NOW: Final = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
NOW_TS: Final = int(NOW.timestamp())
ISSUER: Final = "https://auth.example.com/identity/auth"
AUDIENCE: Final = "api"
EC_SIZES: Final = {"P-256": 32, "P-384": 48, "P-521": 66}
_HASHES: Final[dict[int, type[hashes.HashAlgorithm]]] = {
    256: hashes.SHA256,
    384: hashes.SHA384,
    512: hashes.SHA512,
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@functools.cache
def _private_key(family: str, index: int) -> Any:
    """One key per (family, index): the RSA algorithms share theirs, generation is slow."""
    algorithm = {"RSA": "RS256", "P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
    return generate_private_key(algorithm.get(family, "EdDSA"), 2048 if family == "RSA" else None)


@functools.cache
def material(algorithm: str, index: int = 0) -> KeyMaterial:
    info = ALGORITHMS[algorithm]
    family = "RSA" if info.kty == "RSA" else str(info.curve)
    key_size = 2048 if info.kty == "RSA" else None
    return material_from_private_key(_private_key(family, index), algorithm, key_size)


def jwks(*materials: KeyMaterial) -> dict[str, Any]:
    return {"keys": [dict(m.public_jwk) for m in materials]}


def policy_json(algorithm: str, **fields: Any) -> str:
    document: dict[str, Any] = {
        "algorithm": algorithm,
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "requiredClaims": [],
        "leeway": "60s",
        "claimHeaders": {},
    }
    document.update(fields)
    return json.dumps(document)


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims at NOW; a change to None removes the claim."""
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW_TS - 10,
        "exp": NOW_TS + 300,
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def sign_bytes(
    key_material: KeyMaterial, signing_input: bytes, algorithm: str | None = None
) -> bytes:
    """The JWS signature of ``signing_input`` (R||S for ECDSA, as RFC 7518 says)."""
    algorithm = algorithm or key_material.algorithm
    info = ALGORITHMS[algorithm]
    key = load_private_key(key_material.private_jwk)
    if isinstance(key, rsa.RSAPrivateKey):
        digest = _HASHES[info.hash_bits]()
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            if algorithm.startswith("PS")
            else padding.PKCS1v15()
        )
        return key.sign(signing_input, pad, digest)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(_HASHES[info.hash_bits]())))
        size = EC_SIZES[str(info.curve)]
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.sign(signing_input)


def segment(part: Mapping[str, Any] | bytes) -> str:
    return b64(part if isinstance(part, bytes) else json.dumps(part).encode())


def token(
    key_material: KeyMaterial,
    payload: Mapping[str, Any] | bytes | None = None,
    header: Mapping[str, Any] | bytes | None = None,
    **header_changes: Any,
) -> str:
    """A signed compact token; header defaults to alg/kid/typ of the key, changes applied."""
    if header is None:
        built: dict[str, Any] = {
            "alg": key_material.algorithm,
            "kid": key_material.kid,
            "typ": "JWT",
        }
        built.update(header_changes)
        header = {name: value for name, value in built.items() if value is not None}
    signing_input = f"{segment(header)}.{segment(claims() if payload is None else payload)}"
    signature = sign_bytes(key_material, signing_input.encode("ascii"))
    return f"{signing_input}.{b64(signature)}"


def replace_signature(compact: str, signature: bytes | str) -> str:
    head, body, _ = compact.split(".")
    return f"{head}.{body}.{signature if isinstance(signature, str) else b64(signature)}"
