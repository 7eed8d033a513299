"""Verifies JWTs with one real Python library, driven over stdin/stdout.

One JSON request a line on stdin (``jwks``, ``issuer``, ``audience``, ``alg``, ``token``),
one JSON answer a line on stdout (``{"ok": true, "kid": ...}`` or ``{"ok": false, "error":
...}``). ``argv[1]`` picks the library (``pyjwt`` or ``authlib``), ``argv[2]`` is the JWKS
cache lifetime in seconds. One cache per JWKS URL lives as long as the process, as in a
service.
"""

import json
import sys
import time
from collections.abc import Callable
from typing import Any

# snippet:start pyjwt
import jwt  # pip install "pyjwt[crypto]"


def pyjwt_verifier(jwks_url: str, lifespan: float) -> Callable[..., dict[str, Any]]:
    # One client per process: it caches the set for `lifespan` seconds and refetches once
    # when a token names a kid it does not know.
    jwks = jwt.PyJWKClient(jwks_url, lifespan=lifespan, timeout=5)

    def verify(token: str, algorithm: str, issuer: str, audience: str) -> dict[str, Any]:
        key = jwks.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[algorithm],  # the keyset's spec.algorithm: never the token's
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "iss", "aud"]},
            leeway=1,
        )
        return claims

    return verify


# snippet:end pyjwt

# snippet:start authlib
import urllib.request

from authlib.jose import JsonWebKey, JsonWebToken


def authlib_verifier(jwks_url: str, lifespan: float) -> Callable[..., dict[str, Any]]:
    # authlib has no remote key set: fetch the JWKS yourself, keep it `lifespan` seconds.
    cached: dict[str, Any] = {"at": float("-inf"), "keys": None}

    def keys() -> Any:
        if time.monotonic() - cached["at"] > lifespan:
            with urllib.request.urlopen(jwks_url, timeout=5) as response:
                cached["keys"] = JsonWebKey.import_key_set(json.load(response))
            cached["at"] = time.monotonic()
        return cached["keys"]

    def verify(token: str, algorithm: str, issuer: str, audience: str) -> dict[str, Any]:
        claims = JsonWebToken([algorithm]).decode(  # only the keyset's algorithm
            token,
            keys(),
            claims_options={
                "iss": {"essential": True, "value": issuer},
                "aud": {"essential": True, "value": audience},
                "exp": {"essential": True},
            },
        )
        claims.validate(leeway=1)  # decode checks the signature only; this checks the claims
        return dict(claims)

    return verify


# snippet:end authlib

LIBRARIES = {"pyjwt": pyjwt_verifier, "authlib": authlib_verifier}


def main() -> int:
    make = LIBRARIES[sys.argv[1]]
    lifespan = float(sys.argv[2])
    verifiers: dict[str, Callable[..., dict[str, Any]]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        url = request["jwks"]
        if url not in verifiers:
            verifiers[url] = make(url, lifespan)
        try:
            verifiers[url](request["token"], request["alg"], request["issuer"], request["audience"])
            header = jwt.get_unverified_header(request["token"])
            answer: dict[str, Any] = {"ok": True, "kid": header.get("kid")}
        except Exception as error:  # every refusal, whatever the library raises
            answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
