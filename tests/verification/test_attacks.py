"""Attacks on the verifier: each must be refused, for the documented reason, without raising.

The list is the one in issue 7 and RFC 8725 (JWT best current practice): alg none, algorithm
confusion, kid injection, oversized and deeply nested tokens, header injection through
claims, ECDSA signature forms, critical and key-carrying headers, nested and typed tokens,
and the parser-differential tricks (duplicate names, lenient base64, non-finite numbers).
"""

import base64
import hashlib
import hmac
import json
import socket
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from jwks_operator.core.keys import load_private_key, material_from_private_key
from jwks_operator.verification import Accepted, Reason, Refused, TokenVerifier, build_verifier
from jwks_operator.verification.compact import MAX_TOKEN_CHARS
from tests.verification.helpers import (
    NOW,
    b64,
    claims,
    jwks,
    material,
    policy_json,
    replace_signature,
    segment,
    sign_bytes,
    token,
)

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P521_ORDER = int(
    "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA" + "51868783BF2F966B7FCC0148F709A5D0"
    "3BB5C9B8899C47AEBB6FB71E91386409",
    16,
)


def verifier_for(algorithm: str, **policy: Any) -> TokenVerifier:
    return build_verifier(jwks(material(algorithm)), policy_json(algorithm, **policy))


def refused(verdict: object, reason: Reason) -> Refused:
    assert isinstance(verdict, Refused), verdict
    assert verdict.reason == reason, verdict
    assert verdict.error == "invalid_token" and verdict.status == 401
    return verdict


def unsigned(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, sig: str = "") -> str:
    return f"{segment(header)}.{segment(payload)}.{sig}"


