"""The RFCs' own examples: RFC 7638 and RFC 8037 thumbprints, RFC 7517 keys, RFC 7515 and
RFC 7520 signed examples and RFC 8037's Ed25519 example, through the project's code.

The values (``data/rfc_examples.json``) are the RFCs' published examples, as transcribed in
jwcrypto's test suite. RFC 7518 defines the algorithms those examples use (RS256, PS384,
ES256, ES512 with R||S signatures); it has no signed examples of its own.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from jwks_operator.core.guard import UnsafeJwksError, check_public_jwks
from jwks_operator.core.keys import KeyLoadError, b64url, b64url_decode, load_material, thumbprint
from jwks_operator.core.tokens import sign_token
from jwks_operator.verification import build_verifier
from jwks_operator.verification.keys import UnusableKeyError, load_verifying_key
from jwks_operator.verification.verdict import Accepted, Reason, Refused
from tests.verification.helpers import NOW, claims

EXAMPLES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "rfc_examples.json").read_text()
)
RFC7520 = EXAMPLES["rfc7520"]
BILBO = "bilbo.baggins@hobbiton.example"
PRIVATE = ("d", "p", "q", "dp", "dq", "qi")


def public(key: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**{k: v for k, v in key.items() if k not in PRIVATE}, **extra}


def test_rfc7638_thumbprint_of_the_rfc7517_keys() -> None:
    """RFC 7638 3.1's example is RFC 7517 A.1's RSA key: NzbLsXh8...; the EC key's is listed
    beside it. Members other than the required ones (kid, alg, use) do not change it."""
    keys = EXAMPLES["rfc7517"]["public_a1"]
    assert [thumbprint(key) for key in keys["keys"]] == keys["thumbprints"]
    assert keys["thumbprints"][1] == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc8037_thumbprint_of_the_ed25519_key() -> None:
    keys = EXAMPLES["rfc8037"]["public_a2"]
    assert thumbprint(keys["keys"][0]) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert keys["thumbprints"] == ["kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"]


def test_stored_private_keys_from_the_rfcs_get_their_thumbprint_as_kid() -> None:
    """The operator's own path for a stored key (load, check, re-derive the public half)."""
    ec_key, rsa_key = EXAMPLES["rfc7517"]["private_a2"]["keys"]
    thumbprints = EXAMPLES["rfc7517"]["public_a1"]["thumbprints"]
    # The EC example is an encryption key ("use": "enc"), which jwcrypto will not sign with;
    # as a signing key (the only kind the operator stores) it has the same thumbprint.
    with pytest.raises(KeyLoadError):
        load_material(ec_key, "ES256", None)
    signing_ec = {name: value for name, value in ec_key.items() if name != "use"}
    assert load_material(signing_ec, "ES256", None).kid == thumbprints[0]
    rsa_material = load_material(rsa_key, "RS256", 2048)
    assert rsa_material.kid == thumbprints[1]
    assert rsa_material.public_jwk["n"] == rsa_key["n"]
    ed_material = load_material(EXAMPLES["rfc8037"]["private_a1"], "EdDSA", None)
    assert ed_material.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert ed_material.public_jwk["x"] == EXAMPLES["rfc8037"]["private_a1"]["x"]
    # ...and a token the project signs with it verifies against its public JWK only.
    policy = {"algorithm": "EdDSA", "issuer": claims()["iss"], "audiences": [claims()["aud"]]}
    verifier = build_verifier({"keys": [dict(ed_material.public_jwk)]}, json.dumps(policy))

    assert isinstance(verifier.verify(sign_token(ed_material, claims()), NOW), Accepted)


def test_rfc7517_private_keys_are_never_published() -> None:
    with pytest.raises(UnsafeJwksError, match="private member"):
        check_public_jwks(EXAMPLES["rfc7517"]["private_a2"])


