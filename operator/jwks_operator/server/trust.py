"""What the server may serve for a keyset: the trust decision, pure and in one place.

A labelled ConfigMap is not enough: anyone who may create or edit ConfigMaps in a watched
namespace could then make every verifier trust a key they hold. So for JwksKeySet K the
server serves

1. only the ConfigMap named by K's ``spec.configMapName`` (default ``<name>-jwks``) in K's
   namespace, labelled for K and bound to K's UID (the operator sets the annotation
   ``jwks.dev/keyset-uid``, and an owner reference under ``deletionPolicy: Delete``);
2. of its ``jwks.json``, only the keys whose kid is listed in K's ``status.keys`` and
   whose RFC 7638 thumbprint is that kid.

``status`` is written only through the status subresource, which namespace editors do not
get by default: the trust anchor is "who may write ``jwkskeysets/status``". A key that
fails (2) is *refused*: left out, and reported with a reason (``unlisted``: a kid that
status does not list; ``thumbprint``: material that is not the key its kid names).

A kid listed in status with no key in the ConfigMap (``absent``) is not an attack on
verifiers (nothing untrusted is served) but a withdrawal: during a publication the status
may list a key a moment before the ConfigMap holds it, and after a hand edit that
removed a key the operator rebuilds the ConfigMap from its Secret. The server serves the
keys it can vouch for and reports the absent kid; it never invents one.

Everything else the ConfigMap holds (discovery document, verification policy) is taken
from the bound ConfigMap as it is. A document the guard refuses (private material, an
``oct`` key, duplicate kids, not JSON) is handed on whole, so that the snapshot store's
guard refuses it and keeps the last good body: it is never quietly cleaned here.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from jwks_operator.core.contract import (
    API_VERSION,
    CONFIGMAP_JWKS,
    KEYSET_LABEL,
    KEYSET_UID_ANNOTATION,
    KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
)
from jwks_operator.core.guard import UnsafeJwksError, parse_public_jwks
from jwks_operator.core.keys import thumbprint

RefusalReason = Literal["unlisted", "thumbprint", "absent", "malformed"]
REFUSAL_REASONS: Final[tuple[RefusalReason, ...]] = (
    "unlisted",
    "thumbprint",
    "absent",
    "malformed",
)


@dataclass(frozen=True, slots=True)
class KeySetRecord:
    """The part of a JwksKeySet the server needs (it holds no secret)."""

    namespace: str
    name: str
    uid: str
    config_map_name: str
    listed: frozenset[str]
    """Kids in ``status.keys``: the only keys that may be served."""


@dataclass(frozen=True, slots=True)
class PublishedMap:
    """A labelled ConfigMap as received: its binding to a keyset and its documents."""

    namespace: str
    name: str
    keyset: str
    bound_uids: frozenset[str]
    """The keyset UIDs it carries: the annotation and JwksKeySet owner references."""
    data: Mapping[str, str]
    annotations: Mapping[str, str]
    modified: float | None
    created: str = ""


@dataclass(frozen=True, slots=True)
class Refusal:
    kid: str
    reason: RefusalReason
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What to serve for one keyset, and what was left out and why."""

    data: Mapping[str, str] | None
    """The documents to serve (``jwks.json`` filtered), or None: serve nothing (404)."""
    refused: tuple[Refusal, ...] = ()
    problem: str | None = None
    """Why no ConfigMap is served at all, when that is so."""


def keyset_record(obj: Mapping[str, Any]) -> KeySetRecord | None:
    """A JwksKeySet object as the server sees it; None when it has no usable identity."""
    metadata = obj.get("metadata") or {}
    namespace, name, uid = metadata.get("namespace"), metadata.get("name"), metadata.get("uid")
    if not all(isinstance(value, str) and value for value in (namespace, name, uid)):
        return None
    spec = _mapping(obj.get("spec"))
    configured = spec.get("configMapName")
    config_map = configured if isinstance(configured, str) and configured else f"{name}-jwks"
    entries = _mapping(obj.get("status")).get("keys")
    if not isinstance(entries, list):
        entries = []
    listed = frozenset(
        entry["kid"]
        for entry in entries
        if isinstance(entry, Mapping) and isinstance(entry.get("kid"), str)
    )
    return KeySetRecord(str(namespace), str(name), str(uid), config_map, listed)


