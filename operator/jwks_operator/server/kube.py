"""The Kubernetes side of ``serve``: JwksKeySets and their ConfigMaps, listed then watched.

The kubeconfig is found as kubectl finds it (``--kubeconfig``, ``KUBECONFIG``,
``~/.kube/config``, then the in-cluster ServiceAccount) by the ``kubernetes`` package's
loader; the HTTP itself is aiohttp, so a slow API server never blocks the event loop that
answers requests. Only ``configmaps`` and ``jwkskeysets`` URLs are ever requested: the
server's ServiceAccount has no access to Secrets and needs none.

Per scope (each ``--namespace``, or the whole cluster) and per resource the loop is the
informer's: list (paginated; ConfigMaps with ``labelSelector=SELECTOR``), apply the
difference, watch from the list's resourceVersion; on 410 Gone, a closed or dropped
stream, re-list; on an error, back off exponentially (with jitter) and retry, while the
last good snapshot keeps being served. JSON decoding and entry building run in worker
threads.

What reaches the snapshot store is decided by ``server.trust``: for each JwksKeySet, only
the ConfigMap its spec names, bound to its UID, and of it only the keys its
``status.keys`` lists under their true thumbprint. Other labelled ConfigMaps (planted,
or of another keyset) and refused keys are logged and counted (``jwks_untrusted_total``),
never served. The label is still checked client-side, so an API that ignores the
selector cannot feed unlabelled ConfigMaps in.

``ConfigMapSource(store, connection, *, namespaces=None, settings=SourceSettings())``:
``await run()`` forever (cancel to stop); ``ready`` is set (and ``store.mark_ready()``
called) once every scope's first lists (keysets, then ConfigMaps) have been applied.
``load_connection(kubeconfig=None, context=None) -> KubeConnection`` raises
``KubeConfigError`` with a message fit for the command line.
"""

import asyncio
import json
import logging
import os
import random
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from jwks_operator.core.contract import (
    API_VERSION,
    KEYSET_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PLURAL,
)
from jwks_operator.core.timefmt import parse_time
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

SELECTOR = f"{KEYSET_LABEL},{MANAGED_BY_LABEL}={MANAGED_BY}"
"""Only ConfigMaps the operator manages are served."""


class KubeConfigError(Exception):
    """No usable kubeconfig or in-cluster configuration."""


class ApiError(Exception):
    """An unexpected answer from the API server (status and a short reason, no body)."""


@dataclass(frozen=True)
class KubeConnection:
    """Where the API server is and how to authenticate to it."""

    server: str
    ssl_context: ssl.SSLContext | None
    server_hostname: str | None
    configuration: Any
    """The ``kubernetes.client.Configuration``: it refreshes expiring tokens."""

    def auth_headers(self) -> dict[str, str]:
        """Authorization headers (may run a credential plugin: call it in a thread)."""
        headers: dict[str, str] = {}
        for setting in self.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        username = getattr(self.configuration, "username", None)
        if username and "authorization" not in headers:
            headers["authorization"] = self.configuration.get_basic_auth_token()
        return headers


def load_connection(kubeconfig: str | None = None, context: str | None = None) -> KubeConnection:
    """Load credentials as kubectl does; raise KubeConfigError when there are none."""
    from kubernetes import client, config

    configuration = client.Configuration()
    default_file = os.path.expanduser("~/.kube/config")
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(default_file):
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            raise KubeConfigError(
                "no kubeconfig found (--kubeconfig, KUBECONFIG, ~/.kube/config) "
                "and not running in a cluster"
            )
    except KubeConfigError:
        raise
    except config.ConfigException as error:
        raise KubeConfigError(f"cannot load the Kubernetes configuration: {error}") from None
    except OSError as error:
        raise KubeConfigError(f"cannot read the kubeconfig: {error}") from None
    except Exception as error:  # e.g. YAML syntax: the loader has no error type of its own
        raise KubeConfigError(
            f"cannot load the Kubernetes configuration: {error.__class__.__name__}: "
            f"{str(error)[:300]}"
        ) from None
    server = str(configuration.host).rstrip("/")
    context_ssl: ssl.SSLContext | None = None
    if server.startswith("https://"):
        if configuration.verify_ssl:
            context_ssl = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        else:
            context_ssl = ssl.create_default_context()
            context_ssl.check_hostname = False
            context_ssl.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context_ssl.load_cert_chain(configuration.cert_file, configuration.key_file)
    return KubeConnection(
        server=server,
        ssl_context=context_ssl,
        server_hostname=getattr(configuration, "tls_server_name", None) or None,
        configuration=configuration,
    )


