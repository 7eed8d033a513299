"""Signing keys: generation, JWK export, RFC 7638 thumbprints, and loading stored keys.

Public JWKs are built by hand from the key numbers rather than through jwcrypto: it is
about six times faster (see the perf notes) and it makes the set of emitted members
explicit, which is what the leak guard relies on. ``KeyMaterial`` hides its private half
from ``repr`` so that a key object logged by mistake shows no secret.
"""

import asyncio
import base64
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from jwks_operator.core.algorithms import ALGORITHMS, AlgorithmInfo
from jwks_operator.core.guard import check_public_jwk

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
_CURVE_BYTES: Final = {"P-256": 32, "P-384": 48, "P-521": 66}
_THUMBPRINT_MEMBERS: Final = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
_PUBLIC_MEMBERS: Final = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}


class KeyLoadError(ValueError):
    """A stored private JWK that cannot be turned back into a usable key."""


@dataclass(frozen=True)
class KeyMaterial:
    """One key pair as the project stores it: the private JWK is the single source."""

    kid: str
    algorithm: str
    key_size: int | None
    public_jwk: Mapping[str, Any]
    private_jwk: Mapping[str, Any] = field(repr=False)

    @property
    def params(self) -> tuple[str, int | None]:
        return (self.algorithm, self.key_size)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise KeyLoadError("JWK member is not a string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise KeyLoadError("JWK member is not base64url") from None


def _uint(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint: the kid, so that a kid always names exactly one key."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(str(kty), ("crv", "kty", "x"))
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _jwk_members(key: PrivateKey, info: AlgorithmInfo) -> tuple[dict[str, Any], dict[str, Any]]:
    """(public members, private members) of a key, as base64url strings."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        public = {
            "kty": "RSA",
            "n": _uint(numbers.public_numbers.n),
            "e": _uint(numbers.public_numbers.e),
        }
        private = {
            "d": _uint(numbers.d),
            "p": _uint(numbers.p),
            "q": _uint(numbers.q),
            "dp": _uint(numbers.dmp1),
            "dq": _uint(numbers.dmq1),
            "qi": _uint(numbers.iqmp),
        }
        return public, private
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert info.curve is not None
        size = _CURVE_BYTES[info.curve]
        numbers_ec = key.private_numbers()
        point = numbers_ec.public_numbers
        public = {
            "kty": "EC",
            "crv": info.curve,
            "x": _uint(point.x, size),
            "y": _uint(point.y, size),
        }
        return public, {"d": _uint(numbers_ec.private_value, size)}
    raw_public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    raw_private = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw_public)}, {"d": b64url(raw_private)}


def material_from_private_key(key: PrivateKey, algorithm: str, key_size: int | None) -> KeyMaterial:
    info = ALGORITHMS[algorithm]
    public_members, private_members = _jwk_members(key, info)
    kid = thumbprint(public_members)
    public_jwk = {**public_members, "kid": kid, "use": "sig", "alg": algorithm}
    check_public_jwk(public_jwk)
    private_jwk = {**public_jwk, **private_members}
    return KeyMaterial(
        kid=kid,
        algorithm=algorithm,
        key_size=key_size,
        public_jwk=MappingProxyType(public_jwk),
        private_jwk=MappingProxyType(private_jwk),
    )


def generate_private_key(algorithm: str, key_size: int | None) -> PrivateKey:
    info = ALGORITHMS[algorithm]
    if info.kty == "RSA":
        if key_size is None:
            raise ValueError(f"{algorithm} needs a key size")
        return rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    if info.kty == "EC":
        assert info.curve is not None
        return ec.generate_private_key(_CURVES[info.curve]())
    return ed25519.Ed25519PrivateKey.generate()


def generate_key(algorithm: str, key_size: int | None) -> KeyMaterial:
    """A fresh key pair (CPU-bound: up to a second for RSA-4096; call it off the loop)."""
    return material_from_private_key(generate_private_key(algorithm, key_size), algorithm, key_size)


async def generate_key_async(algorithm: str, key_size: int | None) -> KeyMaterial:
    """Generate in a worker thread: OpenSSL releases the GIL, so the loop keeps serving."""
    return await asyncio.to_thread(generate_key, algorithm, key_size)


def load_private_key(private_jwk: Mapping[str, Any], *, check: bool = True) -> PrivateKey:
    """Rebuild a private key from its stored JWK, checking it is internally consistent.

    Memoised: the RSA consistency check costs ~60 ms per key, and the operator loads every
    stored key on every reconciliation (parsing keys.json, writing signing.pem). A key is
    checked once per process; anything edited is a different JWK and is checked again.
    ``check=False`` skips the RSA check, for material that was already checked or made here.
    """
    try:
        identity = tuple(sorted((k, v) for k, v in private_jwk.items() if isinstance(v, str)))
    except TypeError:
        raise KeyLoadError("private JWK is malformed (TypeError)") from None
    return _load(identity, check)


@functools.lru_cache(maxsize=1024)
def _load(identity: tuple[tuple[str, str], ...], check: bool) -> PrivateKey:
    private_jwk = dict(identity)
    try:
        kty = private_jwk["kty"]
        if kty == "RSA":
            n, e, d, p, q, dp, dq, qi = (
                int.from_bytes(b64url_decode(private_jwk[m]), "big")
                for m in ("n", "e", "d", "p", "q", "dp", "dq", "qi")
            )
            public = rsa.RSAPublicNumbers(e, n)
            numbers = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, public)
            return numbers.private_key(unsafe_skip_rsa_key_validation=not check)
        if kty == "EC":
            curve = _CURVES[private_jwk["crv"]]()
            value = int.from_bytes(b64url_decode(private_jwk["d"]), "big")
            key = ec.derive_private_key(value, curve)
            expected = (private_jwk["x"], private_jwk["y"])
            point = key.public_key().public_numbers()
            size = _CURVE_BYTES[private_jwk["crv"]]
            if (_uint(point.x, size), _uint(point.y, size)) != expected:
                raise KeyLoadError("EC private key does not match its public point")
            return key
        if kty == "OKP" and private_jwk.get("crv") == "Ed25519":
            okp = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(private_jwk["d"]))
            raw = okp.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            if b64url(raw) != private_jwk["x"]:
                raise KeyLoadError("Ed25519 private key does not match its public key")
            return okp
    except KeyLoadError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        # Never include the exception text: it may quote key material.
        raise KeyLoadError(f"private JWK is malformed ({error.__class__.__name__})") from None
    raise KeyLoadError("private JWK has an unsupported kty/crv")


def load_material(
    private_jwk: Mapping[str, Any], algorithm: str, key_size: int | None
) -> KeyMaterial:
    """Stored JWK -> KeyMaterial, re-deriving the public half and kid from the private key."""
    if algorithm not in ALGORITHMS:
        raise KeyLoadError(f"unsupported algorithm {algorithm!r}")
    key = load_private_key(private_jwk)
    if ALGORITHMS[algorithm].kty != private_jwk.get("kty"):
        raise KeyLoadError(f"key type {private_jwk.get('kty')!r} does not fit {algorithm}")
    return material_from_private_key(key, algorithm, key_size)


def private_key_pem(material: KeyMaterial) -> str:
    """PKCS#8 PEM of the private key, for services that mount ``signing.pem``.

    ``material`` was checked when keys.json was parsed, or was just generated: the costly
    RSA check is not repeated (it made a new keyset's first write ~60 ms slower).
    """
    key = load_private_key(material.private_jwk, check=False)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
