"""The token verifier: one object per published keyset, built when the keyset changes.

The server keeps one ``TokenVerifier`` beside each keyset's pre-encoded JWKS bytes and
swaps both together, so "a retired key verifies until it leaves the JWKS" and "a revoked
key stops verifying the moment the snapshot changes" hold by construction: the verifier's
memories (accepted tokens, parsed headers, merged policies) die with it, and there is no
other cache to invalidate.

Order of checks: size, shape, header, key, signature, and only then the claims. Claims
from a token whose signature has not been checked are never parsed, so an attacker's
payload costs us no JSON work and cannot influence a decision. The signature itself is
jwcrypto's (``keys.py``); the gate before it (``compact.py`` and ``_select_key``'s header
rules) and the claims policy after it (``_check_claims``) are the project's own, on purpose.
"""

import math
import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from jwks_operator.core.algorithms import ALGORITHMS
from jwks_operator.core.guard import check_public_jwks
from jwks_operator.verification.compact import (
    MAX_HEADER_CHARS,
    MAX_TOKEN_CHARS,
    MalformedTokenError,
    decode_object,
    decode_signature,
    split_token,
)
from jwks_operator.verification.identity import UnrepresentableClaimError, identity_headers
from jwks_operator.verification.keys import UnusableKeyError, VerifyingKey, load_verifying_key
from jwks_operator.verification.policy import NO_OVERRIDES, Policy, PolicyOverrides, parse_policy
from jwks_operator.verification.verdict import Accepted, Reason, Refused, Verdict

EMBEDDED_KEY_MEMBERS: Final = ("jku", "jwk", "x5u", "x5c")
"""Header members that point at or carry a key. Honouring them lets the token choose its own
verification key; a token from this keyset's signers never has them, so they are refused."""
ACCEPTED_TYPES: Final = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
"""RFC 7519 ``JWT`` and RFC 9068 access tokens. Other typed JWTs (logout, security event
tokens) are refused so that one kind of token cannot be replayed as another (RFC 8725 3.11)."""
_SHOWABLE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
CACHE_SIZE: Final = 4096
"""Accepted tokens remembered per verifier; when full it starts afresh (no LRU bookkeeping on
the hot path). Only tokens with a valid signature get in, so the bound is on memory alone."""

MEMO_SIZE: Final = 256
"""Distinct token headers and override sets remembered per verifier (a handful in practice)."""

_Window = tuple[float, float, float]
"""(earliest, expires, latest): valid while earliest <= now < expires and now <= latest."""
_Valid = tuple[Accepted, float, float, float]


