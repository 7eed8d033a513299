"""The few Kubernetes API calls the operator makes itself, over aiohttp, without blocking.

Why not the ``kubernetes`` package's client: it is synchronous, so each call would hold a
worker thread, and fifty keysets reconciling at once would queue behind key generation in
the same small pool. Kopf already speaks aiohttp; this module does the same for the store
and the status writes. Credentials come from a provider (in the operator: the very
``ConnectionInfo`` that Kopf logs in with), which is asked again once on a 401, so that
expiring tokens (exec plugins, projected service-account tokens) are renewed.

A 429 (API priority and fairness rejected the request before running it) and a 5xx that
carries ``Retry-After`` (the API server asking to come back) are retried after the time the
server asked for, with jitter, a few times: the same policy as client-go and Kopf, so that
an overloaded API server is not hammered and a short overload is no failed reconcile.

Error messages carry the API's ``Status`` message, never a request body: a request body
may be a Secret.
"""

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import aiohttp

MERGE_PATCH: Final = "application/merge-patch+json"
_TIMEOUT: Final = aiohttp.ClientTimeout(total=30, sock_connect=10)
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


def collection_path(api_version: str, plural: str, namespace: str) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{quote(namespace)}/{plural}"


class KubeClient:
    """A minimal JSON client: get (404 -> None), create, merge-patch."""

    def __init__(self, provider: EndpointProvider, *, connections: int = 64) -> None:
        self._provider = provider
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._retired: list[aiohttp.ClientSession] = []
        self._endpoint: Endpoint | None = None
        self._lock = asyncio.Lock()

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

    async def _ready(self, stale: Endpoint | None) -> tuple[aiohttp.ClientSession, Endpoint]:
        """The session and endpoint to use; a new login if ``stale`` got a 401.

        Concurrent requests that all got a 401 log in once: only the first finds ``stale``
        still current. A replaced session is closed only with the client, because other
        requests may still be using it.
        """
        async with self._lock:
            if self._endpoint is None or (stale is not None and self._endpoint is stale):
                self._endpoint = await self._provider(stale is not None)
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
    ) -> dict[str, Any]:
        rejected: Endpoint | None = None
        relogged = False
        for attempt in range(RETRY_ATTEMPTS):
            session, endpoint = await self._ready(stale=rejected)
            rejected = None
            headers = dict(endpoint.headers)
            headers["Accept"] = "application/json"
            headers["User-Agent"] = "jwks-operator"
            data = None
            if body is not None:
                headers["Content-Type"] = content_type or "application/json"
                data = json.dumps(body, separators=(",", ":")).encode()
            url = endpoint.server.rstrip("/") + path
            async with session.request(method, url, data=data, headers=headers) as response:
                status, text = response.status, await response.text()
                answer_headers = dict(response.headers)
            if status == 401 and not relogged:
                rejected, relogged = endpoint, True
                continue
            delay = retry_delay(status, answer_headers, attempt)
            if delay is None:
                return _decode(status, text, method, path)
            # Asked to come back later (the connection is released meanwhile).
            _log.info("%s %s: API answered %d; retrying in %.1fs", method, path, status, delay)
            await asyncio.sleep(delay)
        raise KubeApiError(  # the last attempt was a 401 after a fresh login
            401, "Unauthorized", "rejected after a fresh login", method=method, path=path
        )


def _decode(status: int, text: str, method: str, path: str) -> dict[str, Any]:
    """A final answer: the JSON object of a success, else the API's error raised."""
    if status >= 400:
        raise _error(status, text, method, path)
    try:
        result = json.loads(text) if text else {}
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
