"""The verifiers of the conformance suite, what each is expected to do, and the docs table.

``VERIFIERS`` is the one source of truth for the table in docs/verifying-tokens.md: the
suite measures every row (which algorithms verify, whether a kid the cache has never seen
makes the verifier refetch, when a key removed from the JWKS stops verifying) and fails
when a measurement disagrees with the row, and tests/clients/test_docs.py checks that the
docs hold ``support_table()`` verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from jwks_operator.core.algorithms import ALGORITHMS

ALL: Final = tuple(sorted(ALGORITHMS))
NO_EDDSA: Final = tuple(alg for alg in ALL if alg != "EdDSA")

Removal = Literal["cache-ttl", "next-refetch", "at-once"]


@dataclass(frozen=True)
class Verifier:
    name: str
    language: str  # tests/clients/<language>, or "gateway"
    library: str  # argv[1] of the client program
    label: str  # the docs' name for it
    algorithms: tuple[str, ...]
    refetch_on_unknown_kid: bool | None
    """None: not applicable, the gateway asks the server, which has every published key."""
    removal: Removal
    """When a key that left the JWKS stops verifying: once the cache's lifetime is over,
    only at the next refetch (which an unknown kid or a failed signature triggers), or at
    once (the gateway asks the server, which never holds a stale key)."""
    setting: str  # the cache setting users change, and its default
    discovery: bool = False  # starts from the issuer's openid-configuration


VERIFIERS: Final = (
    Verifier(
        "go-jwx",
        "go",
        "jwx",
        "Go `lestrrat-go/jwx/v3` `jwk.Cache`",
        ALL,
        False,
        "cache-ttl",
        "`WithMinInterval`/`WithMaxInterval` (default 15 min .. 30 days, within them the server's `max-age`)",
    ),
    Verifier(
        "go-keyfunc",
        "go",
        "keyfunc",
        "Go `golang-jwt/jwt/v5` + `MicahParks/keyfunc/v3`",
        ALL,
        True,
        "cache-ttl",
        "`Override.RefreshInterval` (default 1 h), `RefreshUnknownKID` (default once per 5 min)",
    ),
    Verifier(
        "go-oidc",
        "go",
        "oidc",
        "Go `coreos/go-oidc/v3` (discovery)",
        ALL,
        True,
        "next-refetch",
        "none: keys are kept until a kid miss or a failed signature refetches the set",
        discovery=True,
    ),
    Verifier(
        "java-nimbus",
        "java",
        "nimbus",
        "Java Nimbus JOSE+JWT `JWKSourceBuilder` + `DefaultJWTProcessor`",
        NO_EDDSA,
        True,
        "cache-ttl",
        "`cache(ttl, refreshTimeout)` (default 5 min), `rateLimited` (default one refetch per 30 s)",
    ),
    Verifier(
        "js-jose",
        "js",
        "jose",
        "node `jose` `createRemoteJWKSet`",
        ALL,
        True,
        "cache-ttl",
        "`cacheMaxAge` (default 10 min), `cooldownDuration` (default 30 s)",
    ),
    Verifier(
        "js-jwks-rsa",
        "js",
        "jwks-rsa",
        "node `jwks-rsa` + `jsonwebtoken`",
        NO_EDDSA,
        True,
        "cache-ttl",
        "`cacheMaxAge` (default 10 min), `jwksRequestsPerMinute` (default 10)",
    ),
    Verifier(
        "py-pyjwt",
        "python",
        "pyjwt",
        "Python PyJWT `PyJWKClient`",
        ALL,
        True,
        "cache-ttl",
        "`lifespan` (default 300 s), `cooldown_duration` (default 30 s)",
    ),
    Verifier(
        "py-authlib",
        "python",
        "authlib",
        "Python `authlib.jose` (JWKS fetched by hand)",
        ALL,
        False,
        "cache-ttl",
        "your own fetch: authlib has no remote key set",
    ),
    Verifier(
        "gw-oauth2-proxy",
        "gateway",
        "oauth2-proxy",
        "oauth2-proxy v7.15.6 `skip_jwt_bearer_tokens` (discovery, go-oidc)",
        ALL,
        True,
        "next-refetch",
        "none: as go-oidc",
        discovery=True,
    ),
    Verifier(
        "gw-traefik",
        "gateway",
        "traefik",
        "Traefik v3.5.0 ForwardAuth to `/verify`",
        ALL,
        None,
        "at-once",
        "none: the JWKS server checks every token",
    ),
)


def support_table() -> str:
    """The markdown table of docs/verifying-tokens.md, generated from ``VERIFIERS``."""
    removal = {
        "cache-ttl": "until its cache lifetime is over",
        "next-refetch": "until the next refetch",
        "at-once": "never (asks the server)",
    }
    refetch = {True: "yes", False: "no", None: "n/a"}
    lines = [
        "| verifier | algorithms | unknown kid refetches | removed key still accepted | cache setting |",
        "|---|---|---|---|---|",
    ]
    for verifier in VERIFIERS:
        algorithms = (
            "all"
            if verifier.algorithms == ALL
            else ", ".join(f"no {alg}" for alg in ALL if alg not in verifier.algorithms).replace(
                "no ", "all but ", 1
            )
        )
        lines.append(
            f"| {verifier.label} | {algorithms} | {refetch[verifier.refetch_on_unknown_kid]} "
            f"| {removal[verifier.removal]} | {verifier.setting} |"
        )
    return "\n".join(lines) + "\n"
