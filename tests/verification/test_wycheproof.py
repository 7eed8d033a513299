"""Project Wycheproof vectors through the project's own verifier.

Raw signature vectors (ECDSA P1363, RSA PKCS#1 v1.5, RSA-PSS, Ed25519) go through the one
key-and-signature check every token takes (``load_verifying_key(...).check``: the length
gate, then jwcrypto's JWS algorithm bound to the key's algorithm). JWS and JWK vectors go
through ``build_verifier`` and ``TokenVerifier.authenticate`` (gate, key, signature; their
payloads are not JWT claims, so the claims policy is not part of these tests).

What the project decides beyond a file's own ``result``, each asserted here:

- ``acceptable`` (the RSA PKCS#1 v1.5 "missing NULL" legacy encoding, one per file): refused.
  A JWS signature has one valid encoding; OpenSSL refuses the legacy one and so do we.
- RSA-PSS with a salt length other than the hash length, or an MGF1 hash other than the
  signature hash: every vector refused, "valid" ones included (RFC 7518 3.5 fixes both).
- JWS vectors the file calls valid but the project refuses on purpose (``DELIBERATE``): a
  symmetric (oct) key is never published nor trusted, an empty payload is no JWT, a token
  cannot choose another algorithm than its key's, and a key declaring an algorithm that does
  not exist (RFC 7520's ``ES521``) verifies nothing.
"""

import base64
import json
from collections import Counter
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jwcrypto import jwk as jwc_jwk

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.guard import UnsafeJwksError
from jwks_operator.core.keys import b64url
from jwks_operator.verification import build_verifier
from jwks_operator.verification.keys import UnusableKeyError, load_verifying_key
from jwks_operator.verification.verdict import Reason, Refused
from tests.verification.wycheproof import Vector, files, load, vectors

HASH_BYTES = {"SHA-256": 32, "SHA-384": 48, "SHA-512": 64}
ECDSA_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def _rsa_jwk(group: dict[str, Any]) -> dict[str, Any]:
    key = group["publicKey"]
    return {
        "kty": "RSA",
        "n": b64url(bytes.fromhex(key["modulus"]).lstrip(b"\0")),
        "e": b64url(bytes.fromhex(key["publicExponent"]).lstrip(b"\0")),
    }


def raw_key_and_algorithm(vector: Vector) -> tuple[dict[str, Any], str]:
    group = vector.group
    schema = load(vector.file)["schema"]
    if schema.startswith("ecdsa"):
        key = group["publicKey"]
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key["curve"]]
        size = (key["keySize"] + 7) // 8
        public = {
            "kty": "EC",
            "crv": crv,
            "x": b64url(int(key["wx"], 16).to_bytes(size, "big")),
            "y": b64url(int(key["wy"], 16).to_bytes(size, "big")),
        }
        return public, ECDSA_ALGORITHMS[crv]
    if schema.startswith("eddsa"):
        return dict(group["publicKeyJwk"]), "EdDSA"
    bits = group["sha"].split("-")[1]
    prefix = "PS" if schema.startswith("rsassa_pss") else "RS"
    return _rsa_jwk(group), f"{prefix}{bits}"


def jws_forbids(vector: Vector) -> bool:
    """A PSS group outside RFC 7518 3.5: salt length or MGF1 hash not the signature hash's."""
    group = vector.group
    if "sLen" not in group:
        return False
    return bool(group["sLen"] != HASH_BYTES[group["sha"]] or group["mgfSha"] != group["sha"])


def rfc7518_pss(vector: Vector) -> bool:
    """Reference for a PSS vector from a group outside RFC 7518: does the signature verify
    with the JWS parameters (salt = hash length, MGF1 with the signature hash)? Checked with
    ``cryptography`` alone, independent of the code under test. A vector whose salt was
    "changed to" the hash length is a valid PS256 signature, whatever its file expected."""
    group = vector.group
    kinds: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
        "SHA-256": hashes.SHA256,
        "SHA-384": hashes.SHA384,
        "SHA-512": hashes.SHA512,
    }
    digest = kinds[group["sha"]]()
    numbers = group["publicKey"]
    public = rsa.RSAPublicNumbers(
        int(numbers["publicExponent"], 16), int(numbers["modulus"], 16)
    ).public_key()
    scheme = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    try:
        public.verify(
            bytes.fromhex(vector.test["sig"]), bytes.fromhex(vector.test["msg"]), scheme, digest
        )
    except InvalidSignature:
        return False
    return True


def expected(vector: Vector) -> bool:
    if jws_forbids(vector):
        return rfc7518_pss(vector)
    return vector.result == "valid"


def raw_verdict(vector: Vector) -> bool:
    public, algorithm = raw_key_and_algorithm(vector)
    public.update(kid="wycheproof", alg=algorithm)
    try:
        key = load_verifying_key(public, algorithm)
    except UnusableKeyError:
        return False
    return bool(key.check(bytes.fromhex(vector.test["sig"]), bytes.fromhex(vector.test["msg"])))


RAW_FILES = files("ecdsa_") + files("rsa_signature_") + files("rsa_pss_") + files("ed25519")


@pytest.mark.parametrize("name", RAW_FILES)
def test_raw_signature_vectors_hold_through_the_verifiers_check(name: str) -> None:
    wrong = []
    seen: Counter[str] = Counter()
    for vector in vectors(name):
        seen[vector.result] += 1
        accepted = raw_verdict(vector)
        if accepted != expected(vector):
            wrong.append(f"{vector.label}: {vector.result}, accepted={accepted}")
    assert not wrong, "\n".join(wrong)
    assert seen["valid"] > 0 and seen["invalid"] > 0, seen


