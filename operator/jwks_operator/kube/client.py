"""The one Kubernetes API client of the operator's store, the server's source and ``sign``.

Why not the ``kubernetes`` package's client: it is synchronous, so each call would hold a
worker thread, and fifty keysets reconciling at once would queue behind key generation in
the same small pool; its watch has no bookmarks. This client is aiohttp, like Kopf. The
``kubernetes`` package still *finds* the credentials (``kube.config``): a provider hands
this client an ``Endpoint`` and is asked again once on a 401 and every few minutes, so
expiring tokens (exec plugins, projected service-account tokens) are renewed.

Every call goes through one policy:

- a client-side rate limit (``ratelimit``: QPS and burst, the ``--kube-api-qps`` and
  ``--kube-api-burst`` flags), watches included, as client-go does;
- a timeout on every call (``CALL_TIMEOUT``; a watch's stream has its own read timeout);
- 429 (API priority and fairness rejected the request before running it) and a 5xx that
  carries ``Retry-After`` are retried after the time the server asked for, with jitter, a
  few times: the policy of client-go and Kopf, so an overloaded server is not hammered and
  a short overload is no failed reconcile.

Error messages carry the API's ``Status`` message, never a request body: a request body
may be a Secret.
"""

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode

import aiohttp

from jwks_operator.kube.ratelimit import RateLimiter

MERGE_PATCH: Final = "application/merge-patch+json"
CALL_TIMEOUT: Final = 30.0
"""Seconds one call (all its retries excepted) may take, connecting included."""
_TIMEOUT: Final = aiohttp.ClientTimeout(total=CALL_TIMEOUT, sock_connect=10)
DEFAULT_QPS: Final = 100.0
DEFAULT_BURST: Final = 300
"""The rate limit's defaults (``--kube-api-qps``/``--kube-api-burst``); see docs/operator.md."""
ENDPOINT_MAX_AGE: Final = 300.0
"""Seconds after which the credentials are looked up again even without a 401 (a
projected token file is rotated by the kubelet well before its old token expires)."""
WATCH_LINE_LIMIT: Final = 16 * 1024 * 1024
_MESSAGE_LIMIT: Final = 300
NAMESPACE_TERMINATING: Final = "NamespaceTerminating"
RETRY_ATTEMPTS: Final = 5
"""Attempts of one call while the API server answers 429 (or 5xx with Retry-After)."""
RETRY_AFTER_MAX: Final = 10.0
"""The longest wait honoured from a Retry-After header, in seconds."""
_RETRY_DEFAULT: Final = 1.0

_log = logging.getLogger("jwks_operator.kubeclient")


def retry_delay(status: int, headers: Mapping[str, str], attempt: int) -> float | None:
    """Seconds to wait before trying again, or None when the answer is final.

    429 is always retried (APF rejected it unexecuted); a 5xx only when the server sent
    Retry-After (it did not run the request, or says it is safe to retry). The wait is
    the server's Retry-After (capped) or an exponential default, plus up to 25% jitter so
    that many clients rejected together do not come back together.
    """
    retry_after = headers.get("Retry-After")
    if status != 429 and not (status >= 500 and retry_after):
        return None
    if attempt + 1 >= RETRY_ATTEMPTS:
        return None
    try:
        base = min(max(float(retry_after or ""), 0.0), RETRY_AFTER_MAX)
    except ValueError:
        base = min(_RETRY_DEFAULT * 2**attempt, RETRY_AFTER_MAX)
    return base * (1 + random.random() / 4)  # noqa: S311 (jitter, not a secret)


@dataclass(frozen=True)
class Endpoint:
    """Where the API server is and how to authenticate to it."""

    server: str
    headers: Mapping[str, str] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    """The name the server's certificate must carry when it is not the URL's host
    (a kubeconfig's ``tls-server-name``)."""


EndpointProvider = Callable[[bool], Awaitable[Endpoint]]
"""``provider(refresh)``: the current endpoint; ``refresh=True`` after a 401 logs in again."""


