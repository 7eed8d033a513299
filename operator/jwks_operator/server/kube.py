"""The Kubernetes side of ``serve``: labelled ConfigMaps, listed then watched, into the store.

The kubeconfig is found as kubectl finds it (``--kubeconfig``, ``KUBECONFIG``,
``~/.kube/config``, then the in-cluster ServiceAccount) by the ``kubernetes`` package's
loader; the HTTP itself is aiohttp, so a slow API server never blocks the event loop that
answers requests. Only ``configmaps`` URLs are ever requested: the server's ServiceAccount
has no access to Secrets and needs none.

Per scope (each ``--namespace``, or the whole cluster) the loop is the informer's: list
(paginated) with ``labelSelector=SELECTOR`` (keyset label and managed-by), apply the
difference to the store, watch
from the list's resourceVersion; on 410 Gone, a closed or dropped stream, re-list; on an
error, back off exponentially (with jitter) and retry, while the last good snapshot keeps
being served. The label is also checked client-side, so an API (or emulator) that ignores
the selector cannot feed unlabelled ConfigMaps in. JSON decoding and entry building run in
worker threads.

``ConfigMapSource(store, connection, *, namespaces=None, settings=SourceSettings())``:
``await run()`` forever (cancel to stop); ``ready`` is set (and ``store.mark_ready()``
called) once every scope's first list has been applied.
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

from jwks_operator.core.contract import KEYSET_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from jwks_operator.core.timefmt import parse_time
from jwks_operator.server.runner import settle_heap
from jwks_operator.server.snapshot import SnapshotStore, StoreBatch

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
class _Published:
    keyset: str
    data: Mapping[str, str]
    annotations: Mapping[str, str]
    modified: float | None
    created: str = ""


class _WatchExpired(Exception):
    pass


class ConfigMapSource:
    """Keeps a SnapshotStore equal to the labelled ConfigMaps; see the module docstring."""

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
        self._listed: set[str | None] = set()
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], _Published] = {}
        self._claims: dict[tuple[str, str], set[str]] = {}

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context or False)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            asyncio.TaskGroup() as group,
        ):
            for scope in self.scopes:
                group.create_task(self._run_scope(session, scope))

    # -- the informer loop --------------------------------------------------------------

    async def _run_scope(self, session: aiohttp.ClientSession, scope: str | None) -> None:
        where = scope or "all namespaces"
        backoff = self.settings.backoff_initial
        metrics = self.store.metrics
        listed = False  # until a first list succeeds there is no snapshot to fall back on
        while True:
            try:
                resource_version = await self._list(session, scope)
                listed = True
                backoff = self.settings.backoff_initial
                reason = await self._watch(session, scope, resource_version)
                logger.info("watch of ConfigMaps in %s ended (%s); re-listing", where, reason)
                metrics.count_watch_restart(reason)
                await asyncio.sleep(self.settings.relist_delay)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                metrics.count_watch_restart("error")
                delay = backoff * (0.5 + random.random() / 2)  # noqa: S311 (jitter)
                logger.warning(
                    "ConfigMaps in %s: %s; %s, retrying in %.1fs",
                    where,
                    _describe(error),
                    "serving the last snapshot" if listed else "nothing listed yet, not ready",
                    delay,
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.settings.backoff_max)

    def _url(self, scope: str | None) -> str:
        if scope is None:
            return f"{self.connection.server}/api/v1/configmaps"
        return f"{self.connection.server}/api/v1/namespaces/{quote(scope, safe='')}/configmaps"

    async def _headers(self) -> dict[str, str]:
        headers = await asyncio.to_thread(self.connection.auth_headers)
        headers["accept"] = "application/json"
        return headers

    async def _list(self, session: aiohttp.ClientSession, scope: str | None) -> str:
        items: list[dict[str, Any]] = []
        resource_version = ""
        token = ""
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        while True:
            params = {"labelSelector": SELECTOR, "limit": str(self.settings.page_size)}
            if token:
                params["continue"] = token
            async with session.get(
                self._url(scope),
                params=params,
                headers=await self._headers(),
                timeout=timeout,
                server_hostname=self.connection.server_hostname,
            ) as response:
                if response.status != 200:
                    raise ApiError(f"list answered HTTP {response.status}")
                raw = await response.read()
            page = await asyncio.to_thread(json.loads, raw)
            items.extend(page.get("items") or ())
            metadata = page.get("metadata") or {}
            resource_version = str(metadata.get("resourceVersion") or "")
            token = str(metadata.get("continue") or "")
            if not token:
                break
        await asyncio.to_thread(self._replace_scope, scope, items)
        if scope not in self._listed:
            self._listed.add(scope)
            if len(self._listed) == len(self.scopes):
                self.store.mark_ready()
                settle_heap()
                self.ready.set()
                logger.info("initial list loaded: %d keysets", len(self.store.snapshot.entries))
        return resource_version

    async def _watch(
        self, session: aiohttp.ClientSession, scope: str | None, resource_version: str
    ) -> str:
        params = {
            "watch": "true",
            "labelSelector": SELECTOR,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.settings.watch_timeout),
        }
        if resource_version and resource_version != "...":
            params["resourceVersion"] = resource_version
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.settings.request_timeout,
            sock_read=self.settings.watch_timeout + 30,
        )
        async with session.get(
            self._url(scope),
            params=params,
            headers=await self._headers(),
            timeout=timeout,
            server_hostname=self.connection.server_hostname,
        ) as response:
            if response.status == 410:
                return "expired"
            if response.status != 200:
                raise ApiError(f"watch answered HTTP {response.status}")
            pending = bytearray()
            try:
                async for chunk in response.content.iter_any():
                    pending += chunk
                    while (newline := pending.find(b"\n")) >= 0:
                        line = bytes(pending[:newline])
                        del pending[: newline + 1]
                        if line.strip():
                            await asyncio.to_thread(self._handle_event_line, line)
                    if len(pending) > self.settings.max_line:
                        raise ApiError("watch event larger than the line limit")
            except _WatchExpired:
                return "expired"
            except aiohttp.ClientPayloadError:
                return "dropped"
        return "closed"

    # -- bookkeeping (worker threads, serialised by the lock) -----------------------------

    def _handle_event_line(self, line: bytes) -> None:
        event = json.loads(line)
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _WatchExpired()
            raise ApiError(f"watch error {obj.get('code')}: {str(obj.get('reason'))[:80]}")
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: nothing to apply (every end re-lists)
        metadata = obj.get("metadata") or {}
        namespace, name = metadata.get("namespace"), metadata.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return
        published = None if kind == "DELETED" else _published(obj)
        with self._lock, self.store.batch() as batch:
            self._set(batch, (namespace, name), published)

    def _replace_scope(self, scope: str | None, items: list[dict[str, Any]]) -> None:
        fresh: dict[tuple[str, str], _Published | None] = {}
        for obj in items:
            metadata = obj.get("metadata") or {}
            namespace, name = metadata.get("namespace"), metadata.get("name")
            if (
                isinstance(namespace, str)
                and isinstance(name, str)
                and (scope is None or namespace == scope)
            ):
                fresh[(namespace, name)] = _published(obj)
        with self._lock, self.store.batch() as batch:
            for key in list(self._objects):
                if (scope is None or key[0] == scope) and key not in fresh:
                    self._set(batch, key, None)
            for key, published in fresh.items():
                self._set(batch, key, published)

    def _set(self, batch: StoreBatch, key: tuple[str, str], published: "_Published | None") -> None:
        namespace, configmap = key
        before = self._objects.pop(key, None)
        if before is not None:
            self._claims[(namespace, before.keyset)].discard(configmap)
        if published is not None:
            self._objects[key] = published
            self._claims.setdefault((namespace, published.keyset), set()).add(configmap)
            self._resolve(batch, namespace, published.keyset)
        if before is not None and (published is None or published.keyset != before.keyset):
            self._resolve(batch, namespace, before.keyset)

    def _resolve(self, batch: StoreBatch, namespace: str, keyset: str) -> None:
        claims = self._claims.get((namespace, keyset))
        if not claims:
            self._claims.pop((namespace, keyset), None)
            batch.remove(namespace, keyset)
            return
        # Several ConfigMaps claiming one keyset: the oldest wins (then the name), the same
        # on every replica, so a ConfigMap added later cannot take over a keyset's JWKS.
        configmap = min(claims, key=lambda name: (self._objects[(namespace, name)].created, name))
        if len(claims) > 1:
            logger.warning(
                "keyset %s/%s is claimed by ConfigMaps %s; serving %s",
                namespace,
                keyset,
                ", ".join(sorted(claims)),
                configmap,
            )
        published = self._objects[(namespace, configmap)]
        batch.apply(
            namespace,
            keyset,
            published.data,
            published.annotations,
            modified=published.modified,
        )


def _published(obj: Mapping[str, Any]) -> _Published | None:
    """The served part of a ConfigMap, or None when it is not (or no longer) labelled."""
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    keyset = labels.get(KEYSET_LABEL)
    if not isinstance(keyset, str) or not keyset or labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
        return None
    data = {k: v for k, v in (obj.get("data") or {}).items() if isinstance(v, str)}
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if isinstance(v, str)
    }
    created = metadata.get("creationTimestamp")
    return _Published(
        keyset, data, annotations, _modified(metadata), created if isinstance(created, str) else ""
    )


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
