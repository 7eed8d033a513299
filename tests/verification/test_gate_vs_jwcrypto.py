"""Where the project's strict gate and jwcrypto's own JWS parsing disagree, listed.

Signatures are verified by jwcrypto; in front of it the project keeps a gate of its own
(``verification/compact.py`` and the header rules of ``verifier.py``): what a compact token
may look like before any library parses it. Each token below is run through both the
project's ``TokenVerifier.authenticate`` and jwcrypto's ``JWS.deserialize`` with the same
key and the key's algorithm; the table is the complete list of disagreements, so a change on
either side (a jwcrypto upgrade, a loosened gate) fails here until someone decides it.
"""

import base64
import json
from collections.abc import Callable
from typing import Any

from jwcrypto import jwk, jws

from jwks_operator.core.keys import KeyMaterial
from jwks_operator.verification import build_verifier
from jwks_operator.verification.verdict import Refused
from tests.verification.helpers import b64, claims, jwks, material, policy_json, sign_bytes, token

KEY = material("ES256")


def signed(header: bytes | dict[str, Any], payload: bytes | None = None) -> str:
    """A token really signed by KEY, with exactly these header and payload bytes."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    payload_bytes = json.dumps(claims()).encode() if payload is None else payload
    signing_input = f"{b64(header_bytes)}.{b64(payload_bytes)}"
    return f"{signing_input}.{b64(sign_bytes(KEY, signing_input.encode()))}"


def header(**changes: Any) -> dict[str, Any]:
    return {"alg": "ES256", "kid": KEY.kid, "typ": "JWT", **changes}


def _raw(text: str) -> bytes:
    return text.replace("KID", KEY.kid).encode("utf-8", "surrogateescape")


PLAIN = token(KEY)
_H, _P, _S = PLAIN.split(".")
_SIG = base64.urlsafe_b64decode(_S + "==")
assert len(_S) % 4 == 2 and _S[-1] in "AQgw"  # 4 unused low bits, all zero
_LAST = chr(ord(_S[-1]) + 1)  # the same bytes, with an unused bit set


def _standard_alphabet() -> str:
    """A valid token spelled with '+' and '/': re-signed until its base64url has a '-' or
    '_' to respell (ECDSA signatures are random, so one token in ~15 has neither)."""
    while True:
        compact = signed(header())
        if "-" in compact or "_" in compact:
            return compact.replace("-", "+").replace("_", "/")


CORPUS: dict[str, Callable[[], str]] = {
    "valid": lambda: PLAIN,
    "duplicate alg": lambda: signed(_raw('{"alg":"ES256","alg":"ES256","kid":"KID"}')),
    "duplicate kid": lambda: signed(_raw('{"alg":"ES256","kid":"other","kid":"KID"}')),
    "jku": lambda: signed(header(jku="https://attacker.example/jwks")),
    "x5u": lambda: signed(header(x5u="https://attacker.example/cert")),
    "jwk": lambda: signed(header(jwk=dict(KEY.public_jwk))),
    "x5c": lambda: signed(header(x5c=["MIIB"])),
    "crit, unknown": lambda: signed(header(crit=["exp"], exp=1)),
    "crit b64": lambda: signed(header(crit=["b64"], b64=True)),
    "typ secevent+jwt": lambda: signed(header(typ="secevent+jwt")),
    "cty JWT (nested)": lambda: signed(header(cty="JWT")),
    "no kid": lambda: signed({"alg": "ES256"}),
    "NaN in header": lambda: signed(_raw('{"alg":"ES256","kid":"KID","x":NaN}')),
    "header nested 10 deep": lambda: signed(header(x=[[[[[[[[[[1]]]]]]]]]])),
    "header not UTF-8": lambda: signed(b'{"alg":"ES256","x":"\xff"}'),
    "empty payload": lambda: signed(header(), b""),
    "larger than 8 KiB": lambda: signed(header(), json.dumps({"pad": "x" * 9000}).encode()),
    "whitespace around header JSON": lambda: signed(_raw(' {"alg":"ES256","kid":"KID"} ')),
    "base64 padding": lambda: PLAIN + "==",
    "signature with non-zero unused bits": lambda: PLAIN[:-1] + _LAST,
    "standard base64 alphabet": lambda: _standard_alphabet(),
    "space inside": lambda: PLAIN[:10] + " " + PLAIN[10:],
    "JSON serialisation": lambda: json.dumps({"protected": _H, "payload": _P, "signature": _S}),
    "ECDSA halves zero-padded": lambda: (
        f"{_H}.{_P}.{b64(bytes(1) + _SIG[:32] + bytes(1) + _SIG[32:])}"
    ),
    "alg none": lambda: f"{b64(json.dumps({'alg': 'none', 'kid': KEY.kid}).encode())}.{_P}.",
    "HS256 with the public key": lambda: f"{b64(json.dumps({'alg': 'HS256'}).encode())}.{_P}.{_S}",
    "another algorithm than the key's": lambda: signed({"alg": "ES384", "kid": KEY.kid}),
    "JWE": lambda: "a.b.c.d.e",
}

DISAGREEMENTS = {
    # jwcrypto accepts, the gate refuses (our reason):
    "duplicate alg": "malformed_token",  # two parsers could read two different headers
    "duplicate kid": "malformed_token",
    "jku": "unsupported_header",  # keys come only from the keyset
    "x5u": "unsupported_header",
    "jwk": "unsupported_header",
    "x5c": "unsupported_header",
    "crit b64": "unsupported_header",  # RFC 7797 unencoded payloads: never ours
    "typ secevent+jwt": "wrong_type",  # one kind of token is not replayed as another
    "cty JWT (nested)": "wrong_type",
    "no kid": "missing_kid",  # the kid selects the key; no trial of every key
    "NaN in header": "malformed_token",  # not JSON
    "header nested 10 deep": "malformed_token",
    "empty payload": "malformed_token",  # no claims: not a JWT
    "larger than 8 KiB": "token_too_large",
    "base64 padding": "malformed_token",  # one spelling per token
    "signature with non-zero unused bits": "malformed_token",
    "standard base64 alphabet": "malformed_token",
    "JSON serialisation": "malformed_token",  # compact only
    "ECDSA halves zero-padded": "bad_signature",  # R||S has exactly the curve's length
}
"""Nothing is accepted by the gate and refused by jwcrypto: the reverse list is empty."""


def ours(compact: str, key: KeyMaterial = KEY) -> str:
    verdict = build_verifier(jwks(key), policy_json(key.algorithm)).authenticate(compact)
    return verdict.reason.value if isinstance(verdict, Refused) else "accepted"


def jwcrypto_accepts(compact: str, key: KeyMaterial = KEY) -> bool:
    try:
        jws.JWS().deserialize(compact, key=jwk.JWK(**dict(key.public_jwk)), alg=key.algorithm)
    except Exception:  # any refusal is a refusal
        return False
    return True


def test_every_disagreement_between_the_gate_and_jwcrypto_is_listed() -> None:
    found: dict[str, str] = {}
    reverse: list[str] = []
    for name, make in CORPUS.items():
        compact = make()
        mine, theirs = ours(compact), jwcrypto_accepts(compact)
        if theirs and mine != "accepted":
            found[name] = mine
        if mine == "accepted" and not theirs:
            reverse.append(name)
    assert found == DISAGREEMENTS
    assert reverse == []


def test_where_both_refuse_and_where_both_accept() -> None:
    agreed = {name for name in CORPUS if name not in DISAGREEMENTS}
    for name in agreed:
        compact = CORPUS[name]()
        accepted = ours(compact) == "accepted"
        assert accepted == jwcrypto_accepts(compact), name
        assert accepted == (name in {"valid", "whitespace around header JSON"}), name
