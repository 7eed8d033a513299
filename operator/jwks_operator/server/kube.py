"""The Kubernetes side of ``serve``: JwksKeySets and their ConfigMaps, listed then watched.

Credentials come from ``kube.config`` (one order for every command) and every request
goes through ``kube.client`` (rate limit, timeouts, retries), so a slow API server never
blocks the event loop that answers requests. Only ``configmaps`` and ``jwkskeysets`` URLs
are ever requested: the server's ServiceAccount has no access to Secrets and needs none.

Per scope (each ``--namespace``, or the whole cluster) and per resource a
``kube.reflector`` lists (paginated; ConfigMaps with ``labelSelector=SELECTOR``) and then
watches from the list's resourceVersion, resuming from the last event or bookmark when a
stream ends, and listing again only on 410 Gone. On errors it backs off while the last
good snapshot keeps being served. Entry building runs in worker threads.

What reaches the snapshot store is decided by ``server.trust``: for each JwksKeySet, only
the ConfigMap its spec names, bound to its UID, and of it only the keys its
``status.keys`` lists under their true thumbprint. Other labelled ConfigMaps (planted,
or of another keyset) and refused keys are logged and counted (``jwks_untrusted_total``),
never served. The label is still checked client-side, so an API that ignores the
selector cannot feed unlabelled ConfigMaps in.

``ConfigMapSource(store, client, *, namespaces=None, settings=ReflectorSettings())``:
``await run()`` forever (cancel to stop); ``ready`` is set (and ``store.mark_ready()``
called) once every scope's first lists (keysets, then ConfigMaps) have been applied.
"""

import asyncio
import functools
import logging
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jwks_operator.core.contract import (
    API_VERSION,
    MANAGED_SELECTOR,
    PLURAL,
)
from jwks_operator.core.timefmt import parse_time
from jwks_operator.kube.client import KubeClient, collection_path
from jwks_operator.kube.reflector import DELETED, Change, Reflector, ReflectorSettings
from jwks_operator.server.runner import settle_heap
from jwks_operator.server.snapshot import SnapshotStore, StoreBatch
from jwks_operator.server.trust import (
    Decision,
    KeySetRecord,
    PublishedMap,
    Refusal,
    decide,
    keyset_record,
    published_map,
)

logger = logging.getLogger(__name__)

SELECTOR = MANAGED_SELECTOR
"""Only ConfigMaps the operator manages are served."""


@dataclass(frozen=True, slots=True)
class _Kind:
    """One of the two resources the source lists and watches."""

    title: str
    api_version: str
    plural: str
    selector: str | None


CONFIGMAPS = _Kind("ConfigMaps", "v1", "configmaps", SELECTOR)
KEYSETS = _Kind("JwksKeySets", API_VERSION, PLURAL, None)


