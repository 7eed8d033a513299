"""The one gate every published JWK and JWKS passes through.

A private key that reaches a ConfigMap or an HTTP response is the worst failure this
project can have, so the rule is enforced at the point of emission, by both the writer
(operator, standalone) and the reader (server), rather than trusted to whoever built the
document. The checks are structural and cheap; they do not validate key parameters.
"""

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from jwks_operator.core.contract import PRIVATE_MEMBERS


class UnsafeReason(StrEnum):
    """Why the guard refused a document: a closed set, so readers (the server's refusal
    metric) branch on a value instead of on the wording of a message."""

    PRIVATE_MEMBER = "private_member"
    SYMMETRIC_KEY = "symmetric_key"
    DUPLICATE_KID = "duplicate_kid"
    INVALID_JSON = "invalid_json"
    INVALID_JWKS = "invalid_jwks"


class UnsafeJwksError(ValueError):
    """A document that must not be published: private material, symmetric key, bad shape."""

    def __init__(self, message: str, reason: UnsafeReason = UnsafeReason.INVALID_JWKS) -> None:
        super().__init__(message)
        self.reason = reason


def check_public_jwk(jwk: object, where: str = "key") -> None:
    """Raise UnsafeJwksError unless ``jwk`` is a public-only, asymmetric JWK with a kid."""
    if not isinstance(jwk, Mapping):
        raise UnsafeJwksError(f"{where}: a JWK must be a JSON object")
    leaked = sorted(PRIVATE_MEMBERS.intersection(jwk))
    if leaked:
        # Name the members, never their values: the message may be logged.
        raise UnsafeJwksError(
            f"{where}: holds private member(s) {', '.join(leaked)}", UnsafeReason.PRIVATE_MEMBER
        )
    kty = jwk.get("kty")
    if not isinstance(kty, str) or not kty:
        raise UnsafeJwksError(f"{where}: has no kty")
    if kty == "oct":
        raise UnsafeJwksError(
            f"{where}: is a symmetric (oct) key, which is secret by nature",
            UnsafeReason.SYMMETRIC_KEY,
        )
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise UnsafeJwksError(f"{where}: has no kid")
    for name, value in jwk.items():
        _refuse_nested_private(value, f"{where}.{name}")


def _refuse_nested_private(value: object, where: str, depth: int = 0) -> None:
    """Private members smuggled into an extension member (``{"ext": {"d": ...}}``) count too."""
    if depth > 16:
        raise UnsafeJwksError(f"{where}: nested too deeply")
    if isinstance(value, Mapping):
        leaked = sorted(PRIVATE_MEMBERS.intersection(value))
        if leaked:
            raise UnsafeJwksError(
                f"{where}: holds private member(s) {', '.join(leaked)}",
                UnsafeReason.PRIVATE_MEMBER,
            )
        for name, item in value.items():
            _refuse_nested_private(item, f"{where}.{name}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_nested_private(item, f"{where}[{index}]", depth + 1)


def check_public_jwks(jwks: object) -> None:
    """Raise UnsafeJwksError unless ``jwks`` is a JWKS of public keys with unique kids."""
    if not isinstance(jwks, Mapping):
        raise UnsafeJwksError("JWKS must be a JSON object")
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise UnsafeJwksError('JWKS must have a "keys" array')
    for name, value in jwks.items():
        if name != "keys":
            _refuse_nested_private(value, name)
    seen: set[str] = set()
    for index, jwk in enumerate(keys):
        check_public_jwk(jwk, where=f"keys[{index}]")
        kid = jwk["kid"]
        if kid in seen:
            shown = kid if len(kid) <= 64 else kid[:61] + "..."
            raise UnsafeJwksError(
                f"keys[{index}]: duplicate kid {shown!r}", UnsafeReason.DUPLICATE_KID
            )
        seen.add(kid)


PRIVATE_PEM_MARKER = "PRIVATE KEY-----"
"""Found in every PEM private key (PKCS#1, PKCS#8, EC, encrypted): never in a public document."""


def check_no_private_pem(raw: str | bytes) -> None:
    """Refuse text that carries a PEM private key anywhere (e.g. a discovery document)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if PRIVATE_PEM_MARKER in text:
        raise UnsafeJwksError("document holds a PEM private key", UnsafeReason.PRIVATE_MEMBER)


def parse_public_jwks(raw: str | bytes) -> dict[str, Any]:
    """Parse JSON text as a JWKS and guard it; for readers of untrusted stored documents."""
    check_no_private_pem(raw)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise UnsafeJwksError(
            f"JWKS is not valid JSON: {error.__class__.__name__}", UnsafeReason.INVALID_JSON
        ) from None
    check_public_jwks(document)
    assert isinstance(document, dict)
    return document


def encode_public_jwks(jwks: Mapping[str, Any]) -> str:
    """Guard, then serialise deterministically: the only way the project turns a JWKS into text."""
    check_public_jwks(jwks)
    return json.dumps(jwks, separators=(",", ":"), sort_keys=False)