class KubeApiError(Exception):
    """A failed API call: HTTP status, the API's reason (``Conflict``...) and its message."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        method: str,
        path: str,
        causes: tuple[str, ...] = (),
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message[:_MESSAGE_LIMIT]
        self.causes = causes
        """The ``reason`` of each ``details.causes`` entry: enum words, safe to keep even
        where the message is withheld (a Secret write)."""
        super().__init__(f"{method} {path}: {status} {reason}: {self.message}")

    @property
    def namespace_terminating(self) -> bool:
        """403 from the NamespaceLifecycle admission plugin: the namespace is being deleted,
        so nothing may be created in it. Not a missing permission, and nothing to repair:
        the keyset goes with its namespace."""
        return self.status == 403 and NAMESPACE_TERMINATING in self.causes

    @property
    def conflict(self) -> bool:
        """409: a stale resourceVersion or a name taken meanwhile; worth a quick retry."""
        return self.status == 409


def object_path(
    api_version: str, plural: str, namespace: str, name: str, subresource: str = ""
) -> str:
    """The URL path of one namespaced object (``v1`` is the core group)."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{quote(namespace)}/{plural}/{quote(name)}"
    return f"{path}/{subresource}" if subresource else path


def collection_path(api_version: str, plural: str, namespace: str | None) -> str:
    """The URL path of a collection, in one namespace or (``None``) in all of them."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace is None:
        return f"{prefix}/{plural}"
    return f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}"


class WatchExpired(Exception):
    """410 Gone: the resourceVersion a watch or a paged list asked for is compacted away."""


class KubeClient:
    """A JSON client: get (404 -> None), create, merge-patch, paged list and watch."""

    def __init__(
        self,
        provider: EndpointProvider,
        *,
        connections: int = 64,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        user_agent: str = "jwks-operator",
    ) -> None:
        self._provider = provider
        self._connections = connections
        self.limiter = RateLimiter(qps, burst)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._retired: list[aiohttp.ClientSession] = []
        self._endpoint: Endpoint | None = None
        self._endpoint_time = 0.0
        self._lock = asyncio.Lock()
        self.requests = 0
        """Requests sent (retries included): the tests' and the bench's count."""

    async def close(self) -> None:
        for session in [*self._retired, self._session]:
            if session is not None:
                await session.close()
        self._retired.clear()
        self._session = None

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", path)
        except KubeApiError as error:
            if error.status == 404:
                return None
            raise

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._request("POST", path, body, "application/json")

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._request("PATCH", path, body, MERGE_PATCH)

    async def list_page(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One page of a list; 410 (an expired ``continue`` token) raises WatchExpired."""
        try:
            return await self._request("GET", f"{path}?{urlencode(dict(params))}", decode=True)
        except KubeApiError as error:
            if error.status == 410:
                raise WatchExpired(str(error)) from None
            raise

    async def watch(
        self, path: str, params: Mapping[str, str], *, read_timeout: float
    ) -> AsyncIterator[bytes]:
        """The lines of a watch stream, as they arrive (each one JSON event).

        ``params`` carry ``watch=true`` and the ``resourceVersion`` to start from. A 410
        answer raises WatchExpired; another error answer raises KubeApiError. The stream
        ends when the server closes it (``timeoutSeconds``); a stream that stays silent for
        ``read_timeout`` seconds (no event, no bookmark) is dropped as dead.
        """
        rejected: Endpoint | None = None
        for _attempt in range(2):  # a second time only after a 401 and a fresh login
            session, endpoint = await self._ready(stale=rejected)
            await self.limiter.acquire()
            self.requests += 1
            url = f"{endpoint.server.rstrip('/')}{path}?{urlencode(dict(params))}"
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
            async with session.get(
                url,
                headers=self._headers(endpoint),
                timeout=timeout,
                server_hostname=endpoint.server_hostname,
            ) as response:
                if response.status == 401 and rejected is None:
                    rejected = endpoint
                    continue
                if response.status == 410:
                    raise WatchExpired(f"GET {path}: 410 Gone")
                if response.status != 200:
                    raise _error(response.status, await response.text(), "GET", path)
                pending = bytearray()
                async for chunk in response.content.iter_any():
                    pending += chunk
                    while (newline := pending.find(b"\n")) >= 0:
                        line = bytes(pending[:newline])
                        del pending[: newline + 1]
                        if line.strip():
                            yield line
                    if len(pending) > WATCH_LINE_LIMIT:
                        raise KubeApiError(
                            200,
                            "BadResponse",
                            "watch event over the line limit",
                            method="GET",
                            path=path,
                        )
                return
        raise KubeApiError(
            401, "Unauthorized", "rejected after a fresh login", method="GET", path=path
        )

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = dict(endpoint.headers)
        headers["Accept"] = "application/json"
        headers["User-Agent"] = self._user_agent
        return headers

    async def _ready(self, stale: Endpoint | None) -> tuple[aiohttp.ClientSession, Endpoint]:
        """The session and endpoint to use; a new login if ``stale`` got a 401.

        Concurrent requests that all got a 401 log in once: only the first finds ``stale``
        still current. A replaced session is closed only with the client, because other
        requests may still be using it.
        """
        async with self._lock:
            aged = time.monotonic() - self._endpoint_time > ENDPOINT_MAX_AGE
            if self._endpoint is None or (stale is not None and self._endpoint is stale) or aged:
                self._endpoint = await self._provider(stale is not None or aged)
                self._endpoint_time = time.monotonic()
                if self._session is not None:
                    self._retired.append(self._session)
                    self._session = None
            if self._session is None:
                connector = aiohttp.TCPConnector(
                    limit=self._connections,
                    ssl=self._endpoint.ssl_context if self._endpoint.ssl_context else True,
                )
                self._session = aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT)
            return self._session, self._endpoint

    async def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        content_type: str | None = None,
        *,
        decode: bool = False,
    ) -> dict[str, Any]:
        """One call with the retry policy; ``decode``: parse the answer off the event loop
        (a page of a list can be megabytes)."""
        rejected: Endpoint | None = None
        relogged = False
        for attempt in range(RETRY_ATTEMPTS):
            session, endpoint = await self._ready(stale=rejected)
            rejected = None
            headers = self._headers(endpoint)
            data = None
            if body is not None:
                headers["Content-Type"] = content_type or "application/json"
                data = json.dumps(body, separators=(",", ":")).encode()
            url = endpoint.server.rstrip("/") + path
            await self.limiter.acquire()
            self.requests += 1
            async with session.request(
                method,
                url,
                data=data,
                headers=headers,
                server_hostname=endpoint.server_hostname,
            ) as response:
                status, raw = response.status, await response.read()
                answer_headers = dict(response.headers)
            if status == 401 and not relogged:
                rejected, relogged = endpoint, True
                continue
            delay = retry_delay(status, answer_headers, attempt)
            if delay is None:
                if decode and status < 400:
                    return await asyncio.to_thread(_decode, status, raw, method, path)
                return _decode(status, raw, method, path)
            # Asked to come back later (the connection is released meanwhile).
            _log.info("%s %s: API answered %d; retrying in %.1fs", method, path, status, delay)
            await asyncio.sleep(delay)
        raise KubeApiError(  # the last attempt was a 401 after a fresh login
            401, "Unauthorized", "rejected after a fresh login", method=method, path=path
        )