# -- alg none -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2ln"])
def test_alg_none_is_refused(alg: str, signature: str) -> None:
    key = material("RS256")
    forged = unsigned({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims(), signature)
    verdict = refused(verifier_for("RS256").verify(forged, NOW), Reason.ALGORITHM_NOT_ALLOWED)
    assert "alg none" in verdict.description


def test_a_header_without_alg_is_refused() -> None:
    key = material("RS256")
    forged = unsigned({"kid": key.kid}, claims(), "c2ln")
    refused(verifier_for("RS256").verify(forged, NOW), Reason.ALGORITHM_NOT_ALLOWED)


# -- algorithm confusion ------------------------------------------------------------------


def _public_key_forms(algorithm: str) -> dict[str, bytes]:
    key = material(algorithm)
    public = load_private_key(key.private_jwk).public_key()
    return {
        "pem-spki": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "pem-pkcs1": (
            public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
            if algorithm.startswith("RS")
            else b""
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": json.dumps(dict(key.public_jwk)).encode(),
        "jwk-json-sorted": json.dumps(dict(key.public_jwk), sort_keys=True).encode(),
    }


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
@pytest.mark.parametrize("hmac_alg", ["HS256", "HS384", "HS512"])
def test_hmac_with_the_public_key_as_secret_is_refused(algorithm: str, hmac_alg: str) -> None:
    """RS->HS confusion: the public key (every form an attacker might try) as HMAC secret."""
    key = material(algorithm)
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    verifier = verifier_for(algorithm)
    for form, secret in _public_key_forms(algorithm).items():
        if not secret:
            continue
        signing_input = f"{segment({'alg': hmac_alg, 'kid': key.kid})}.{segment(claims())}"
        mac = hmac.new(secret, signing_input.encode(), digest[hmac_alg[:5]]).digest()
        verdict = verifier.verify(f"{signing_input}.{b64(mac)}", NOW)
        assert isinstance(verdict, Refused), form
        assert verdict.reason == Reason.ALGORITHM_NOT_ALLOWED, form
        assert "HMAC" in verdict.description


def test_an_hmac_policy_cannot_even_be_built() -> None:
    with pytest.raises(ValueError, match="not supported"):
        build_verifier(jwks(material("RS256")), policy_json("HS256"))


@pytest.mark.parametrize(
    ("policy_alg", "token_alg"),
    [
        ("RS256", "PS256"),
        ("RS256", "RS512"),
        ("PS256", "RS256"),
        ("ES256", "ES384"),
        ("ES256", "EdDSA"),
        ("EdDSA", "ES256"),
        ("RS256", "rs256"),
        ("RS256", "RS256 "),
    ],
)
def test_only_the_keysets_algorithm_is_accepted(policy_alg: str, token_alg: str) -> None:
    key = material(policy_alg)
    header = {"alg": token_alg, "kid": key.kid}
    signing_input = f"{segment(header)}.{segment(claims())}"
    try:  # the real key, used with the header's scheme, wherever that is possible at all
        signature = sign_bytes(key, signing_input.encode(), token_alg)
    except (KeyError, AssertionError, ValueError):
        signature = b"not a signature"
    verdict = verifier_for(policy_alg).verify(f"{signing_input}.{b64(signature)}", NOW)
    refused(verdict, Reason.ALGORITHM_NOT_ALLOWED)


def test_the_right_alg_name_with_the_wrong_padding_fails_the_signature() -> None:
    """Header says RS256, signature is PSS by the same key: the key's scheme decides."""
    key = material("RS256")
    header = {"alg": "RS256", "kid": key.kid}
    signing_input = f"{segment(header)}.{segment(claims())}"
    pss = sign_bytes(key, signing_input.encode(), "PS256")
    refused(verifier_for("RS256").verify(f"{signing_input}.{b64(pss)}", NOW), Reason.BAD_SIGNATURE)


def test_each_key_verifies_only_with_its_own_published_algorithm() -> None:
    """A keyset migrating RS256 -> ES256 publishes both kinds; each key keeps its alg."""
    rsa_key, ec_key = material("RS256"), material("ES256")
    verifier = build_verifier(jwks(rsa_key, ec_key), policy_json("ES256"))
    assert verifier.unusable == {}
    # The retired RS256 key still verifies its own tokens after the migration...
    assert verifier.verify(token(rsa_key), NOW).ok
    assert verifier.verify(token(ec_key), NOW).ok
    # ...but a token cannot pick another algorithm for a key: RS256 claimed, EC kid.
    forged = unsigned({"alg": "RS256", "kid": ec_key.kid}, claims(), "c2ln")
    refused(verifier.verify(forged, NOW), Reason.ALGORITHM_NOT_ALLOWED)
    forged = unsigned({"alg": "ES256", "kid": rsa_key.kid}, claims(), "c2ln")
    refused(verifier.verify(forged, NOW), Reason.ALGORITHM_NOT_ALLOWED)
    forged = unsigned({"alg": "PS256", "kid": rsa_key.kid}, claims(), "c2ln")
    refused(verifier.verify(forged, NOW), Reason.ALGORITHM_NOT_ALLOWED)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"use": "enc"}, "use 'enc'"),
        ({"key_ops": ["encrypt"]}, "key_ops"),
        ({"kty": "EC"}, "needs a RSA key"),
        ({"n": "AQAB"}, "fewer than 2048"),
        ({"n": "!!!"}, "base64url"),
    ],
)
def test_published_keys_that_do_not_fit_are_left_out(change: dict[str, Any], words: str) -> None:
    jwk = {**material("RS256").public_jwk, **change}
    verifier = build_verifier({"keys": [jwk]}, policy_json("RS256"))
    assert verifier.kids == ()
    assert words in verifier.unusable[jwk["kid"]]
    refused(verifier.verify(token(material("RS256")), NOW), Reason.KEY_NOT_USABLE)


def test_a_weak_rsa_key_is_not_usable() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    key = material_from_private_key(weak, "RS256", 1024)
    verifier = build_verifier(jwks(key), policy_json("RS256"))
    refused(verifier.verify(token(key), NOW), Reason.KEY_NOT_USABLE)


