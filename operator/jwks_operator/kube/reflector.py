"""List, then watch one collection for as long as it runs: client-go's reflector, in asyncio.

The loop, per collection (one namespace or all, optionally a label selector):

1. list, paged (``limit``), and deliver the difference to what was known as ADDED /
   MODIFIED / DELETED changes (the first list delivers everything as ADDED);
2. watch from the list's resourceVersion, with bookmarks: every event and every
   BOOKMARK moves the resourceVersion on, so a stream that ends (the server's
   ``timeoutSeconds``, a dropped connection, an error) is simply watched again from where
   it stopped, without a list;
3. list again only on 410 Gone (the resourceVersion was compacted away: events were
   missed, so only a list can say what changed).

Why not re-list after every stream end (what the JWKS server did before): a list costs
the API server a read of every object in the selection, and with thousands of keysets
and several replicas every few minutes that is most of the load we put on it. Failures
back off exponentially with jitter, and the consumer keeps what it has meanwhile.

``deliver(changes)`` is awaited for each list (all its differences at once) and each
event (one change); ``synced`` is set after the first list was delivered.
"""

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from jwks_operator.kube.client import KubeApiError, KubeClient, WatchExpired

_log = logging.getLogger("jwks_operator.reflector")

ADDED: Final = "ADDED"
MODIFIED: Final = "MODIFIED"
DELETED: Final = "DELETED"
_INLINE_DECODE: Final = 64 * 1024
"""Watch lines up to this size are decoded on the event loop (tens of microseconds);
larger ones in a thread."""


@dataclass(frozen=True, slots=True)
class Change:
    type: str
    """ADDED, MODIFIED or DELETED."""
    obj: Mapping[str, Any]
    """The object; for a DELETED found by a re-list, only its metadata's name and
    namespace (the list no longer has it)."""

    @property
    def key(self) -> tuple[str, str]:
        return object_key(self.obj)


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


@dataclass(frozen=True, slots=True)
class ReflectorSettings:
    page_size: int = 500
    watch_timeout: int = 300
    """The server-side ``timeoutSeconds`` of a watch, stretched by up to 2x at random so
    that many watches started together do not all end (and resume) together."""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    bookmark_silence: float = 90.0
    """Seconds of silence (no event, no bookmark: the API sends one about every minute)
    after which a watch is taken for dead, beyond its own timeout."""


Deliver = Callable[[Sequence[Change]], Awaitable[None]]


class Reflector:
    def __init__(
        self,
        client: KubeClient,
        path: str,
        deliver: Deliver,
        *,
        title: str,
        selector: str | None = None,
        keep: Callable[[Mapping[str, Any]], bool] | None = None,
        settings: ReflectorSettings | None = None,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.title = title
        self._deliver = deliver
        self._selector = selector
        self._keep = keep
        """A client-side filter (namespace globs; the label checked again)."""
        self.settings = settings or ReflectorSettings()
        self._on_restart = on_restart
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._versions: dict[tuple[str, str], str] = {}
        self.lists = 0
        self.watches = 0

    async def run(self) -> None:
        backoff = self.settings.backoff_initial
        while True:
            try:
                if not self.resource_version:
                    await self._list()
                reason = await self._watch()
                backoff = self.settings.backoff_initial
                _log.debug("watch of %s ended (%s); resuming", self.title, reason)
                self._restarted(reason)
            except asyncio.CancelledError:
                raise
            except WatchExpired:
                _log.info("watch of %s expired (410); listing again", self.title)
                self.resource_version = ""
                self._restarted("expired")
            except Exception as error:
                self._restarted("error")
                delay = backoff * (0.5 + random.random() / 2)  # noqa: S311 (jitter)
                _log.warning(
                    "%s: %s; %s, retrying in %.1fs",
                    self.title,
                    describe(error),
                    "keeping what was listed"
                    if self.synced.is_set()
                    else "nothing listed yet, not ready",
                    delay,
                )
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.settings.backoff_max)

    def _restarted(self, reason: str) -> None:
        if self._on_restart is not None:
            self._on_restart(reason)

    def _selected(self, obj: Mapping[str, Any]) -> bool:
        return self._keep is None or self._keep(obj)

    async def _list(self) -> None:
        items: list[Mapping[str, Any]] = []
        token = ""
        while True:
            params = {"limit": str(self.settings.page_size)}
            if self._selector:
                params["labelSelector"] = self._selector
            if token:
                params["continue"] = token
            page = await self.client.list_page(self.path, params)
            items.extend(item for item in page.get("items") or () if isinstance(item, dict))
            metadata = page.get("metadata") or {}
            token = str(metadata.get("continue") or "")
            if not token:
                resource_version = str(metadata.get("resourceVersion") or "")
                break
        self.lists += 1
        fresh = {object_key(item): item for item in items if self._selected(item)}
        changes: list[Change] = []
        for key in [key for key in self._versions if key not in fresh]:
            del self._versions[key]
            changes.append(Change(DELETED, {"metadata": {"namespace": key[0], "name": key[1]}}))
        for key, item in fresh.items():
            version = _version(item)
            before = self._versions.get(key)
            if before != version or not self.synced.is_set():
                changes.append(Change(ADDED if before is None else MODIFIED, item))
            self._versions[key] = version
        await self._deliver(changes)
        self.resource_version = resource_version
        self.synced.set()

    async def _watch(self) -> str:
        timeout = int(self.settings.watch_timeout * (1 + random.random()))  # noqa: S311
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
            "resourceVersion": self.resource_version,
        }
        if self._selector:
            params["labelSelector"] = self._selector
        self.watches += 1
        read_timeout = min(timeout + 30.0, self.settings.bookmark_silence)
        try:
            async for line in self.client.watch(self.path, params, read_timeout=read_timeout):
                if len(line) > _INLINE_DECODE:
                    event = await asyncio.to_thread(json.loads, line)
                else:
                    event = json.loads(line)
                await self._event(event)
        except TimeoutError:
            return "silent"  # no event and no bookmark for too long: resumed like any end
        except aiohttp.ClientPayloadError:
            return "dropped"  # the connection broke mid-stream (an API server restart)
        return "closed"

    async def _event(self, event: Mapping[str, Any]) -> None:
        event_type = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if event_type == "ERROR":
            if obj.get("code") == 410:
                raise WatchExpired(f"{self.title}: {str(obj.get('message'))[:200]}")
            raise KubeApiError(
                int(obj.get("code") or 500),
                str(obj.get("reason") or "WatchError"),
                str(obj.get("message") or ""),
                method="WATCH",
                path=self.path,
            )
        version = _version(obj)
        if event_type == "BOOKMARK":
            if version:
                self.resource_version = version
            return
        if event_type not in (ADDED, MODIFIED, DELETED):
            return
        key = object_key(obj)
        selected = event_type != DELETED and self._selected(obj)
        if selected:
            known = key in self._versions
            self._versions[key] = version
            change = Change(MODIFIED if known else ADDED, obj)
        elif self._versions.pop(key, None) is not None:
            change = Change(DELETED, obj)
        else:
            change = None
        if change is not None:
            await self._deliver([change])
        if version:
            self.resource_version = version


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def describe(error: BaseException) -> str:
    """A bounded one-line description of a failed list or watch."""
    if isinstance(error, KubeApiError):
        return str(error)
    text = str(error)[:200]
    return f"{error.__class__.__name__}: {text}" if text else error.__class__.__name__