def _decode(status: int, raw: bytes, method: str, path: str) -> dict[str, Any]:
    """A final answer: the JSON object of a success, else the API's error raised."""
    if status >= 400:
        raise _error(status, raw.decode("utf-8", "replace"), method, path)
    try:
        result = json.loads(raw) if raw else {}
    except ValueError:
        raise KubeApiError(status, "BadResponse", "not JSON", method=method, path=path) from None
    if not isinstance(result, dict):
        raise KubeApiError(status, "BadResponse", "not an object", method=method, path=path)
    return result


def _error(status: int, text: str, method: str, path: str) -> KubeApiError:
    reason, message = "", text
    causes: tuple[str, ...] = ()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        reason = str(document.get("reason") or "")
        message = str(document.get("message") or "")
        details = document.get("details")
        found = details.get("causes") if isinstance(details, dict) else None
        if isinstance(found, list):
            causes = tuple(
                str(cause["reason"])
                for cause in found
                if isinstance(cause, dict) and isinstance(cause.get("reason"), str)
            )
    if method != "GET" and "/secrets" in path:
        # An admission webhook or a proxy may quote the request in its answer; for a
        # Secret write that would be key material on its way to an Event and a log line.
        message = "(the API's message is not shown for Secret writes)"
    elif "PRIVATE KEY" in message:
        message = "(the API's message is not shown: it quotes key material)"
    return KubeApiError(
        status, reason or f"HTTP{status}", message, method=method, path=path, causes=causes
    )
