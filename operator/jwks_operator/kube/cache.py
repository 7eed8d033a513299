"""The operator's own Secrets and ConfigMaps, in memory: an informer cache.

Why: a reconcile used to GET the keyset's Secret and ConfigMap and LIST the objects
labelled for it (the only call whose cost grows with every object in the namespace; on a
real API server it may read etcd, which has no label index), so a warm restart of 10,000
keysets cost 40,000 requests and every resync two GETs. Now one list+watch per kind and
scope (``kube.reflector``) keeps them here, and a reconcile reads memory.

What is cached is only what the operator owns: the watches carry the label selector
``app.kubernetes.io/managed-by=jwks-operator`` (never a cluster-wide cache of every
Secret), and ``managedFields`` are dropped (the largest part of most objects, and never
read).

Staleness is safe by construction, not by timing: every update the store makes carries
the resourceVersion it read here, so a write based on a stale entry fails with 409 (and
the reconcile runs again, from a fresher cache); a create of an object the cache does not
have yet fails with 409 AlreadyExists. A stale cache can cost a retry, never a key. The
store also hands back what its writes returned (``observe``), so that the next reconcile
does not start from the version before its own write.

Each change is also given to ``listener(kind, type, obj)`` (the operator wakes the
keyset's daemon with it); for a deletion found by a re-list, ``obj`` is the last version
the cache held, so its labels are still known. An object that stops matching the selector
(its keyset label removed) is a deletion as far as the cache is concerned, as it is for
the watch.
"""

import asyncio
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jwks_operator.kube.client import KubeClient, collection_path
from jwks_operator.kube.reflector import DELETED, Change, Reflector, ReflectorSettings

Listener = Callable[[str, str, Mapping[str, Any]], None]
"""(kind, ADDED|MODIFIED|DELETED, object)."""

_GLOB = set("*?[")


class ObjectCache:
    def __init__(
        self,
        client: KubeClient,
        kinds: Mapping[str, str],
        *,
        selector: str,
        index_label: str,
        namespaces: Sequence[str] = (),
        listener: Listener | None = None,
        settings: ReflectorSettings | None = None,
    ) -> None:
        """``kinds``: kind -> plural (core group); ``namespaces``: the operator's scope
        (empty: the whole cluster; glob patterns as Kopf accepts them are filtered here,
        from a cluster-wide watch); ``index_label``: the label ``labelled`` looks up."""
        self._objects: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = {
            kind: {} for kind in kinds
        }
        self._index: dict[tuple[str, str, str], set[str]] = {}
        self._index_label = index_label
        self._listener = listener
        globs = [pattern for pattern in namespaces if _GLOB & set(pattern)]
        scopes: list[str | None] = [None] if not namespaces or globs else list(namespaces)
        keep = None
        if globs:
            patterns = list(namespaces)

            def keep(obj: Mapping[str, Any]) -> bool:
                namespace = str((obj.get("metadata") or {}).get("namespace") or "")
                return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in patterns)

        self.reflectors = [
            Reflector(
                client,
                collection_path("v1", plural, scope),
                self._deliverer(kind),
                title=f"{plural} in {scope or 'all namespaces'}",
                selector=selector,
                keep=keep,
                settings=settings,
            )
            for kind, plural in kinds.items()
            for scope in scopes
        ]
        self.synced = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for reflector in self.reflectors:
                group.create_task(reflector.run())
            for reflector in self.reflectors:
                await reflector.synced.wait()
            self.synced.set()

    # -- reads (the store's)

    def get(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The object as last seen; not to be modified (it is shared)."""
        return self._objects[kind].get((namespace, name))

    def labelled(self, kind: str, namespace: str, value: str) -> list[Mapping[str, Any]]:
        """The objects of ``kind`` in ``namespace`` whose index label is ``value``."""
        objects = self._objects[kind]
        names = sorted(self._index.get((kind, namespace, value), ()))
        return [objects[(namespace, name)] for name in names if (namespace, name) in objects]

    def __len__(self) -> int:
        return sum(len(objects) for objects in self._objects.values())

    # -- writes

    def observe(self, kind: str, obj: Mapping[str, Any]) -> None:
        """What one of our own writes returned: newer than the cache, unless the watch
        already brought a later version."""
        self._put(kind, _trimmed(obj))

    def _deliverer(self, kind: str) -> Callable[[Sequence[Change]], Any]:
        async def deliver(changes: Sequence[Change]) -> None:
            for change in changes:
                if change.type == DELETED:
                    last = self._drop(kind, change.key)
                    # A watch's DELETED carries the object (its labels, a new version); a
                    # re-list's carries only the name: then the last version known here.
                    labelled = bool((change.obj.get("metadata") or {}).get("labels"))
                    if self._listener is not None:
                        self._listener(
                            kind, DELETED, change.obj if labelled else last or change.obj
                        )
                    continue
                obj = _trimmed(change.obj)
                if self._put(kind, obj) and self._listener is not None:
                    self._listener(kind, change.type, obj)

        return deliver

    def _put(self, kind: str, obj: Mapping[str, Any]) -> bool:
        """Store ``obj`` unless the cache holds a later version; True when stored."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        before = self._objects[kind].get(key)
        if before is not None and _older(obj, before):
            return False
        if before is not None:
            self._unindex(kind, key, before)
        self._objects[kind][key] = obj
        value = (meta.get("labels") or {}).get(self._index_label)
        if isinstance(value, str):
            self._index.setdefault((kind, key[0], value), set()).add(key[1])
        return True

    def _drop(self, kind: str, key: tuple[str, str]) -> Mapping[str, Any] | None:
        before = self._objects[kind].pop(key, None)
        if before is not None:
            self._unindex(kind, key, before)
        return before

    def _unindex(self, kind: str, key: tuple[str, str], obj: Mapping[str, Any]) -> None:
        value = ((obj.get("metadata") or {}).get("labels") or {}).get(self._index_label)
        names = self._index.get((kind, key[0], str(value)))
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._index[(kind, key[0], str(value))]


def _older(obj: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    """True when ``obj`` is an earlier version than ``than``.

    resourceVersions are opaque by contract, but every API server backed by etcd issues
    increasing integers; when both are integers the comparison keeps a late watch event
    from undoing a write we already saw. Otherwise the newest arrival wins.
    """
    new = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    old = str((than.get("metadata") or {}).get("resourceVersion") or "")
    if new.isdigit() and old.isdigit():
        return int(new) < int(old)
    return False


def _trimmed(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        meta = {key: value for key, value in meta.items() if key != "managedFields"}
        return {**obj, "metadata": meta}
    return obj