def test_an_ec_point_off_the_curve_is_not_usable() -> None:
    jwk = dict(material("ES256").public_jwk)
    y = bytearray(b64decode(jwk["y"]))
    y[-1] ^= 1
    jwk["y"] = b64(bytes(y))
    verifier = build_verifier({"keys": [jwk]}, policy_json("ES256"))
    assert "invalid EC key" in verifier.unusable[jwk["kid"]]


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- kid injection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../etc/passwd",
        "/dev/random",
        "' OR '1'='1' --",
        "x'; DROP TABLE keys; --",
        "$(touch /tmp/pwned)",
        "a\r\nX-Injected: 1",
        "\u202e" + "evil",
        "k" * 600,
        "",
    ],
)
def test_kid_injection_is_an_unknown_kid(kid: str) -> None:
    key = material("ES256")
    verdict = refused(verifier_for("ES256").verify(token(key, kid=kid), NOW), Reason.UNKNOWN_KID)
    if kid and (len(kid) > 64 or not kid.isalnum()):
        assert kid not in verdict.description  # never echoed unless short and plain


@pytest.mark.parametrize("kid", [123, 1.5, True, ["a"], {"$ne": None}])
def test_a_non_string_kid_is_malformed(kid: Any) -> None:
    verdict = verifier_for("ES256").verify(token(material("ES256"), kid=kid), NOW)
    refused(verdict, Reason.MALFORMED_TOKEN)


def test_a_missing_kid_is_refused_even_with_one_key() -> None:
    forged = token(material("ES256"), header={"alg": "ES256", "typ": "JWT"})
    refused(verifier_for("ES256").verify(forged, NOW), Reason.MISSING_KID)


def test_an_enormous_kid_is_refused_before_any_lookup() -> None:
    verdict = verifier_for("ES256").verify(token(material("ES256"), kid="k" * 5000), NOW)
    refused(verdict, Reason.TOKEN_TOO_LARGE)


# -- size and nesting ---------------------------------------------------------------------


def test_an_oversized_token_is_refused_before_parsing() -> None:
    key = material("ES256")
    big = token(key, claims(pad="x" * 9000))
    assert len(big) > MAX_TOKEN_CHARS
    refused(verifier_for("ES256").verify(big, NOW), Reason.TOKEN_TOO_LARGE)
    refused(verifier_for("ES256").verify("a" * 1_000_000, NOW), Reason.TOKEN_TOO_LARGE)


def test_a_large_token_within_the_limit_is_accepted() -> None:
    key = material("ES256")
    near = token(key, claims(pad="x" * 5500))
    assert 7000 < len(near) <= MAX_TOKEN_CHARS
    assert isinstance(verifier_for("ES256").verify(near, NOW), Accepted)


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_claims_nesting_is_bounded() -> None:
    key = material("ES256")
    verifier = verifier_for("ES256")
    assert isinstance(verifier.verify(token(key, claims(deep=_nested(7))), NOW), Accepted)
    verdict = refused(
        verifier.verify(token(key, claims(deep=_nested(8))), NOW), Reason.MALFORMED_TOKEN
    )
    assert "nests deeper" in verdict.description


def test_pathological_nesting_does_not_raise() -> None:
    key = material("ES256")
    payload = b"[" * 2500 + b"]" * 2500  # beyond the interpreter's recursion limit
    refused(verifier_for("ES256").verify(token(key, payload), NOW), Reason.MALFORMED_TOKEN)
    header = b'{"alg":"ES256","x":' + b"[" * 350 + b"]" * 350 + b"}"
    refused(verifier_for("ES256").verify(token(key, header=header), NOW), Reason.MALFORMED_TOKEN)


