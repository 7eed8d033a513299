"""Public JWKs turned, once, into ready-to-call signature checks.

Parsing a JWK (big-integer decoding, point validation) costs far more than a request can
afford, so it happens when the snapshot changes, never per token. Each check is bound to
exactly one algorithm: the header's ``alg`` only selects a key, it never selects how the
key is used, which is what makes algorithm confusion (RS256 -> HS256, ES -> RS) impossible.
"""

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from jwks_operator.core.algorithms import ALGORITHMS

MIN_RSA_BITS: Final = 2048
_HASHES: Final[dict[int, type[hashes.HashAlgorithm]]] = {
    256: hashes.SHA256,
    384: hashes.SHA384,
    512: hashes.SHA512,
}
_CURVES: Final[dict[str, tuple[ec.EllipticCurve, int]]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}

_B64URL_RE = re.compile(r"[A-Za-z0-9_-]{1,2048}")

SignatureCheck = Callable[[bytes, bytes], bool]
"""``check(signature, signing_input) -> bool``; never raises for a bad signature."""


class UnusableKeyError(ValueError):
    """A published JWK this verifier cannot use for its algorithm (reason given)."""


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    kid: str
    algorithm: str
    check: SignatureCheck


def load_verifying_key(jwk: Mapping[str, object], algorithm: str) -> VerifyingKey:
    """Bind one public JWK to ``algorithm``; raise UnusableKeyError if it does not fit."""
    info = ALGORITHMS.get(algorithm)
    if info is None:
        raise UnusableKeyError(f"algorithm {algorithm!r} is not supported")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnusableKeyError("key has no kid")
    declared = jwk.get("alg")
    if declared is not None and declared != algorithm:
        raise UnusableKeyError(f"key is for {declared!r}, the keyset verifies {algorithm}")
    if jwk.get("kty") != info.kty:
        raise UnusableKeyError(f"{algorithm} needs a {info.kty} key, not {jwk.get('kty')!r}")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKeyError(f"key is published for use {use!r}, not sig")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise UnusableKeyError("key_ops does not allow verify")
    digest = _HASHES[info.hash_bits]
    if info.kty == "RSA":
        check = _rsa_check(jwk, algorithm, digest())
    elif info.kty == "EC":
        assert info.curve is not None
        check = _ec_check(jwk, info.curve, digest())
    else:
        check = _ed25519_check(jwk, info.curve)
    return VerifyingKey(kid=kid, algorithm=algorithm, check=check)


def _rsa_check(
    jwk: Mapping[str, object], algorithm: str, digest: hashes.HashAlgorithm
) -> SignatureCheck:
    n = _big_int(jwk, "n")
    e = _big_int(jwk, "e")
    if n.bit_length() < MIN_RSA_BITS:
        raise UnusableKeyError(f"RSA modulus has {n.bit_length()} bits, fewer than {MIN_RSA_BITS}")
    try:
        key = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as error:
        raise UnusableKeyError(f"invalid RSA key: {error}") from None
    # RFC 7518 3.5: the PSS salt is as long as the hash output; accepting any other length
    # (PSS.AUTO) would let a signer outside the spec through.
    scheme: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        if algorithm.startswith("PS")
        else padding.PKCS1v15()
    )
    size = (n.bit_length() + 7) // 8

    def check(signature: bytes, signing_input: bytes) -> bool:
        if len(signature) != size:
            return False
        try:
            key.verify(signature, signing_input, scheme, digest)
        except InvalidSignature:
            return False
        return True

    return check


def _ec_check(
    jwk: Mapping[str, object], curve_name: str, digest: hashes.HashAlgorithm
) -> SignatureCheck:
    if jwk.get("crv") != curve_name:
        raise UnusableKeyError(f"needs curve {curve_name}, key is on {jwk.get('crv')!r}")
    curve, size = _CURVES[curve_name]
    x = _fixed(jwk, "x", size)
    y = _fixed(jwk, "y", size)
    try:
        key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
        ).public_key()
    except ValueError as error:
        raise UnusableKeyError(f"invalid EC key: {error}") from None
    scheme = ec.ECDSA(digest)

    def check(signature: bytes, signing_input: bytes) -> bool:
        # JWS carries R||S, each exactly the curve's size (RFC 7518 3.4); a DER signature
        # or any other length is refused rather than guessed at.
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        if not r or not s:  # "psychic signature" (r or s = 0): never valid
            return False
        try:
            key.verify(encode_dss_signature(r, s), signing_input, scheme)
        except InvalidSignature:
            return False
        return True

    return check


def _ed25519_check(jwk: Mapping[str, object], curve_name: str | None) -> SignatureCheck:
    if jwk.get("crv") != curve_name:
        raise UnusableKeyError(f"needs curve {curve_name}, key is on {jwk.get('crv')!r}")
    try:
        key = ed25519.Ed25519PublicKey.from_public_bytes(_fixed(jwk, "x", 32))
    except ValueError as error:
        raise UnusableKeyError(f"invalid Ed25519 key: {error}") from None

    def check(signature: bytes, signing_input: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            key.verify(signature, signing_input)
        except InvalidSignature:
            return False
        return True

    return check


def _member(jwk: Mapping[str, object], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not _B64URL_RE.fullmatch(value):
        raise UnusableKeyError(f"member {name!r} is missing or not a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise UnusableKeyError(f"member {name!r} is not base64url") from None


def _big_int(jwk: Mapping[str, object], name: str) -> int:
    value = int.from_bytes(_member(jwk, name), "big")
    if value <= 1:
        raise UnusableKeyError(f"member {name!r} is not a usable integer")
    return value


def _fixed(jwk: Mapping[str, object], name: str, size: int) -> bytes:
    raw = _member(jwk, name)
    if len(raw) != size:
        raise UnusableKeyError(f"member {name!r} has {len(raw)} bytes, expected {size}")
    return raw
