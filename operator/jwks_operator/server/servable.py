"""What may be served: the guard a ConfigMap's documents pass before they reach a snapshot.

Every JWKS passes ``core.guard.parse_public_jwks``, and what is served is re-encoded from a
projection of the parsed document (``keys`` only, and in each key only the registered
public parameters, as strings), so neither a JSON trick (a duplicate ``keys`` member that
another parser would read differently) nor key material nested where the guard does not
look can get past it. A discovery document must be a JSON object with no key in it.

A refusal is a ``RefusedDocument`` whose ``reason`` is a ``Refusal`` value (the label of
``jwks_configmaps_refused_total``); messages name members, never values, so they can be
logged. Nothing here knows about HTTP or the snapshot.
"""

import json
import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from jwks_operator.core.contract import NEXT_CHANGE_ANNOTATION, PRIVATE_MEMBERS
from jwks_operator.core.guard import (
    PRIVATE_PEM_MARKER,
    UnsafeJwksError,
    UnsafeReason,
    encode_public_jwks,
    parse_public_jwks,
)
from jwks_operator.core.timefmt import parse_time

logger = logging.getLogger(__name__)


class Refusal(StrEnum):
    """Why a document is not served (``UnsafeReason`` plus the discovery document's own)."""

    PRIVATE_MEMBER = UnsafeReason.PRIVATE_MEMBER.value
    SYMMETRIC_KEY = UnsafeReason.SYMMETRIC_KEY.value
    DUPLICATE_KID = UnsafeReason.DUPLICATE_KID.value
    INVALID_JSON = UnsafeReason.INVALID_JSON.value
    INVALID_JWKS = UnsafeReason.INVALID_JWKS.value
    INVALID_OPENID_CONFIGURATION = "invalid_openid_configuration"


class RefusedDocument(ValueError):
    """A ConfigMap document that must not be served."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason


PUBLIC_JWK_MEMBERS: Final = frozenset(
    {
        "kty",
        "use",
        "key_ops",
        "alg",
        "kid",
        "x5u",
        "x5c",
        "x5t",
        "x5t#S256",
        "crv",
        "x",
        "y",
        "n",
        "e",
    }
)
"""The registered public JWK parameters (RFC 7517, 7518, 8037): all a verifier needs."""


def servable_jwks(raw: str, namespace: str, name: str) -> tuple[dict[str, Any], str]:
    """The guarded public projection of a JWKS and its canonical text; or RefusedDocument."""
    try:
        parsed = _public_projection(parse_public_jwks(raw), namespace, name)
        return parsed, encode_public_jwks(parsed)
    except UnsafeJwksError as error:
        raise RefusedDocument(Refusal(error.reason.value), str(error)) from None


def servable_openid(raw: str) -> str:
    """A discovery document re-encoded from its parsed form; or RefusedDocument."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise RefusedDocument(
            Refusal.INVALID_OPENID_CONFIGURATION, "openid-configuration is not valid JSON"
        ) from None
    if not isinstance(document, dict):
        raise RefusedDocument(
            Refusal.INVALID_OPENID_CONFIGURATION, "openid-configuration is not a JSON object"
        )
    _refuse_embedded_private_keys(document)
    encoded = json.dumps(document, separators=(",", ":"))
    if PRIVATE_PEM_MARKER in encoded:
        raise RefusedDocument(
            Refusal.PRIVATE_MEMBER, "openid-configuration holds a PEM private key"
        )
    return encoded


def next_change(namespace: str, name: str, annotations: Mapping[str, str]) -> float | None:
    """The ``jwks.dev/next-change`` annotation as epoch seconds (None if absent or unparsable)."""
    raw = annotations.get(NEXT_CHANGE_ANNOTATION)
    if not raw:
        return None
    try:
        return parse_time(raw).timestamp()
    except ValueError:
        logger.warning(
            "keyset %s/%s: ignoring unparsable %s annotation",
            namespace,
            name,
            NEXT_CHANGE_ANNOTATION,
        )
        return None


def _public_projection(document: Mapping[str, Any], namespace: str, name: str) -> dict[str, Any]:
    """Only ``keys``, and in each key only public parameters with string values.

    The guard checks the members it knows at the levels it knows; serving a projection
    means that nothing else (a nested object, an extra top-level member) can carry key
    material out, whatever it is called.
    """
    keys = []
    dropped: set[str] = set()
    for index, jwk in enumerate(document["keys"]):
        kept: dict[str, Any] = {}
        for member, value in jwk.items():
            if member not in PUBLIC_JWK_MEMBERS:
                dropped.add(member)
                continue
            if not isinstance(value, str) and not (
                isinstance(value, list) and all(isinstance(item, str) for item in value)
            ):
                raise UnsafeJwksError(f"keys[{index}]: member {member} is not a string")
            kept[member] = value
        keys.append(kept)
    dropped.update(member for member in document if member != "keys")
    if dropped:
        logger.warning(
            "keyset %s/%s: not serving non-standard JWKS member(s) %s",
            namespace,
            name,
            ", ".join(sorted(dropped)[:10]),
        )
    return {"keys": keys}


def _refuse_embedded_private_keys(node: Any) -> None:
    """Discovery metadata has no place for keys; an embedded private one is refused."""
    if isinstance(node, dict):
        if "kty" in node and (PRIVATE_MEMBERS.intersection(node) or node.get("kty") == "oct"):
            raise RefusedDocument(
                Refusal.PRIVATE_MEMBER, "openid-configuration embeds a private or symmetric key"
            )
        for value in node.values():
            _refuse_embedded_private_keys(value)
    elif isinstance(node, list):
        for value in node:
            _refuse_embedded_private_keys(value)
