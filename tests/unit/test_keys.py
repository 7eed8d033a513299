import asyncio
import json

import pytest
from cryptography.hazmat.primitives import serialization
from jwcrypto import jwk

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.contract import PRIVATE_MEMBERS
from jwks_operator.core.guard import UnsafeJwksError, check_public_jwk
from jwks_operator.core.keys import (
    KeyLoadError,
    generate_key,
    generate_key_async,
    load_material,
    private_key_pem,
    thumbprint,
)

CASES = [(alg, 2048 if info.kty == "RSA" else None) for alg, info in ALGORITHMS.items()]
CASES += [("RS256", 3072), ("PS512", 4096)]


def test_rfc7638_example_thumbprint() -> None:
    # RFC 7638 section 3.1.
    key = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
            "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65"
            "YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyr"
            "dkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(("algorithm", "key_size"), CASES)
def test_generated_key_exports(algorithm: str, key_size: int | None) -> None:
    material = generate_key(algorithm, key_size)
    public = dict(material.public_jwk)
    info = ALGORITHMS[algorithm]
    assert public["kty"] == info.kty
    assert public["use"] == "sig"
    assert public["alg"] == algorithm
    assert not PRIVATE_MEMBERS & set(public)
    check_public_jwk(public)
    # kid is the RFC 7638 thumbprint, as computed by an independent implementation.
    assert material.kid == jwk.JWK(**public).thumbprint()
    if info.curve:
        assert public["crv"] == info.curve
    if key_size:
        assert jwk.JWK(**public).get_op_key("verify").key_size == key_size
    # The private JWK re-loads to the same material, and the PEM is PKCS#8 of the same key.
    assert load_material(material.private_jwk, algorithm, key_size) == material
    pem = private_key_pem(material)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    from_pem = jwk.JWK.from_pem(pem.encode())
    assert from_pem.thumbprint() == material.kid
    assert loaded is not None


def test_repr_never_shows_private_material() -> None:
    material = generate_key("ES256", None)
    text = repr(material) + str(material)
    assert material.private_jwk["d"] not in text
    assert "private_jwk" not in text


@pytest.mark.parametrize(
    "damage",
    [
        lambda k: k.pop("d"),
        lambda k: k.update(d="!!!"),
        lambda k: k.update(x=generate_key("ES256", None).public_jwk["x"]),
        lambda k: k.update(kty="oct"),
        lambda k: k.update(crv="P-999"),
    ],
)
def test_damaged_private_jwk_is_refused_without_echoing_it(damage: object) -> None:
    material = generate_key("ES256", None)
    broken = dict(material.private_jwk)
    damage(broken)  # type: ignore[operator]
    with pytest.raises(KeyLoadError) as caught:
        load_material(broken, "ES256", None)
    assert material.private_jwk["d"] not in str(caught.value)


def test_rsa_with_inconsistent_primes_is_refused() -> None:
    one, two = generate_key("RS256", 2048), generate_key("RS256", 2048)
    broken = dict(one.private_jwk, p=two.private_jwk["p"])
    with pytest.raises(KeyLoadError):
        load_material(broken, "RS256", 2048)


def test_key_type_must_fit_the_algorithm() -> None:
    material = generate_key("ES256", None)
    with pytest.raises(KeyLoadError, match="does not fit RS256"):
        load_material(material.private_jwk, "RS256", 2048)