class TokenVerifier:
    """Verifies tokens against one keyset's published keys and policy.

    Keys and policy never change after construction; the memories only save work, so the
    same (token, time, overrides) always gets the same answer. Used from the event loop.
    """

    __slots__ = ("_headers", "_keys", "_remembered", "_scopes", "policy", "unusable")

    def __init__(
        self, policy: Policy, keys: Mapping[str, VerifyingKey], unusable: Mapping[str, str]
    ) -> None:
        self.policy = policy
        self._keys = dict(keys)
        # Every token one key signs has the same header bytes, and a gateway sends the same
        # overrides every time: both are worked out once. Per overrides: the merged policy
        # and the accepted tokens under it.
        self._headers: dict[str, VerifyingKey] = {}
        self._scopes: dict[PolicyOverrides, tuple[Policy, dict[str, _Valid]]] = {}
        self._remembered = 0
        self.unusable: Mapping[str, str] = MappingProxyType(dict(unusable))
        """kid -> why that published key cannot verify this keyset's tokens."""

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def verify(
        self, token: str, now: datetime, overrides: PolicyOverrides = NO_OVERRIDES
    ) -> Verdict:
        """Check one compact JWS; never raises for anything the token contains.

        Gateways ask about the same token once per client request, so accepted tokens are
        remembered (bounded, per verifier: a snapshot change starts afresh, which keeps
        revocation immediate) together with the time window in which they stay valid; a
        repeat inside that window skips the signature and every parse. Refusals are never
        cached, so hostile tokens cannot fill the cache.
        """
        return self.verify_at(token, now.timestamp(), overrides)

    def verify_at(
        self, token: str, moment: float, overrides: PolicyOverrides = NO_OVERRIDES
    ) -> Verdict:
        """``verify`` with the time as POSIX seconds: the endpoint reads the clock per
        request, and building a datetime only to take its timestamp again is waste."""
        scope = self._scopes.get(overrides)
        if scope is None:
            if len(self._scopes) >= MEMO_SIZE:
                self._forget()
            scope = (self.policy.with_overrides(overrides), {})
            self._scopes[overrides] = scope
        policy, accepted = scope
        remembered = accepted.get(token)
        if remembered is not None:
            verdict, earliest, expires, latest = remembered
            if earliest <= moment < expires and moment <= latest:
                return verdict
        result = self._verify(token, moment, policy)
        if isinstance(result, Refused):
            return result
        if self._remembered >= CACHE_SIZE:
            self._forget()
            self._scopes[overrides] = scope
        accepted[token] = result
        self._remembered += 1
        return result[0]

    def _forget(self) -> None:
        for _, tokens in self._scopes.values():
            tokens.clear()
        self._scopes.clear()
        self._remembered = 0

    def authenticate(self, token: str) -> "Refused | tuple[VerifyingKey, str]":
        """The gate, the key and the signature, without the claims: (key, payload part) of
        a token signed by one of this keyset's keys, else why not. The first half of every
        ``verify``; public so that JWS test vectors (whose payloads are not claims) prove
        the path every token takes."""
        if len(token) > MAX_TOKEN_CHARS:
            return Refused(Reason.TOKEN_TOO_LARGE, f"token longer than {MAX_TOKEN_CHARS} bytes")
        try:
            header_part, payload_part, signature_part = split_token(token)
        except MalformedTokenError as error:
            return Refused(Reason.MALFORMED_TOKEN, str(error))
        key = self._headers.get(header_part)
        if key is None:
            if len(header_part) > MAX_HEADER_CHARS:
                return Refused(Reason.TOKEN_TOO_LARGE, "token header too large")
            try:
                header = decode_object(header_part, "header")
            except MalformedTokenError as error:
                return Refused(Reason.MALFORMED_TOKEN, str(error))
            key_or_refusal = self._select_key(header)
            if isinstance(key_or_refusal, Refused):
                return key_or_refusal
            key = key_or_refusal
            if len(self._headers) >= MEMO_SIZE:
                self._headers.clear()
            self._headers[header_part] = key

        try:
            signature = decode_signature(signature_part)
        except MalformedTokenError as error:
            return Refused(Reason.MALFORMED_TOKEN, str(error))
        signing_input = token[: len(header_part) + 1 + len(payload_part)].encode("ascii")
        if not key.check(signature, signing_input):
            return Refused(Reason.BAD_SIGNATURE, "signature verification failed")
        return key, payload_part

    def _verify(self, token: str, moment: float, policy: Policy) -> "Refused | _Valid":
        authentic = self.authenticate(token)
        if isinstance(authentic, Refused):
            return authentic
        key, payload_part = authentic
        try:
            claims = decode_object(payload_part, "claims")
        except MalformedTokenError as error:
            return Refused(Reason.MALFORMED_TOKEN, str(error))
        window = _check_claims(claims, policy, moment)
        if isinstance(window, Refused):
            return window
        kid = key.kid
        try:
            headers = identity_headers(claims, kid, policy.claim_headers)
        except UnrepresentableClaimError as error:
            return Refused(Reason.UNREPRESENTABLE_CLAIM, str(error))
        return Accepted(MappingProxyType(claims), kid, headers), window[0], window[1], window[2]

    def _select_key(self, header: dict[str, Any]) -> VerifyingKey | Refused:
        # Each published key verifies with its own algorithm only (the ``alg`` the operator
        # published with it), so a keyset migrating from RS256 to ES256 keeps verifying the
        # RS256 tokens of its retired key; the token's ``alg`` selects nothing by itself.
        algorithm = self.policy.algorithm
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            return Refused(Reason.ALGORITHM_NOT_ALLOWED, _algorithm_message(alg, algorithm))
        for member in EMBEDDED_KEY_MEMBERS:
            if member in header:
                return Refused(
                    Reason.UNSUPPORTED_HEADER,
                    f"header member {member} is not accepted: keys come only from the keyset",
                )
        if "crit" in header or "b64" in header:
            return Refused(
                Reason.UNSUPPORTED_HEADER, "critical header extensions (crit, b64) not supported"
            )
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
            return Refused(Reason.WRONG_TYPE, f"token type {_show(typ)} is not a JWT")
        cty = header.get("cty")
        if cty is not None:
            return Refused(
                Reason.WRONG_TYPE, f"content type {_show(cty)}: nested tokens are not accepted"
            )
        kid = header.get("kid")
        if kid is None:
            return Refused(Reason.MISSING_KID, "token header has no kid")
        if not isinstance(kid, str):
            return Refused(Reason.MALFORMED_TOKEN, "kid must be a string")
        key = self._keys.get(kid)
        if key is not None:
            if alg != key.algorithm:
                return Refused(Reason.ALGORITHM_NOT_ALLOWED, _algorithm_message(alg, key.algorithm))
            return key
        if kid in self.unusable:
            return Refused(Reason.KEY_NOT_USABLE, f"key {_show(kid)}: {self.unusable[kid]}")
        return Refused(Reason.UNKNOWN_KID, f"kid {_show(kid)} is not in the key set")