class ConfigMapSource:
    """Keeps a SnapshotStore equal to what the keysets vouch for; see the module docstring."""

    def __init__(
        self,
        store: SnapshotStore,
        client: KubeClient,
        *,
        namespaces: Sequence[str] | None = None,
        settings: ReflectorSettings | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.settings = settings or ReflectorSettings()
        self.ready = asyncio.Event()
        self.reflectors: list[Reflector] = []
        self._lock = threading.Lock()
        self._maps: dict[tuple[str, str], PublishedMap] = {}
        self._keysets: dict[tuple[str, str], KeySetRecord] = {}
        self._by_map: dict[tuple[str, str], set[str]] = {}
        """(namespace, ConfigMap name) -> the keysets that publish through it."""
        self._refused: dict[tuple[str, str], frozenset[Refusal]] = {}
        self._claims: dict[tuple[str, str], set[str]] = {}
        """(namespace, keyset label) -> the ConfigMaps labelled for that keyset."""
        self._unbound: dict[tuple[str, str], PublishedMap] = {}
        """Labelled ConfigMaps reported as not served (so each is reported once)."""

    async def run(self) -> None:
        metrics = self.store.metrics
        pairs: list[tuple[Reflector, Reflector]] = []
        for scope in self.scopes:
            where = scope or "all namespaces"
            pair = tuple(
                Reflector(
                    self.client,
                    collection_path(kind.api_version, kind.plural, scope),
                    functools.partial(self._deliver, kind),
                    title=f"{kind.title} in {where}",
                    selector=kind.selector,
                    settings=self.settings,
                    on_restart=metrics.count_watch_restart,
                )
                for kind in (KEYSETS, CONFIGMAPS)
            )
            pairs.append((pair[0], pair[1]))
        self.reflectors = [reflector for pair in pairs for reflector in pair]
        async with asyncio.TaskGroup() as group:
            for keysets, configmaps in pairs:
                group.create_task(keysets.run())
                group.create_task(self._after(keysets.synced, configmaps.run()))
            group.create_task(self._mark_ready())

    @staticmethod
    async def _after(first: asyncio.Event, then: Coroutine[Any, Any, None]) -> None:
        """Keysets first: a ConfigMap is judged against its keyset, and judging it before
        the keysets are known would report every one as unbound."""
        await first.wait()
        await then

    async def _mark_ready(self) -> None:
        for reflector in self.reflectors:
            await reflector.synced.wait()
        self.store.mark_ready()
        settle_heap()
        self.ready.set()
        logger.info("initial list loaded: %d keysets", len(self.store.snapshot.entries))

    async def _deliver(self, kind: _Kind, changes: Sequence[Change]) -> None:
        if changes:
            await asyncio.to_thread(self._apply, kind, changes)

    # -- bookkeeping (worker threads, serialised by the lock) -----------------------------

    def _apply(self, kind: _Kind, changes: Sequence[Change]) -> None:
        """One list's differences or one watch event, applied as one store batch."""
        with self._lock, self.store.batch() as batch:
            for change in changes:
                obj = None if change.type == DELETED else change.obj
                self._set(batch, kind, change.key, obj)

    def _set(
        self,
        batch: StoreBatch,
        kind: _Kind,
        key: tuple[str, str],
        obj: Mapping[str, Any] | None,
    ) -> None:
        namespace, name = key
        if kind is KEYSETS:
            record = keyset_record(obj) if obj is not None else None
            before = self._keysets.pop(key, None)
            if before is not None:
                self._by_map.get((namespace, before.config_map_name), set()).discard(name)
            if record is not None:
                self._keysets[key] = record
                self._by_map.setdefault((namespace, record.config_map_name), set()).add(name)
            self._resolve(batch, namespace, name)
            for claimant in sorted(self._claims.get(key, ())):
                self._check_claim((namespace, claimant))
            return
        published = published_map(obj, _modified(obj.get("metadata") or {})) if obj else None
        before_map = self._maps.pop(key, None)
        if before_map is not None:
            self._claims.get((namespace, before_map.keyset), set()).discard(name)
        if published is not None:
            self._maps[key] = published
            self._claims.setdefault((namespace, published.keyset), set()).add(name)
        self._check_claim(key)
        for keyset in sorted(self._by_map.get(key, ())):
            self._resolve(batch, namespace, keyset)

    def _check_claim(self, key: tuple[str, str]) -> None:
        """Report a labelled ConfigMap its keyset does not publish through (planted, or
        relabelled): it is never served. Reported once per content, not on every re-list;
        only once its keyset is known (the two watches are separate streams), since nothing
        is served for a keyset that does not exist."""
        published = self._maps.get(key)
        keyset = self._keysets.get((key[0], published.keyset)) if published else None
        if published is None or keyset is None or keyset.config_map_name == key[1]:
            self._unbound.pop(key, None)
            return
        if self._unbound.get(key) == published:
            return
        self._unbound[key] = published
        logger.warning(
            "ConfigMap %s/%s claims keyset %s, which publishes through %s; not served",
            *key,
            published.keyset,
            keyset.config_map_name,
        )
        self.store.metrics.count_untrusted("unbound")

    def _resolve(self, batch: StoreBatch, namespace: str, name: str) -> None:
        keyset = self._keysets.get((namespace, name))
        if keyset is None:
            self._refused.pop((namespace, name), None)
            batch.remove(namespace, name)
            return
        published = self._maps.get((namespace, keyset.config_map_name))
        decision = decide(keyset, published)
        self._report_refusals(keyset, decision)
        if decision.data is None or published is None:
            batch.remove(namespace, name)
            return
        batch.apply(
            namespace,
            name,
            decision.data,
            published.annotations,
            modified=published.modified,
        )

    def _report_refusals(self, keyset: KeySetRecord, decision: Decision) -> None:
        """Log and count each refusal once, when it first appears for the keyset."""
        key = (keyset.namespace, keyset.name)
        current = frozenset(decision.refused)
        for refusal in sorted(current - self._refused.get(key, frozenset()), key=str):
            if refusal.reason == "absent":
                # Normal for a moment on every removal (the ConfigMap drops a key before the
                # status does); after a hand edit the operator rebuilds the ConfigMap.
                logger.info("keyset %s/%s: %s", *key, refusal.message)
                continue
            logger.warning("keyset %s/%s: %s; not served", *key, refusal.message)
            self.store.metrics.count_untrusted(refusal.reason)
        if current:
            self._refused[key] = current
        else:
            self._refused.pop(key, None)


def _modified(metadata: Mapping[str, Any]) -> float | None:
    """The object's last write time, the same on every replica (unlike time of receipt).

    Only ``managedFields`` says when an object was last written (``creationTimestamp``
    does not move on updates); without them the time of receipt is used.
    """
    times = [
        entry.get("time")
        for entry in metadata.get("managedFields") or ()
        if isinstance(entry, Mapping)
    ]
    parsed = []
    for value in times:
        if isinstance(value, str):
            try:
                parsed.append(parse_time(value).timestamp())
            except ValueError:
                continue
    return max(parsed) if parsed else None
