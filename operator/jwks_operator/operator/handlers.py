"""The Kopf handlers: one daemon per JwksKeySet, and watch handlers that only wake it.

Thin by design: the daemon runs a ``KeySetWorker`` (which calls ``reconcile``), and the
event handlers decide whether a watch event deserves a wake-up (``wakeups``). None of
them logs an object body: Secret bodies hold private keys. Every handler is ``async``:
Kopf runs sync handlers in threads, and the wake-ups are asyncio objects. No
change-detection handlers (``on.create``/``on.update``) are used, so Kopf never logs diffs
of a JwksKeySet and never writes its "last handled configuration" annotation.
"""

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from jwks_operator.core.contract import (
    GROUP,
    KEYSET_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PLURAL,
    VERSION,
)
from jwks_operator.core.labelselector import LabelSelector
from jwks_operator.operator.credentials import SharedLogin
from jwks_operator.operator.wakeups import Waker, Wakers
from jwks_operator.operator.worker import KeySetWorker, Runtime
from jwks_operator.store.kubernetes import CONFIGMAP, SECRET

MANAGED_LABELS: Mapping[str, Any] = {
    MANAGED_BY_LABEL: MANAGED_BY,
    KEYSET_LABEL: kopf.PRESENT,
}


def build_registry(
    runtime: Runtime, wakers: Wakers, login: SharedLogin, shard: LabelSelector | None = None
) -> kopf.OperatorRegistry:
    """The handlers; with ``shard``, only keysets whose labels match it are reconciled."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def log_in(logger: Any, **_: Any) -> kopf.ConnectionInfo:
        return await login.login(logger)

    @kopf.on.cleanup(registry=registry)
    async def close_client(**_: Any) -> None:
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

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="keyset-changes")
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

    def object_changed(
        kind: str, event_type: str | None, meta: kopf.Meta, namespace: str | None, name: str
    ) -> None:
        keyset = meta.get("labels", {}).get(KEYSET_LABEL)
        waker = wakers.get(namespace or "", keyset) if keyset else None
        if waker is not None:
            waker.object_event(kind, name, event_type, str(meta.get("resourceVersion") or ""))

    # Only metadata is read: the body of a Secret never reaches a log line.
    @kopf.on.event("v1", "secrets", labels=MANAGED_LABELS, registry=registry, id="secret-drift")
    async def secret_changed(
        type: str | None, meta: kopf.Meta, namespace: str | None, name: str, **_: Any
    ) -> None:
        object_changed(SECRET, type, meta, namespace, name)

    @kopf.on.event(
        "v1", "configmaps", labels=MANAGED_LABELS, registry=registry, id="configmap-drift"
    )
    async def configmap_changed(
        type: str | None, meta: kopf.Meta, namespace: str | None, name: str, **_: Any
    ) -> None:
        object_changed(CONFIGMAP, type, meta, namespace, name)

    return registry