async def test_async_generation_keeps_the_loop_responsive() -> None:
    """While RSA keys are generated, the loop still runs other tasks (no timing asserted:
    the figure is in bench/keygen_bench.py). A loop blocked by generation would run the
    ticker zero times in between."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    materials = await asyncio.gather(*(generate_key_async("RS256", 3072) for _ in range(2)))
    done = True
    await task
    assert len({m.kid for m in materials}) == 2
    assert ticks > 10


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"keys": [{"kty": "RSA", "kid": "a", "n": "x", "e": "AQAB", "d": "s"}]}, "private member"),
        ({"keys": [{"kty": "oct", "kid": "a", "k": "s"}]}, "private member"),
        ({"keys": [{"kty": "oct", "kid": "a"}]}, "symmetric"),
        (
            {"keys": [{"kty": "EC", "kid": "a", "ext": {"d": "s"}}]},
            r"keys\[0\]\.ext: holds private member\(s\) d",
        ),
        ({"keys": [{"kty": "EC", "kid": "a", "x5c": [{"p": "s"}]}]}, r"x5c\[0\]: holds private"),
        ({"keys": [{"kty": "EC", "kid": "a"}, {"kty": "EC", "kid": "a"}]}, "duplicate kid"),
        ({"keys": [{"kty": "EC"}]}, "no kid"),
        ({"keys": [{"kid": "a"}]}, "no kty"),
        ({"keys": {}}, '"keys" array'),
        ([], "JSON object"),
        ({"keys": ["x"]}, "JSON object"),
    ],
)
def test_guard_refuses_unsafe_documents(document: object, message: str) -> None:
    from jwks_operator.core.guard import check_public_jwks, encode_public_jwks

    with pytest.raises(UnsafeJwksError, match=message):
        check_public_jwks(document)
    if isinstance(document, dict):
        with pytest.raises(UnsafeJwksError):
            encode_public_jwks(document)


@pytest.mark.parametrize("member", sorted(PRIVATE_MEMBERS))
def test_guard_names_each_private_member_but_never_its_value(member: str) -> None:
    from jwks_operator.core.guard import parse_public_jwks

    raw = json.dumps(
        {"keys": [{"kty": "RSA", "kid": "a", "n": "x", "e": "y", member: "SECRETVALUE"}]}
    )
    with pytest.raises(UnsafeJwksError) as caught:
        parse_public_jwks(raw)
    assert member in str(caught.value)
    assert "SECRETVALUE" not in str(caught.value)


def test_guard_refuses_invalid_json() -> None:
    from jwks_operator.core.guard import parse_public_jwks

    with pytest.raises(UnsafeJwksError, match="not valid JSON"):
        parse_public_jwks(b"{nope")


def test_guard_refuses_a_pem_private_key_anywhere_in_the_text() -> None:
    from jwks_operator.core.guard import check_no_private_pem, parse_public_jwks
    from jwks_operator.core.keys import private_key_pem

    pem = private_key_pem(generate_key("ES256", None))
    with pytest.raises(UnsafeJwksError, match="PEM private key"):
        parse_public_jwks(json.dumps({"keys": [], "note": pem}))
    with pytest.raises(UnsafeJwksError, match="PEM private key"):
        check_no_private_pem(json.dumps({"issuer": "https://x", "extra": pem}).encode())
    check_no_private_pem('{"issuer": "https://x"}')


def test_duplicate_kid_message_is_bounded() -> None:
    from jwks_operator.core.guard import check_public_jwks

    kid = "k" * 5000
    with pytest.raises(UnsafeJwksError) as caught:
        check_public_jwks({"keys": [{"kty": "EC", "kid": kid}, {"kty": "EC", "kid": kid}]})
    assert len(str(caught.value)) < 200


def test_a_key_checked_once_is_not_checked_again_when_its_loaded_object_was_evicted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Thousands of RSA keysets hold more keys than the loaded-object memo: a key whose
    exact members passed the RSA check in this process skips it (~50 ms) on a reload; a
    changed key (one member different) is checked again, and refused when inconsistent."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from jwks_operator.core import keys

    checks: list[bool] = []
    original = rsa.RSAPrivateNumbers.private_key

    def spy(self: rsa.RSAPrivateNumbers, *args: object, **kwargs: bool) -> object:
        checks.append(not kwargs.get("unsafe_skip_rsa_key_validation", False))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rsa.RSAPrivateNumbers, "private_key", spy)
    stored = dict(generate_key("RS256", 2048).private_jwk)
    keys._LOADED.clear()
    keys._MATERIALS.clear()
    keys._CHECKED.clear()  # as in a new process: the first load checks in full
    load_material(stored, "RS256", 2048)
    keys._LOADED.clear()  # evicted by thousands of other keys
    keys._MATERIALS.clear()
    again = load_material(stored, "RS256", 2048)
    assert checks == [True, False]
    assert again.kid == thumbprint(again.public_jwk)
    other = generate_key("RS256", 2048)
    with pytest.raises(KeyLoadError):
        load_material(dict(stored, p=other.private_jwk["p"]), "RS256", 2048)
    assert checks[-1] is True
