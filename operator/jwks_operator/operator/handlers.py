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
from jwks_operator.core.labelselector import LabelSelector
from jwks_operator.operator.credentials import SharedLogin
from jwks_operator.operator.settings import RELAY_HANDLER
from jwks_operator.operator.wakeups import Waker, Wakers
from jwks_operator.operator.worker import KeySetWorker, Runtime


def build_registry(
    runtime: Runtime, wakers: Wakers, login: SharedLogin, shard: LabelSelector | None = None
) -> kopf.OperatorRegistry:
    """The handlers; with ``shard``, only keysets whose labels match it are reconciled."""
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
        return sum(1 for waker in wakers if waker.owned)

    def owns(body: kopf.Body) -> bool:
        """Whether this process (shard) owns the keyset: ``--keyset-selector`` matches it.

        The API server already filters the keyset watch by the same selector; this check
        is for what slips past it, so that a shard never reconciles another shard's keyset.
        """
        return shard is None or shard.matches(body.get("metadata", {}).get("labels"))

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
        # The daemon outlives a change of ownership: Kopf keeps its finalizer only while a
        # daemon runs, so a keyset that stops matching parks here instead of returning.
        while not stopped:
            waker = wakers.register(namespace or "", name, uid)
            waker.owned = owns(body)

            async def relay_stop(waker: Waker = waker) -> None:
                await stopped.wait()
                waker.stop()

            relay = asyncio.create_task(relay_stop())
            try:
                if waker.owned:
                    await KeySetWorker(runtime, waker, lambda: body, logger).run()
                else:
                    logger.warning(f"Not reconciled here: labels do not match {shard}")
                    while not waker.stopping:  # until Kopf stops it or the labels match
                        await waker.wait(None)
                        waker.take()
            finally:
                relay.cancel()
                wakers.unregister(waker)
            if waker.departed:
                # Kopf has forgotten the keyset (it left the watch) and will not stop it.
                logger.info("Left this operator's watch: no longer reconciled here")
                return

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id=RELAY_HANDLER)
    async def keyset_changed(
        type: str | None, body: kopf.Body, namespace: str | None, name: str, uid: str, **_: Any
    ) -> None:
        waker = wakers.get(namespace or "", name)
        if waker is None:
            return
        if type == "DELETED":
            # Deleted, or relabelled out of this shard's selector: the API server then sends
            # DELETED (with the old labels). Kopf stops daemons only for a deletion it saw
            # coming (deletionTimestamp), so the daemon is stopped here.
            if waker.uid == uid:
                waker.depart()
        elif owns(body) != waker.owned:
            waker.stop()  # the daemon decides again: reconcile, or park
        elif waker.owned:
            waker.keyset_event(body)

    return registry