# -- header injection through claims ------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "alice\r\nX-Admin: true",
        "alice\nX-Admin: true",
        "alice\r",
        "ali\x00ce",
        "alice\x7f",
        "alice\x85",
        "alice\u2028admin",
        " alice",
        "alice\t",
        "a" * 3000,
    ],
)
@pytest.mark.parametrize("claim", ["sub", "email", "iss"])
def test_claims_that_cannot_be_header_values_refuse_the_token(claim: str, value: str) -> None:
    verifier = verifier_for("ES256", issuer=None, claimHeaders={"email": "X-Auth-Email"})
    verdict = verifier.verify(token(material("ES256"), claims(**{claim: value})), NOW)
    refused(verdict, Reason.UNREPRESENTABLE_CLAIM)


def test_unmapped_claims_may_hold_anything() -> None:
    verdict = verifier_for("ES256").verify(
        token(material("ES256"), claims(note="line1\r\nline2")), NOW
    )
    assert isinstance(verdict, Accepted)


def test_non_string_claims_are_sent_as_ascii_json() -> None:
    verifier = verifier_for("ES256", claimHeaders={"roles": "X-Roles", "n": "X-N"})
    payload = claims(sub=42, roles=["a\r\nX-Evil: 1", "zoë"], n={"b": 1, "a": None})
    verdict = verifier.verify(token(material("ES256"), payload), NOW)
    assert isinstance(verdict, Accepted)
    headers = dict(verdict.headers)
    assert headers["X-Auth-Subject"] == "42"
    assert headers["X-Roles"] == '["a\\r\\nX-Evil: 1","zo\\u00eb"]'
    assert headers["X-N"] == '{"a":null,"b":1}'
    for value in headers.values():
        assert value.isprintable() and value.isascii()


def test_unicode_text_claims_pass_unchanged() -> None:
    verdict = verifier_for("ES256").verify(token(material("ES256"), claims(sub="Zoë 山田")), NOW)
    assert isinstance(verdict, Accepted)
    assert dict(verdict.headers)["X-Auth-Subject"] == "Zoë 山田"


# -- ECDSA signature forms ----------------------------------------------------------------


def _rs(signature: bytes, size: int) -> tuple[int, int]:
    return int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")


def test_ecdsa_high_s_twin_verifies_and_that_is_documented() -> None:
    """(r, n-s) is as valid as (r, s): ECDSA is malleable, and OpenSSL-made signers emit both
    forms, so refusing high-S would refuse real tokens. Never treat a token's bytes as a
    unique id (use jti)."""
    key = material("ES256")
    good = token(key)
    r, s = _rs(b64decode(good.split(".")[2]), 32)
    twin = replace_signature(good, r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big"))
    assert twin != good
    assert isinstance(verifier_for("ES256").verify(twin, NOW), Accepted)


@pytest.mark.parametrize("form", ["der", "zeros", "r_zero", "s_is_order", "short", "long"])
def test_ecdsa_signatures_outside_the_raw_form_are_refused(form: str) -> None:
    key = material("ES256")
    good = token(key)
    raw = b64decode(good.split(".")[2])
    r, s = _rs(raw, 32)
    signature = {
        "der": encode_dss_signature(r, s),
        "zeros": bytes(64),
        "r_zero": bytes(32) + s.to_bytes(32, "big"),
        "s_is_order": r.to_bytes(32, "big") + P256_ORDER.to_bytes(32, "big"),
        "short": raw[:-1],
        "long": raw + b"\x00",
    }[form]
    refused(
        verifier_for("ES256").verify(replace_signature(good, signature), NOW), Reason.BAD_SIGNATURE
    )


def test_es512_s_plus_order_is_refused() -> None:
    """On P-521 the 66-byte field has room for s + n: out of range, must not verify."""
    key = material("ES512")
    good = token(key)
    r, s = _rs(b64decode(good.split(".")[2]), 66)
    twin = r.to_bytes(66, "big") + (P521_ORDER - s).to_bytes(66, "big")
    assert isinstance(verifier_for("ES512").verify(replace_signature(good, twin), NOW), Accepted)
    shifted = r.to_bytes(66, "big") + (s + P521_ORDER).to_bytes(66, "big")
    refused(
        verifier_for("ES512").verify(replace_signature(good, shifted), NOW), Reason.BAD_SIGNATURE
    )


def test_a_der_signature_made_by_the_real_key_is_still_refused() -> None:
    key = material("ES256")
    header = {"alg": "ES256", "kid": key.kid}
    signing_input = f"{segment(header)}.{segment(claims())}"
    private = load_private_key(key.private_jwk)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    der = private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    refused(verifier_for("ES256").verify(f"{signing_input}.{b64(der)}", NOW), Reason.BAD_SIGNATURE)


# -- header members -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["exp"], "exp": 1},
        {"crit": ["b64"], "b64": False},
        {"b64": False},
        {"crit": []},
    ],
)
def test_critical_extensions_are_refused(extra: dict[str, Any]) -> None:
    verdict = verifier_for("ES256").verify(token(material("ES256"), **extra), NOW)
    refused(verdict, Reason.UNSUPPORTED_HEADER)