@dataclass(frozen=True, slots=True)
class SourceSettings:
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    relist_delay: float = 0.1
    """Pause before re-listing after a watch ended normally (no hot loop on a flapping API)."""
    watch_timeout: int = 300
    request_timeout: float = 30.0
    page_size: int = 500
    max_line: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Kind:
    """One of the two resources the source lists and watches."""

    title: str
    prefix: str
    plural: str
    selector: str | None


CONFIGMAPS = _Kind("ConfigMaps", "/api/v1", "configmaps", SELECTOR)
KEYSETS = _Kind("JwksKeySets", f"/apis/{API_VERSION}", PLURAL, None)


class _WatchExpired(Exception):
    pass


class ConfigMapSource:
    """Keeps a SnapshotStore equal to what the keysets vouch for; see the module docstring."""

    def __init__(
        self,
        store: SnapshotStore,
        connection: KubeConnection,
        *,
        namespaces: Sequence[str] | None = None,
        settings: SourceSettings | None = None,
    ) -> None:
        self.store = store
        self.connection = connection
        self.scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.settings = settings or SourceSettings()
        self.ready = asyncio.Event()
        self._listed: set[tuple[str, str | None]] = set()
        self._keysets_listed: dict[str | None, asyncio.Event] = {}
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
        connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context or False)
        self._keysets_listed = {scope: asyncio.Event() for scope in self.scopes}
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            asyncio.TaskGroup() as group,
        ):
            for scope in self.scopes:
                group.create_task(self._run_scope(session, KEYSETS, scope))
                group.create_task(self._run_scope(session, CONFIGMAPS, scope))

    # -- the informer loop --------------------------------------------------------------

    async def _run_scope(
        self, session: aiohttp.ClientSession, kind: _Kind, scope: str | None
    ) -> None:
        where = scope or "all namespaces"
        backoff = self.settings.backoff_initial
        metrics = self.store.metrics
        if kind is CONFIGMAPS:
            # Keysets first: a ConfigMap is judged against its keyset, and judging it
            # before the keysets are known would report every one as unbound.
            await self._keysets_listed[scope].wait()
        listed = False  # until a first list succeeds there is no snapshot to fall back on
        while True:
            try:
                resource_version = await self._list(session, kind, scope)
                listed = True
                backoff = self.settings.backoff_initial
                reason = await self._watch(session, kind, scope, resource_version)
                logger.info("watch of %s in %s ended (%s); re-listing", kind.title, where, reason)
                metrics.count_watch_restart(reason)
                await asyncio.sleep(self.settings.relist_delay)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                metrics.count_watch_restart("error")
                delay = backoff * (0.5 + random.random() / 2)  # noqa: S311 (jitter)
                logger.warning(
                    "%s in %s: %s; %s, retrying in %.1fs",
                    kind.title,
                    where,
                    _describe(error),
                    "serving the last snapshot" if listed else "nothing listed yet, not ready",
                    delay,
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.settings.backoff_max)

    def _url(self, kind: _Kind, scope: str | None) -> str:
        if scope is None:
            return f"{self.connection.server}{kind.prefix}/{kind.plural}"
        namespace = quote(scope, safe="")
        return f"{self.connection.server}{kind.prefix}/namespaces/{namespace}/{kind.plural}"

    async def _headers(self) -> dict[str, str]:
        headers = await asyncio.to_thread(self.connection.auth_headers)
        headers["accept"] = "application/json"
        return headers

    async def _list(self, session: aiohttp.ClientSession, kind: _Kind, scope: str | None) -> str:
        items: list[dict[str, Any]] = []
        resource_version = ""
        token = ""
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        while True:
            params = {"limit": str(self.settings.page_size)}
            if kind.selector:
                params["labelSelector"] = kind.selector
            if token:
                params["continue"] = token
            async with session.get(
                self._url(kind, scope),
                params=params,
                headers=await self._headers(),
                timeout=timeout,
                server_hostname=self.connection.server_hostname,
            ) as response:
                if response.status != 200:
                    raise ApiError(f"list of {kind.plural} answered HTTP {response.status}")
                raw = await response.read()
            page = await asyncio.to_thread(json.loads, raw)
            items.extend(page.get("items") or ())
            metadata = page.get("metadata") or {}
            resource_version = str(metadata.get("resourceVersion") or "")
            token = str(metadata.get("continue") or "")
            if not token:
                break
        await asyncio.to_thread(self._replace_scope, kind, scope, items)
        if kind is KEYSETS:
            self._keysets_listed[scope].set()
        if (kind.plural, scope) not in self._listed:
            self._listed.add((kind.plural, scope))
            if len(self._listed) == 2 * len(self.scopes):
                self.store.mark_ready()
                settle_heap()
                self.ready.set()
                logger.info("initial list loaded: %d keysets", len(self.store.snapshot.entries))
        return resource_version

    async def _watch(
        self,
        session: aiohttp.ClientSession,
        kind: _Kind,
        scope: str | None,
        resource_version: str,
    ) -> str:
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.settings.watch_timeout),
        }
        if kind.selector:
            params["labelSelector"] = kind.selector
        if resource_version and resource_version != "...":
            params["resourceVersion"] = resource_version
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.request_timeout,
            sock_read=self.settings.watch_timeout + 30,
        )
        async with session.get(
            self._url(kind, scope),
            params=params,
            headers=await self._headers(),
            timeout=timeout,
            server_hostname=self.connection.server_hostname,
        ) as response:
            if response.status == 410:
                return "expired"
            if response.status != 200:
                raise ApiError(f"watch of {kind.plural} answered HTTP {response.status}")
            pending = bytearray()
            try:
                async for chunk in response.content.iter_any():
                    pending += chunk
                    while (newline := pending.find(b"\n")) >= 0:
                        line = bytes(pending[:newline])
                        del pending[: newline + 1]
                        if line.strip():
                            await asyncio.to_thread(self._handle_event_line, kind, line)
                    if len(pending) > self.settings.max_line:
                        raise ApiError("watch event larger than the line limit")
            except _WatchExpired:
                return "expired"
            except aiohttp.ClientPayloadError:
                return "dropped"
        return "closed"

    # -- bookkeeping (worker threads, serialised by the lock) -----------------------------

    def _handle_event_line(self, kind: _Kind, line: bytes) -> None:
        event = json.loads(line)
        event_type = event.get("type")
        obj = event.get("object") or {}
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise _WatchExpired()
            raise ApiError(f"watch error {obj.get('code')}: {str(obj.get('reason'))[:80]}")
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: nothing to apply (every end re-lists)
        metadata = obj.get("metadata") or {}
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return
        with self._lock, self.store.batch() as batch:
            self._set(batch, kind, (namespace, name), None if event_type == "DELETED" else obj)

    def _replace_scope(self, kind: _Kind, scope: str | None, items: list[dict[str, Any]]) -> None:
        fresh: dict[tuple[str, str], Mapping[str, Any]] = {}
        for obj in items:
            metadata = obj.get("metadata") or {}
            namespace, name = metadata.get("namespace"), metadata.get("name")
            if (
                isinstance(namespace, str)
                and isinstance(name, str)
                and (scope is None or namespace == scope)
            ):
                fresh[(namespace, name)] = obj
        known = list(self._keysets if kind is KEYSETS else self._maps)
        with self._lock, self.store.batch() as batch:
            for key in known:
                if (scope is None or key[0] == scope) and key not in fresh:
                    self._set(batch, kind, key, None)
            for key, current in fresh.items():
                self._set(batch, kind, key, current)

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


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiError | KubeConfigError):
        return str(error)
    if isinstance(error, aiohttp.ClientError | OSError | TimeoutError):
        return f"{error.__class__.__name__}: {str(error)[:200]}"
    return error.__class__.__name__
