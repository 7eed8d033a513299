"""The KeySetStore on a cluster: the private half in a Secret, the public half in a ConfigMap.

What this adapter adds to the contract of ``store.base``:

- Ownership: both objects carry ``app.kubernetes.io/managed-by=jwks-operator`` and
  ``jwks.dev/keyset=<name>``. An object that exists under a target name without those
  labels belongs to someone else: ``read`` reports a conflict and nothing is written, ever.
  Matching labels are enough to adopt an object, which is how a re-created JwksKeySet with
  ``deletionPolicy: Retain`` picks up its keys instead of minting new ones.
- Content hashes (as trust-manager does): ``jwks.dev/content-hash`` is the SHA-256 of the
  data the operator wrote. A write whose data, hash, labels and owner references are
  already in place is skipped, so a steady keyset costs no writes and no watch events;
  a ConfigMap whose data no longer matches its hash was edited by hand (``public_intact``).
- Optimistic concurrency: updates are merge patches that carry the resourceVersion read,
  so a concurrent writer makes this one fail with 409 rather than silently lose a key.
- ``deletionPolicy: Delete`` sets an ownerReference to the JwksKeySet (the garbage
  collector then removes both objects with it); ``Retain`` removes ours, keeps others'.
- Binding: the ConfigMap carries ``jwks.dev/keyset-uid`` (the keyset's UID), and the
  keyset's ``status.keys`` lists a new kid before the ConfigMap holds it
  (``write_trust``): the JWKS server serves only keys both agree on (``server.trust``).
- Reads come from the operator's informer cache (``kube.cache``), not the API: a steady
  keyset costs no request at all. The resourceVersion preconditions above are what make
  that safe: a write based on a stale entry fails with 409 and the reconcile runs again.
  What a write returns goes back into the cache.
- Every resourceVersion read or written is reported to a ``Tracker``, so that the
  operator can tell the watch echo of its own writes from a change made by someone else.
"""

import asyncio
import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from jwks_operator.core.contract import (
    API_VERSION,
    CONTENT_HASH_ANNOTATION,
    GROUP,
    KEYSET_LABEL,
    KEYSET_UID_ANNOTATION,
    KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NEXT_CHANGE_ANNOTATION,
    PLURAL,
    SECRET_KEYS,
)
from jwks_operator.core.publication import next_change_annotation
from jwks_operator.core.spec import KeySetSpec
from jwks_operator.kube.cache import ObjectCache
from jwks_operator.kube.client import KubeClient, collection_path, object_path
from jwks_operator.store.base import StoredDocuments, WriteOutcome

RELEASED_ANNOTATION: Final = "jwks.dev/released-from"
"""On an object the operator stopped managing after a rename: the keyset it belonged to."""
SECRET: Final = "Secret"
CONFIGMAP: Final = "ConfigMap"
PLURALS: Final = {SECRET: "secrets", CONFIGMAP: "configmaps"}
"""The kinds the store keeps, as the cache watches them."""


class Tracker(Protocol):
    def observed(self, kind: str, name: str, resource_version: str) -> None:
        """``kind``/``name`` is known to be at ``resource_version`` (read or written by us)."""

    def vouched(self, kids: frozenset[str]) -> None:
        """The keyset's ``status.keys`` is about to list exactly ``kids`` (our own write)."""


@dataclass(frozen=True)
class Owner:
    """The JwksKeySet that owns the objects when its deletionPolicy is Delete."""

    name: str
    uid: str