def published_map(obj: Mapping[str, Any], modified: float | None) -> PublishedMap | None:
    """A ConfigMap as the server sees it; None unless labelled as the operator labels."""
    metadata = obj.get("metadata") or {}
    namespace, name = metadata.get("namespace"), metadata.get("name")
    labels = metadata.get("labels") or {}
    keyset = labels.get(KEYSET_LABEL)
    if (
        not isinstance(namespace, str)
        or not isinstance(name, str)
        or not isinstance(keyset, str)
        or not keyset
        or labels.get(MANAGED_BY_LABEL) != MANAGED_BY
    ):
        return None
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if isinstance(v, str)
    }
    uids = {annotations[KEYSET_UID_ANNOTATION]} if KEYSET_UID_ANNOTATION in annotations else set()
    for ref in metadata.get("ownerReferences") or ():
        if (
            isinstance(ref, Mapping)
            and ref.get("kind") == KIND
            and ref.get("apiVersion") == API_VERSION
            and isinstance(ref.get("uid"), str)
        ):
            uids.add(ref["uid"])
    created = metadata.get("creationTimestamp")
    return PublishedMap(
        namespace=namespace,
        name=name,
        keyset=keyset,
        bound_uids=frozenset(uids),
        data={k: v for k, v in (obj.get("data") or {}).items() if isinstance(v, str)},
        annotations=annotations,
        modified=modified,
        created=created if isinstance(created, str) else "",
    )


def decide(keyset: KeySetRecord | None, published: PublishedMap | None) -> Decision:
    """The documents the server may serve for ``keyset`` from ``published`` (its ConfigMap).

    ``published`` must be the ConfigMap found under ``keyset.config_map_name`` (or None);
    every other ConfigMap claiming the keyset is ignored by construction.
    """
    if keyset is None:
        return Decision(None, problem="no JwksKeySet of that name")
    where = f"ConfigMap {keyset.namespace}/{keyset.config_map_name}"
    if published is None:
        return Decision(None, problem=f"{where} does not exist or is not labelled")
    if published.keyset != keyset.name:
        return Decision(None, problem=f"{where} is labelled for keyset {published.keyset!r}")
    if keyset.uid not in published.bound_uids:
        return Decision(None, problem=f"{where} is not bound to this keyset's UID")
    raw = published.data.get(CONFIGMAP_JWKS)
    if raw is None:
        return Decision(dict(published.data))
    try:
        document = parse_public_jwks(raw)
    except UnsafeJwksError:
        # Private material, a symmetric key, duplicate kids, not JSON: the whole document
        # goes on unchanged so that the store's guard refuses it (and keeps the last good
        # body), rather than being quietly cleaned here, which would hide a leak.
        return Decision(dict(published.data))
    keys = document["keys"]
    kept: list[Any] = []
    refused: list[Refusal] = []
    seen: set[str] = set()
    for jwk in keys:
        kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
        if not isinstance(kid, str):
            refused.append(Refusal("?", "malformed", "a key without a kid"))
            continue
        if kid not in keyset.listed:
            refused.append(Refusal(kid, "unlisted", f"kid {kid} is not listed in status.keys"))
            continue
        if _thumbprint(jwk) != kid:
            refused.append(
                Refusal(kid, "thumbprint", f"key material under kid {kid} is not the key it names")
            )
            continue
        seen.add(kid)
        kept.append(jwk)
    for kid in sorted(keyset.listed - seen - {r.kid for r in refused}):
        refused.append(Refusal(kid, "absent", f"kid {kid} is listed in status.keys but absent"))
    data = dict(published.data)
    data[CONFIGMAP_JWKS] = json.dumps({**document, "keys": kept}, separators=(",", ":"))
    return Decision(data, tuple(refused))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _thumbprint(jwk: Mapping[str, Any]) -> str | None:
    try:
        return thumbprint(jwk)
    except (KeyError, TypeError, ValueError):
        return None
