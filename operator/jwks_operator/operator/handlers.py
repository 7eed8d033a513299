"""The Kopf handlers: one daemon per JwksKeySet, a keyset watch that only wakes it, and the
start and stop of the operator's cache of its Secrets and ConfigMaps.

Thin by design: the daemon runs a ``KeySetWorker`` (which calls ``reconcile``), and the
event handler decides whether a watch event deserves a wake-up (``wakeups``). Secrets and
ConfigMaps are not watched through Kopf: the cache (``kube.cache``) lists and watches
them and wakes daemons itself (``Wakers.object_changed``), so the per-event cost is a
dictionary update, not a Kopf handler cycle. None of them logs an object body: Secret
bodies hold private keys. Every handler is ``async``:
Kopf runs sync handlers in threads, and the wake-ups are asyncio objects. No
change-detection handlers (``on.create``/``on.update``) are used, so Kopf never logs diffs
of a JwksKeySet and never writes its "last handled configuration" annotation.
"""

import asyncio
from typing import Any

import kopf

from jwks_operator.core.contract import GROUP, PLURAL, VERSION
from jwks_operator.operator.credentials import SharedLogin
from jwks_operator.operator.settings import RELAY_HANDLER
from jwks_operator.operator.wakeups import Wakers
from jwks_operator.operator.worker import KeySetWorker, Runtime


def build_registry(runtime: Runtime, wakers: Wakers, login: SharedLogin) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    cache_task: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry)
    async def log_in(**_: Any) -> kopf.ConnectionInfo:
        return await login.login()

    @kopf.on.startup(registry=registry)
    async def start_cache(**_: Any) -> None:
        cache_task.append(asyncio.create_task(runtime.cache.run(), name="object-cache"))

    @kopf.on.cleanup(registry=registry)
    async def close_client(**_: Any) -> None:
        for task in cache_task:
            task.cancel()
        await asyncio.gather(*cache_task, return_exceptions=True)
        await runtime.client.close()

    @kopf.on.probe(registry=registry, id="keysets")
    async def keysets(**_: Any) -> int:
        return len(wakers)

    @kopf.daemon(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="keyset",
        cancellation_backoff=5.0,
        cancellation_timeout=5.0,
    )
    async def keyset_daemon(
        body: kopf.Body,
        namespace: str | None,
        name: str,
        uid: str,
        stopped: kopf.DaemonStopped,
        logger: Any,
        **_: Any,
    ) -> None:
        waker = wakers.register(namespace or "", name, uid)

        async def relay_stop() -> None:
            await stopped.wait()
            waker.stop()

        relay = asyncio.create_task(relay_stop())
        try:
            await KeySetWorker(runtime, waker, lambda: body, logger).run()
        finally:
            relay.cancel()
            wakers.unregister(waker)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id=RELAY_HANDLER)
    async def keyset_changed(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
        waker = wakers.get(namespace or "", name)
        if waker is not None:
            waker.keyset_event(body)

    return registry