def content_hash(data: Mapping[str, str]) -> str:
    """SHA-256 of a data map in canonical JSON: the same text always hashes the same."""
    text = json.dumps(dict(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def labels_for(keyset: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, KEYSET_LABEL: keyset}


def ownership_problem(kind: str, obj: Mapping[str, Any], keyset: str) -> str | None:
    """Why ``obj`` must not be touched by keyset ``keyset``; None when it is ours."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "?")
    labels = meta.get("labels") or {}
    owner = labels.get(KEYSET_LABEL)
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and owner == keyset:
        return None
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and owner:
        holder = f"belongs to JwksKeySet {owner!r}"
    else:
        holder = f"is not managed by jwks-operator (no label {KEYSET_LABEL}={keyset})"
    target = "spec.secretName" if kind == SECRET else "spec.configMapName"
    return (
        f"{kind} {name} already exists and {holder}; it is never overwritten: choose another "
        f"{target}, or delete or label that {kind} to hand it over"
    )


def decode_secret_data(obj: Mapping[str, Any]) -> dict[str, str] | None:
    """A Secret's data as text; None when any value is not base64 of UTF-8 text."""
    decoded: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            decoded[key] = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, TypeError):
            return None
    return decoded


def _encode(data: Mapping[str, str]) -> dict[str, str]:
    return {
        key: base64.b64encode(value.encode("utf-8")).decode("ascii") for key, value in data.items()
    }


class KubernetesStore:
    """One keyset's Secret and ConfigMap. One instance per reconciliation: it remembers
    the objects it read so that its writes carry their resourceVersions."""

    def __init__(
        self,
        client: KubeClient,
        cache: ObjectCache,
        *,
        namespace: str,
        spec: KeySetSpec,
        owner: Owner | None,
        tracker: Tracker | None = None,
        listed: frozenset[str] = frozenset(),
    ) -> None:
        self._client = client
        self._cache = cache
        self._namespace = namespace
        self._spec = spec
        self._uid = owner.uid if owner is not None else None
        self._owner = owner if spec.deletion_policy == "Delete" else None
        self._listed = listed
        """The kids the keyset's ``status.keys`` lists now (what servers will serve)."""
        self.status_written: dict[str, Any] | None = None
        """The keyset's status as the trust write left it, if it wrote."""
        self._tracker = tracker
        self._objects: dict[str, Mapping[str, Any] | None] = {}
        self.migrated_from: str | None = None
        """The Secret whose keys were taken over after a ``spec.secretName`` rename."""

    def _name(self, kind: str) -> str:
        return self._spec.secret_name if kind == SECRET else self._spec.config_map_name

    def _path(self, kind: str, name: str | None = None) -> str:
        if name is None:
            return collection_path("v1", PLURALS[kind], self._namespace)
        return object_path("v1", PLURALS[kind], self._namespace, name)

    def _remember(self, kind: str, obj: Mapping[str, Any] | None) -> None:
        self._objects[kind] = obj
        if obj is not None and self._tracker is not None:
            meta = obj.get("metadata") or {}
            version = meta.get("resourceVersion")
            if version:
                self._tracker.observed(kind, str(meta.get("name")), str(version))

    async def _lookup(self, kind: str) -> Mapping[str, Any] | None:
        """The target object, from the cache; from the API when the cache lacks it.

        The cache holds only objects labelled as ours, so a miss means "absent" *or*
        "someone else's" (which must be reported, never overwritten): only a GET can tell.
        A steady keyset never misses; a new one misses once per object, before creating it.
        """
        name = self._name(kind)
        cached = self._cache.get(kind, self._namespace, name)
        if cached is not None:
            return cached
        return await self._client.get(self._path(kind, name))

    async def read(self) -> StoredDocuments:
        secret, configmap = await asyncio.gather(self._lookup(SECRET), self._lookup(CONFIGMAP))
        self._remember(SECRET, secret)
        self._remember(CONFIGMAP, configmap)
        problems = [
            problem
            for kind, obj in ((SECRET, secret), (CONFIGMAP, configmap))
            if obj is not None and (problem := ownership_problem(kind, obj, self._spec.name))
        ]
        if problems:
            return StoredDocuments(None, None, conflict="; ".join(problems))

        if secret is None:
            secret = self._renamed_secret()
            if secret is not None:
                self.migrated_from = str(secret["metadata"]["name"])

        private_state: str | None = None
        if secret is not None:
            decoded = decode_secret_data(secret)
            # Present but unreadable is *corrupt*, never "absent": an absent Secret would
            # make reconcile mint new keys, which breaks every outstanding token.
            private_state = "" if decoded is None else decoded.get(SECRET_KEYS, "")

        untrusted = self._untrusted_configmaps()
        public_data: dict[str, str] | None = None
        intact = True
        if configmap is not None:
            public_data = {str(k): str(v) for k, v in (configmap.get("data") or {}).items()}
            recorded = (configmap.get("metadata", {}).get("annotations") or {}).get(
                CONTENT_HASH_ANNOTATION
            )
            intact = recorded == content_hash(public_data) and not configmap.get("binaryData")
        return StoredDocuments(
            private_state, public_data, public_intact=intact, untrusted_configmaps=untrusted
        )

    def _untrusted_configmaps(self) -> tuple[str, ...]:
        """ConfigMaps labelled for this keyset under another name, not written by us.

        The JWKS server never serves them (it serves the ConfigMap the spec names); they
        are reported because someone who may write ConfigMaps here made or relabelled one.
        One of ours left under an old name after a rename carries our UID: it is about to
        be released, not reported.
        """
        found = []
        for item in labelled(self._cache, CONFIGMAP, self._namespace, self._spec.name):
            meta = item.get("metadata") or {}
            name = str(meta.get("name"))
            ours = (meta.get("annotations") or {}).get(KEYSET_UID_ANNOTATION) == self._uid
            if name != self._spec.config_map_name and not (ours and self._uid):
                found.append(name)
        return tuple(sorted(found))

    def _renamed_secret(self) -> Mapping[str, Any] | None:
        """After ``spec.secretName`` changed, the keys are still in the Secret labelled for
        this keyset under its old name: take them over rather than mint new ones (which
        would break every outstanding token). Old names are released after each
        reconciliation (``release_stale``), so at most one such Secret exists."""
        found = [
            item
            for item in labelled(self._cache, SECRET, self._namespace, self._spec.name)
            if item.get("metadata", {}).get("name") != self._spec.secret_name
        ]
        return found[0] if len(found) == 1 else None

    async def write_private(self, data: Mapping[str, str]) -> WriteOutcome:
        return await self._write(SECRET, data, {})

    async def write_trust(self, keys: Sequence[Mapping[str, Any]]) -> None:
        """List new kids in ``status.keys`` (status subresource) before the ConfigMap has them.

        The server serves a key only when the keyset's status lists its kid, so a key
        added to the ConfigMap first would be refused (and reported as untrusted) for a
        moment. Removals need no early write: the status written after the reconcile
        drops them, and a listed kid the ConfigMap no longer holds is simply not served.
        """
        kids = frozenset(str(entry["kid"]) for entry in keys)
        if kids <= self._listed:
            return
        if self._tracker is not None:
            self._tracker.vouched(kids)  # before the write: its echo may come first
        path = object_path(API_VERSION, PLURAL, self._namespace, self._spec.name, "status")
        response = await self._client.merge_patch(path, {"status": {"keys": list(keys)}})
        status = response.get("status")
        self.status_written = dict(status) if isinstance(status, Mapping) else None
        self._listed = kids

    async def write_public(
        self, data: Mapping[str, str], next_change: datetime | None
    ) -> WriteOutcome:
        annotations = {NEXT_CHANGE_ANNOTATION: next_change_annotation(next_change)}
        if self._uid:
            annotations[KEYSET_UID_ANNOTATION] = self._uid
        return await self._write(CONFIGMAP, data, annotations)

    async def _write(
        self, kind: str, data: Mapping[str, str], annotations: Mapping[str, str | None]
    ) -> WriteOutcome:
        name = self._name(kind)
        wanted_annotations = {CONTENT_HASH_ANNOTATION: content_hash(data), **annotations}
        current = self._objects.get(kind)
        if current is None:
            created = await self._client.create(
                self._path(kind), self._new_object(kind, name, data, wanted_annotations)
            )
            self._cache.observe(kind, created)
            self._remember(kind, created)
            return WriteOutcome.CREATED
        patch = self._patch(kind, current, data, wanted_annotations)
        if patch is None:
            return WriteOutcome.UNCHANGED
        updated = await self._client.merge_patch(self._path(kind, name), patch)
        self._cache.observe(kind, updated)
        self._remember(kind, updated)
        return WriteOutcome.UPDATED

    def _owner_references(self, current: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        existing = list(((current or {}).get("metadata") or {}).get("ownerReferences") or [])
        others = [ref for ref in existing if not _is_keyset_ref(ref, self._spec.name)]
        if self._owner is None:
            return others
        return [
            *others,
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": self._owner.name,
                "uid": self._owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            },
        ]

    def _new_object(
        self,
        kind: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str | None],
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self._namespace,
            "labels": labels_for(self._spec.name),
            "annotations": {k: v for k, v in annotations.items() if v is not None},
        }
        references = self._owner_references(None)
        if references:
            metadata["ownerReferences"] = references
        body: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
        if kind == SECRET:
            body["type"] = "Opaque"
            body["data"] = _encode(data)
        else:
            body["data"] = dict(data)
        return body

    def _patch(
        self,
        kind: str,
        current: Mapping[str, Any],
        data: Mapping[str, str],
        annotations: Mapping[str, str | None],
    ) -> dict[str, Any] | None:
        """The merge patch that makes ``current`` what we want, or None if it already is."""
        meta = current.get("metadata") or {}
        metadata: dict[str, Any] = {}
        labels = labels_for(self._spec.name)
        if any((meta.get("labels") or {}).get(k) != v for k, v in labels.items()):
            metadata["labels"] = labels
        have = meta.get("annotations") or {}
        changed = {k: v for k, v in annotations.items() if have.get(k) != v}
        if changed:
            metadata["annotations"] = changed
        references = self._owner_references(current)
        if references != list(meta.get("ownerReferences") or []):
            metadata["ownerReferences"] = references

        actual = decode_secret_data(current) if kind == SECRET else current.get("data") or {}
        body: dict[str, Any] = {}
        if actual != dict(data):
            stored = _encode(data) if kind == SECRET else dict(data)
            removed = {key: None for key in (current.get("data") or {}) if key not in data}
            body["data"] = {**stored, **removed}
        if kind == CONFIGMAP and current.get("binaryData"):
            body["binaryData"] = None
        if not metadata and not body:
            return None
        metadata["resourceVersion"] = meta.get("resourceVersion")
        body["metadata"] = metadata
        return body