def test_b64_false_with_a_raw_payload_is_refused() -> None:
    key = material("ES256")
    header = {"alg": "ES256", "kid": key.kid, "b64": False, "crit": ["b64"]}
    payload = json.dumps(claims())
    signing_input = f"{segment(header)}.{payload}"
    signature = sign_bytes(key, signing_input.encode())
    detached = f"{segment(header)}..{b64(signature)}"
    for candidate in (detached, f"{segment(header)}.{b64(payload.encode())}.{b64(signature)}"):
        verdict = verifier_for("ES256").verify(candidate, NOW)
        assert isinstance(verdict, Refused)
        assert verdict.reason in (Reason.UNSUPPORTED_HEADER, Reason.MALFORMED_TOKEN)


@pytest.fixture
def trap() -> Any:
    """A loopback listener that records whether anything tried to fetch from it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    yield listener
    listener.close()


def _nothing_connected(listener: socket.socket) -> bool:
    try:
        connection, _ = listener.accept()
    except BlockingIOError:
        return True
    connection.close()
    return False


@pytest.mark.parametrize("member", ["jku", "x5u"])
def test_key_urls_in_the_header_are_refused_and_never_fetched(member: str, trap: Any) -> None:
    url = f"http://127.0.0.1:{trap.getsockname()[1]}/keys.json"
    attacker = material("ES256", 1)
    verifier = verifier_for("ES256")
    for signer in (attacker, material("ES256")):
        header = {"alg": "ES256", "kid": signer.kid, member: url}
        verdict = verifier.verify(token(signer, header=header), NOW)
        refused(verdict, Reason.UNSUPPORTED_HEADER)
    assert _nothing_connected(trap)


def test_an_embedded_jwk_is_refused_even_when_it_matches_the_signature() -> None:
    attacker = material("ES256", 1)
    for kid in (attacker.kid, material("ES256").kid):
        forged = token(attacker, kid=kid, jwk=dict(attacker.public_jwk))
        refused(verifier_for("ES256").verify(forged, NOW), Reason.UNSUPPORTED_HEADER)


def test_an_embedded_certificate_chain_is_refused() -> None:
    forged = token(material("ES256"), x5c=["MIIB"])
    refused(verifier_for("ES256").verify(forged, NOW), Reason.UNSUPPORTED_HEADER)


# -- typ, cty, nesting --------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "application/at+jwt", None])
def test_jwt_and_access_token_types_are_accepted(typ: str | None) -> None:
    verdict = verifier_for("ES256").verify(token(material("ES256"), typ=typ), NOW)
    assert isinstance(verdict, Accepted)


@pytest.mark.parametrize("typ", ["logout+jwt", "secevent+jwt", "JWE", "dpop+jwt", 1, ["JWT"]])
def test_other_token_types_are_refused(typ: Any) -> None:
    verdict = verifier_for("ES256").verify(token(material("ES256"), typ=typ), NOW)
    refused(verdict, Reason.WRONG_TYPE)


def test_nested_tokens_are_refused() -> None:
    key = material("ES256")
    inner = token(key)
    outer = token(key, json.dumps(inner).encode(), cty="JWT")
    refused(verifier_for("ES256").verify(outer, NOW), Reason.WRONG_TYPE)
    # The same nesting without cty: the payload is a string, not a claims object.
    bare = token(key, json.dumps(inner).encode())
    refused(verifier_for("ES256").verify(bare, NOW), Reason.MALFORMED_TOKEN)


def test_encrypted_tokens_are_refused_by_shape() -> None:
    verdict = verifier_for("ES256").verify("eyJhbGciOiJkaXIifQ..aXY.Y3Q.dGFn", NOW)
    assert "JWE" in refused(verdict, Reason.MALFORMED_TOKEN).description


# -- parser differentials -----------------------------------------------------------------


def test_duplicate_header_members_are_refused() -> None:
    key = material("ES256")
    header = f'{{"alg":"none","alg":"ES256","kid":"{key.kid}"}}'.encode()
    refused(verifier_for("ES256").verify(token(key, header=header), NOW), Reason.MALFORMED_TOKEN)


def test_duplicate_claims_are_refused_even_when_signed() -> None:
    key = material("ES256")
    body = json.dumps(claims())[:-1] + ', "sub": "admin"}'
    refused(verifier_for("ES256").verify(token(key, body.encode()), NOW), Reason.MALFORMED_TOKEN)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"exp": NaN}', Reason.MALFORMED_TOKEN),
        (b'{"exp": Infinity}', Reason.MALFORMED_TOKEN),
        (b'{"exp": 1e999}', Reason.INVALID_CLAIM),
        (b'{"exp": 1' + b"0" * 5000 + b"}", Reason.MALFORMED_TOKEN),
        (b'{"sub": "\xff"}', Reason.MALFORMED_TOKEN),
        (b"\xef\xbb\xbf{}", Reason.MALFORMED_TOKEN),
        (b'"just a string"', Reason.MALFORMED_TOKEN),
        (b"[]", Reason.MALFORMED_TOKEN),
        (b"", Reason.MALFORMED_TOKEN),
    ],
)
def test_hostile_claims_json_is_refused(payload: bytes, reason: Reason) -> None:
    refused(verifier_for("ES256").verify(token(material("ES256"), payload), NOW), reason)


def test_lenient_base64_spellings_are_refused() -> None:
    good = token(material("ES256"))
    head, body, signature = good.split(".")
    verifier = verifier_for("ES256")
    for variant in (
        f"{head}=.{body}.{signature}",
        f"{head}.{body}.{signature}==",
        f"{head}.{body}.{signature.replace('-', '+').replace('_', '/')}x+/",
        f" {good}",
        f"{good}\n",
        f"{head}.{body[:10]} {body[10:]}.{signature}",
        f"{head}.{body}.{signature}.",
        f"{head}..{signature}",
        good.replace(".", "..", 1),
        "é" + good,
    ):
        refused(verifier.verify(variant, NOW), Reason.MALFORMED_TOKEN)


def test_a_non_canonical_signature_spelling_is_refused() -> None:
    """Changing unused low bits of the last character keeps the bytes but not the token."""
    good = token(material("ES256"))
    signature = good.split(".")[2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    twin = alphabet[last ^ 1]  # 64 bytes -> 86 chars, the last one carries 4 unused bits
    spelled = good[:-1] + twin
    assert b64decode(spelled.split(".")[2]) == b64decode(signature)
    refused(verifier_for("ES256").verify(spelled, NOW), Reason.MALFORMED_TOKEN)


def test_a_header_that_is_not_an_object_is_malformed() -> None:
    key = material("ES256")
    for header in (b'"ES256"', b"[1]", b"null", b"{"):
        refused(
            verifier_for("ES256").verify(token(key, header=header), NOW), Reason.MALFORMED_TOKEN
        )