def test_rfc7517_encryption_key_does_not_verify() -> None:
    ec_key = EXAMPLES["rfc7517"]["public_a1"]["keys"][0]
    assert ec_key["use"] == "enc"
    with pytest.raises(UnusableKeyError, match="use 'enc'"):
        load_verifying_key(ec_key, "ES256")


@pytest.mark.parametrize("name", ["a2_rs256", "a3_es256", "a4_es512"])
def test_rfc7515_signed_examples_verify_through_the_signature_check(name: str) -> None:
    example = EXAMPLES["rfc7515"][name]
    check = load_verifying_key(public(example["key"], kid="rfc7515"), example["alg"]).check
    signing_input = f"{b64url(example['protected'].encode())}.{example['payload_b64']}".encode()
    signature = b64url_decode(example["signature_b64"])
    assert check(signature, signing_input)
    assert not check(signature, signing_input + b"x")
    assert not check(bytes([signature[0] ^ 1]) + signature[1:], signing_input)


@pytest.mark.parametrize(
    ("compact", "key", "algorithm"),
    [
        ("compact_4_1_rs256", "rsa_public_3_3", "RS256"),
        ("compact_4_2_ps384", "rsa_public_3_3", "PS384"),
        ("compact_4_3_es512", "ec_public_3_1", "ES512"),
    ],
)
def test_rfc7520_signed_examples_pass_the_whole_gate(
    compact: str, key: str, algorithm: str
) -> None:
    published = public(RFC7520[key], kid=BILBO)
    published.pop("alg", None)
    verifier = build_verifier({"keys": [published]}, json.dumps({"algorithm": algorithm}))
    token = RFC7520[compact]
    authentic = verifier.authenticate(token)
    assert not isinstance(authentic, Refused), authentic
    assert authentic[1] == RFC7520["payload_b64"]
    # The example's payload is prose, not JWT claims: the full verification says so.
    verdict = verifier.verify(token, NOW)
    assert isinstance(verdict, Refused) and verdict.reason == Reason.MALFORMED_TOKEN
    # One character of the signature changed: refused.
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    refused = verifier.authenticate(tampered)
    assert isinstance(refused, Refused)


def test_rfc7520_hmac_and_json_serialisations_are_refused() -> None:
    """4.4 (HS256): a symmetric key is never published, so it never verifies. The
    flattened and general JSON forms of 4.1: compact serialisation only."""
    with pytest.raises(UnsafeJwksError, match="private member"):
        build_verifier({"keys": [RFC7520["symmetric_3_5"]]}, json.dumps({"algorithm": "RS256"}))
    verifier = build_verifier(
        {"keys": [public(RFC7520["rsa_public_3_3"], kid=BILBO)]}, '{"algorithm": "RS256"}'
    )
    for form in ("flattened_4_1", "general_4_1"):
        verdict = verifier.authenticate(json.dumps(RFC7520[form]))
        assert isinstance(verdict, Refused) and verdict.reason == Reason.MALFORMED_TOKEN
    hs256 = verifier.authenticate(RFC7520["compact_4_4_hs256"])
    assert isinstance(hs256, Refused) and hs256.reason == Reason.ALGORITHM_NOT_ALLOWED


def test_rfc8037_ed25519_example() -> None:
    """A.4: the example has no kid header, so it goes through the signature check alone."""
    key = public(EXAMPLES["rfc8037"]["private_a1"], kid="rfc8037")
    header, payload, signature = EXAMPLES["rfc8037"]["compact_a4"].split(".")
    assert b64url_decode(payload).decode() == EXAMPLES["rfc8037"]["payload_a4"]
    check = load_verifying_key(key, "EdDSA").check
    assert check(b64url_decode(signature), f"{header}.{payload}".encode())
    assert not check(b64url_decode(signature), f"{header}.{payload}x".encode())
    verifier = build_verifier({"keys": [key]}, '{"algorithm": "EdDSA"}')
    missing = verifier.authenticate(EXAMPLES["rfc8037"]["compact_a4"])
    assert isinstance(missing, Refused) and missing.reason == Reason.MISSING_KID