def labelled(cache: ObjectCache, kind: str, namespace: str, keyset: str) -> list[Mapping[str, Any]]:
    """The Secrets or ConfigMaps that carry both labels of ``keyset`` (from the cache)."""
    wanted = labels_for(keyset)
    return [
        item
        for item in cache.labelled(kind, namespace, keyset)
        if all(
            ((item.get("metadata") or {}).get("labels") or {}).get(key) == value
            for key, value in wanted.items()
        )
    ]


async def release_stale(
    client: KubeClient,
    cache: ObjectCache,
    *,
    namespace: str,
    keyset: str,
    keep: Mapping[str, str],
) -> list[str]:
    """Objects labelled for ``keyset`` under names it no longer uses (after a rename).

    Their ``jwks.dev/keyset`` label is removed, so that the JWKS server stops serving a
    stale ConfigMap as this keyset's and the operator stops watching them; they are not
    deleted (signers may still mount an old Secret). Returns "Kind name" of each.
    """
    released = []
    for kind in (SECRET, CONFIGMAP):
        for item in labelled(cache, kind, namespace, keyset):
            meta = item.get("metadata") or {}
            name = str(meta.get("name"))
            if name == keep.get(kind):
                continue
            patch = {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "labels": {KEYSET_LABEL: None},
                    "annotations": {RELEASED_ANNOTATION: keyset},
                }
            }
            updated = await client.merge_patch(
                object_path("v1", PLURALS[kind], namespace, name), patch
            )
            cache.observe(kind, updated)
            released.append(f"{kind} {name}")
    return released


def _is_keyset_ref(ref: Mapping[str, Any], keyset: str) -> bool:
    api_version = str(ref.get("apiVersion", ""))
    return (
        ref.get("kind") == KIND and api_version.split("/")[0] == GROUP and ref.get("name") == keyset
    )