def test_the_vector_files_the_readme_lists_are_all_there() -> None:
    names = set(RAW_FILES) | set(files("json_web_"))
    load("json_web_signature_test.json")  # skips, visibly, without the folder
    assert len([n for n in names if n.startswith("ecdsa_")]) == 3
    assert len([n for n in names if n.startswith("rsa_signature_")]) == 9
    assert len([n for n in names if n.startswith("rsa_pss_")]) == 8
    assert {"ed25519_test.json", "json_web_key_test.json", "json_web_signature_test.json"} <= names


def test_pss_files_outside_rfc7518_are_refused_even_where_the_file_says_valid() -> None:
    """The salt-length mutation (``PSS.AUTO``) accepts these; a verifier must not."""
    outside = [
        vector
        for name in files("rsa_pss_")
        for vector in vectors(name)
        if jws_forbids(vector) and vector.result == "valid"
    ]
    assert len(outside) > 100
    assert not any(raw_verdict(vector) for vector in outside)
    # The one vector of those files that is an RFC 7518 signature after all (its salt was
    # "changed to 32", the SHA-256 length) is accepted, so the refusals are not blanket.
    conformant = [
        vector.label
        for name in files("rsa_pss_")
        for vector in vectors(name)
        if jws_forbids(vector) and rfc7518_pss(vector)
    ]
    assert conformant == ["rsa_pss_2048_sha256_mgf1_0_test.json#69 s_len changed to 32"]
    assert all(
        raw_verdict(v) for n in files("rsa_pss_") for v in vectors(n) if v.label in conformant
    )


def test_acceptable_vectors_are_refused() -> None:
    acceptable = [
        vector for name in RAW_FILES for vector in vectors(name) if vector.result == "acceptable"
    ]
    assert {vector.test["flags"][0] for vector in acceptable} == {"MissingNull"}
    assert len(acceptable) == 9
    assert not any(raw_verdict(vector) for vector in acceptable)


# -- JWS and JWK vectors ---------------------------------------------------------------


def public_keyset(group: dict[str, Any]) -> dict[str, Any]:
    """The published form of a group's key(s): jwcrypto's export of the public half; an oct
    key stays as it is (the guard must refuse to publish or trust it)."""
    if "public" in group:
        public = group["public"]
        return {"keys": list(public.get("keys", [public]))}
    private = group["private"]
    keys = private.get("keys", [private])
    published = []
    for key in keys:
        if key.get("kty") == "oct":
            published.append(key)
        else:
            published.append(jwc_jwk.JWK(**key).export_public(as_dict=True))
    return {"keys": published}


def _header_alg(token: str) -> object:
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    except ValueError:
        return None
    return header.get("alg") if isinstance(header, dict) else None


def jws_verdict(vector: Vector) -> Refused | str:
    """ "accepted", or the refusal; an unpublishable keyset counts as a refusal."""
    token = vector.test["jws"]
    if not isinstance(token, str):
        return Refused(Reason.MALFORMED_TOKEN, "JSON serialisation")
    keyset = public_keyset(vector.group)
    declared = next((k["alg"] for k in keyset["keys"] if k.get("alg") in ALGORITHMS), None)
    header_alg = _header_alg(token)
    algorithm = declared or (header_alg if header_alg in ALGORITHMS else "RS256")
    try:
        verifier = build_verifier(keyset, f'{{"algorithm": "{algorithm}"}}')
    except UnsafeJwksError as error:
        return Refused(Reason.KEY_NOT_USABLE, f"keyset refused: {error}")
    verdict = verifier.authenticate(token)
    return verdict if isinstance(verdict, Refused) else "accepted"


def deliberate_refusal(vector: Vector) -> Reason | None:
    """Why the project refuses a JWS vector its file calls valid (see the module docstring)."""
    keys = public_keyset(vector.group)["keys"]
    token = vector.test["jws"]
    if any(key.get("kty") == "oct" for key in keys):
        return Reason.KEY_NOT_USABLE  # symmetric: never published, never trusted
    if isinstance(token, str) and token.split(".")[1] == "":
        return Reason.MALFORMED_TOKEN  # no payload: not a JWT
    declared = {key.get("alg") for key in keys}
    if declared - set(ALGORITHMS) - {None}:
        return Reason.KEY_NOT_USABLE  # the key declares an algorithm that does not exist
    if _header_alg(token) not in declared:
        return Reason.ALGORITHM_NOT_ALLOWED  # the key's algorithm, never the token's
    return None


@pytest.mark.parametrize("name", files("json_web_"))
def test_jws_and_jwk_vectors_hold_through_the_verifier(name: str) -> None:
    wrong = []
    deliberate: Counter[str] = Counter()
    for vector in vectors(name):
        verdict = jws_verdict(vector)
        because = deliberate_refusal(vector) if vector.result == "valid" else None
        if vector.result == "valid" and because is None:
            ok = verdict == "accepted"
        elif because is not None:
            deliberate[because.value] += 1
            ok = isinstance(verdict, Refused) and verdict.reason == because
        else:
            ok = isinstance(verdict, Refused)
        if not ok:
            wrong.append(f"{vector.label}: {vector.result}, ours {verdict}")
    assert not wrong, "\n".join(wrong)
    # What the project refuses on purpose, pinned so that a change is a decision.
    expected = {
        "json_web_signature_test.json": {
            "key_not_usable": 12,  # 10 HS256 (oct) vectors, RFC 7520 Figure 35, ES521 key
            "malformed_token": 6,  # emptyPayload, RS256..PS512
            "algorithm_not_allowed": 2,  # RFC 7520 Figure 20: PS384 token, PS256 key
        },
        "json_web_key_test.json": {"key_not_usable": 4},  # HS256..HS512 keysets
    }
    assert dict(deliberate) == expected.get(name, {}), deliberate