def build_verifier(
    jwks_document: Mapping[str, Any], verification_json: str | None
) -> TokenVerifier:
    """Parse a keyset's JWKS and policy once; raise ValueError if the policy is unusable.

    A key that cannot serve its own published algorithm (a weak RSA modulus, a
    point off its curve) does not fail the build: it is left out and named in
    ``unusable``, so one odd key never takes a whole keyset's verification down.
    """
    check_public_jwks(jwks_document)
    published: list[Mapping[str, Any]] = list(jwks_document["keys"])
    first_alg = published[0].get("alg") if published else None
    policy = parse_policy(verification_json, first_alg if isinstance(first_alg, str) else None)
    keys: dict[str, VerifyingKey] = {}
    unusable: dict[str, str] = {}
    for jwk in published:
        try:
            declared = jwk.get("alg")
            key = load_verifying_key(
                jwk, declared if isinstance(declared, str) else policy.algorithm
            )
        except UnusableKeyError as error:
            unusable[jwk["kid"]] = str(error)
        else:
            keys[key.kid] = key
    return TokenVerifier(policy, keys, unusable)


def _check_claims(claims: dict[str, Any], policy: Policy, now: float) -> Refused | _Window:
    leeway = policy.leeway_seconds
    exp = claims.get("exp")
    if exp is None:
        return Refused(Reason.MISSING_CLAIM, "token has no exp")
    if not _numeric_date(exp):
        return Refused(Reason.INVALID_CLAIM, "exp is not a number")
    if now >= exp + leeway:
        return Refused(Reason.EXPIRED, "token expired")
    earliest, expires, latest = -math.inf, exp + leeway, math.inf
    nbf = claims.get("nbf")
    if nbf is not None:
        if not _numeric_date(nbf):
            return Refused(Reason.INVALID_CLAIM, "nbf is not a number")
        if now + leeway < nbf:
            return Refused(Reason.NOT_YET_VALID, "token not valid yet (nbf)")
        earliest = nbf - leeway
    iat = claims.get("iat")
    if iat is not None:
        if not _numeric_date(iat):
            return Refused(Reason.INVALID_CLAIM, "iat is not a number")
        if iat > now + leeway:
            return Refused(Reason.NOT_YET_VALID, "token issued in the future (iat)")
        earliest = max(earliest, iat - leeway)
    if policy.max_age_seconds is not None:
        if iat is None:
            return Refused(Reason.MISSING_CLAIM, "token has no iat, needed for its maximum age")
        if now - iat > policy.max_age_seconds + leeway:
            return Refused(Reason.TOKEN_TOO_OLD, "token older than the maximum age")
        latest = iat + policy.max_age_seconds + leeway
    if policy.issuer is not None:
        iss = claims.get("iss")
        if iss != policy.issuer:
            return Refused(
                Reason.WRONG_ISSUER,
                "token has no iss" if iss is None else "token issuer is not accepted",
            )
    if policy.audiences:
        refusal = _check_audience(claims.get("aud"), policy.audiences)
        if refusal is not None:
            return refusal
    for claim in policy.required_claims:
        if claims.get(claim) is None:
            return Refused(Reason.MISSING_CLAIM, f"token has no {claim} claim")
    return earliest, expires, latest


def _check_audience(aud: object, expected: tuple[str, ...]) -> Refused | None:
    if aud is None:
        return Refused(Reason.WRONG_AUDIENCE, "token has no aud")
    if isinstance(aud, str):
        audiences: list[Any] = [aud]
    elif isinstance(aud, list) and all(isinstance(item, str) for item in aud):
        audiences = aud
    else:
        return Refused(Reason.INVALID_CLAIM, "aud is neither a string nor a list of strings")
    if any(item in expected for item in audiences):
        return None
    return Refused(Reason.WRONG_AUDIENCE, "token audience is not accepted")


def _numeric_date(value: object) -> bool:
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))  # type: ignore[arg-type]


def _algorithm_message(alg: object, expected: str) -> str:
    if not isinstance(alg, str):
        return "token header has no alg"
    if alg.lower() == "none":
        return f"unsigned tokens (alg none) are not accepted; this key set uses {expected}"
    if alg.upper().startswith("HS"):
        return f"HMAC tokens ({_show(alg)}) are not accepted; this key set uses {expected}"
    return f"algorithm {_show(alg)} is not accepted; this key set uses {expected}"


def _show(value: object) -> str:
    """A token-supplied value, echoed only when it is short and plainly spelled."""
    if isinstance(value, str) and _SHOWABLE_RE.fullmatch(value):
        return value
    return "(unprintable)" if isinstance(value, str) else f"({type(value).__name__})"
