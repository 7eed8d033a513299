"""Public JWKs turned, once, into ready-to-call signature checks.

A published JWK is imported with jwcrypto (``JWK(**members)``: kty, curve and member
checks; the point-on-curve check runs here too, when the public key is first built), and
each check is jwcrypto's JWS algorithm (``JWA.signing_alg``) bound to exactly one
algorithm: the one the operator published with the key. The token header's ``alg`` only
selects a key, it never selects how the key is used, which is what makes algorithm
confusion (RS256 -> HS256, ES -> RS) impossible.

Importing a key costs far more than a request can afford, so it happens when the snapshot
changes, never per token. What this module adds to jwcrypto, each deliberately:

- the key must fit the algorithm (kty, crv, declared ``alg``, ``use``/``key_ops``), an RSA
  modulus has at least 2048 bits (RFC 7518 3.3) and does not carry the ROCA fingerprint
  (CVE-2017-15361: moduli from Infineon's flawed generator can be factored);
- a signature must have the exact length of its algorithm before jwcrypto sees it: the
  modulus size for RSA, 64 bytes for Ed25519, and twice the curve size for ECDSA (RFC 7518
  3.4): jwcrypto splits any ECDSA signature in two halves, so a 63-byte or DER signature
  would otherwise reach the curve arithmetic, and r or s of zero is never valid.

The PSS salt length is jwcrypto's (the hash length, RFC 7518 3.5); a test pins it.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwa, jwk
from jwcrypto.common import JWException

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.keys import PUBLIC_MEMBERS, b64url_decode, import_jwk

MIN_RSA_BITS: Final = 2048
_EC_SIZES: Final = {"P-256": 32, "P-384": 48, "P-521": 66}
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,2048}")

SignatureCheck = Callable[[bytes, bytes], bool]
"""``check(signature, signing_input) -> bool``; never raises for a bad signature."""


class UnusableKeyError(ValueError):
    """A published JWK this verifier cannot use for its algorithm (reason given)."""


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    kid: str
    algorithm: str
    check: SignatureCheck


def load_verifying_key(members: Mapping[str, object], algorithm: str) -> VerifyingKey:
    """Bind one public JWK to ``algorithm``; raise UnusableKeyError if it does not fit."""
    info = ALGORITHMS.get(algorithm)
    if info is None:
        raise UnusableKeyError(f"algorithm {algorithm!r} is not supported")
    kid = members.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnusableKeyError("key has no kid")
    declared = members.get("alg")
    if declared is not None and declared != algorithm:
        raise UnusableKeyError(f"key is for {declared!r}, the keyset verifies {algorithm}")
    if members.get("kty") != info.kty:
        raise UnusableKeyError(f"{algorithm} needs a {info.kty} key, not {members.get('kty')!r}")
    if info.curve is not None and members.get("crv") != info.curve:
        raise UnusableKeyError(f"needs curve {info.curve}, key is on {members.get('crv')!r}")
    use = members.get("use")
    if use is not None and use != "sig":
        raise UnusableKeyError(f"key is published for use {use!r}, not sig")
    key_ops = members.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise UnusableKeyError("key_ops does not allow verify")
    numbers = [members.get(name) for name in PUBLIC_MEMBERS[info.kty] if name != "crv"]
    if not all(isinstance(value, str) and _B64URL_RE.fullmatch(value) for value in numbers):
        # jwcrypto's base64url decoding skips characters outside the alphabet; a published
        # key is spelled one way only.
        raise UnusableKeyError("a key member is missing or not a base64url string")
    if info.kty == "RSA":
        bits = int.from_bytes(b64url_decode(str(members["n"])), "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise UnusableKeyError(f"RSA modulus has {bits} bits, fewer than {MIN_RSA_BITS}")
        if has_roca_fingerprint(int.from_bytes(b64url_decode(str(members["n"])), "big")):
            raise UnusableKeyError("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")
    try:
        key = import_jwk(members)
        if key.has_private:
            raise UnusableKeyError("key holds private members")
        public = key.get_op_key("verify", info.curve)  # builds (and validates) the key now
    except UnusableKeyError:
        raise
    except (ValueError, JWException) as error:
        raise UnusableKeyError(f"invalid {info.kty} key ({error.__class__.__name__})") from None
    size = signature_size(public)
    return VerifyingKey(kid=kid, algorithm=algorithm, check=signature_check(key, algorithm, size))


_ROCA_PRIMES: Final = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
                       73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149,
                       151, 157, 163, 167)  # fmt: skip


def _powers_of_65537(prime: int) -> frozenset[int]:
    powers, value = {1}, 65537 % prime
    while value not in powers:
        powers.add(value)
        value = value * 65537 % prime
    return frozenset(powers)


_ROCA_RESIDUES: Final = tuple((prime, _powers_of_65537(prime)) for prime in _ROCA_PRIMES)


def has_roca_fingerprint(modulus: int) -> bool:
    """ROCA moduli are ``k * M + (65537^a mod M)`` with ``M`` the primorial of the primes
    above, so modulo each of them they fall in the subgroup 65537 generates (the published
    detection test; a random modulus passes all 38 by chance with negligible probability)."""
    return all(modulus % prime in residues for prime, residues in _ROCA_RESIDUES)


def signature_size(public: object) -> int:
    """The one length a JWS signature by ``public`` may have (RFC 7518 3.3, 3.4; RFC 8037)."""
    if isinstance(public, rsa.RSAPublicKey):
        return (public.key_size + 7) // 8
    if isinstance(public, ec.EllipticCurvePublicKey):
        return 2 * _EC_SIZES[_curve_name(public.curve)]
    if isinstance(public, ed25519.Ed25519PublicKey):
        return 64
    raise UnusableKeyError(f"unsupported key type {type(public).__name__}")


def _curve_name(curve: ec.EllipticCurve) -> str:
    return {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[curve.name]


def signature_check(key: jwk.JWK, algorithm: str, size: int) -> SignatureCheck:
    """jwcrypto's verification for ``algorithm`` with ``key``, behind the length gate.

    The same check serves tokens (``TokenVerifier``) and raw signature test vectors, so the
    vectors prove the code path every token takes.
    """
    verifier = jwa.JWA.signing_alg(algorithm)
    is_ecdsa = algorithm.startswith("ES")
    half = size // 2

    def check(signature: bytes, signing_input: bytes) -> bool:
        if len(signature) != size:
            return False
        # "Psychic signatures" (r or s = 0) are never valid; refused before any arithmetic.
        if is_ecdsa and (not any(signature[:half]) or not any(signature[half:])):
            return False
        try:
            verifier.verify(key, signing_input, signature)
        except (InvalidSignature, ValueError):
            return False
        return True

    return check
