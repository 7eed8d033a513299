"""The client-side half of ``--keyset-selector``: the handlers themselves check the labels.

The API server filters the keyset watch by the selector (tests/e2e_cluster/test_shards.py
shows it), so with a real server a shard never receives another shard's keyset. These
tests call the registered Kopf handlers directly with bodies that slipped past that filter:
the daemon of a keyset whose labels do not match must not reconcile it (it parks, so
that Kopf keeps the finalizer), must start reconciling once the labels match, and must end
when the keyset leaves the watch (a DELETED event, which Kopf itself does not turn into a
daemon stop unless the object is being deleted).
"""

import asyncio
import logging
from typing import Any, cast

import kopf
from kopf._core.intents.stoppers import DaemonStopper, DaemonStoppingReason

from jwks_operator.core.contract import KEYSET_LABEL, MANAGED_SELECTOR
from jwks_operator.core.labelselector import parse_selector
from jwks_operator.kube.cache import ObjectCache
from jwks_operator.kube.client import KubeClient
from jwks_operator.operator.credentials import SharedLogin
from jwks_operator.operator.handlers import build_registry
from jwks_operator.operator.wakeups import Wakers
from jwks_operator.operator.worker import Runtime
from jwks_operator.store.kubernetes import PLURALS

NS, NAME, UID = "identity", "auth", "uid-1"


def body(shard: str | None) -> kopf.Body:
    labels = {"jwks.dev/shard": shard} if shard else {}
    meta = {"namespace": NS, "name": NAME, "uid": UID, "generation": 1, "labels": labels}
    return kopf.Body(cast(Any, {"metadata": meta, "spec": {"algorithm": "ES256"}}))


def handler(registry: kopf.OperatorRegistry, id: str) -> Any:
    handlers = [
        *registry._spawning.get_all_handlers(),
        *registry._watching.get_all_handlers(),
        *registry._activities.get_all_handlers(),
    ]
    (found,) = [h for h in handlers if h.id == id]
    return found.fn


class Shard:
    """One shard's handlers over one keyset whose body the test changes, as Kopf would."""

    def __init__(self) -> None:
        self.wakers = Wakers()
        client = cast(KubeClient, None)  # never used: no reconcile gets past the semaphore
        cache = ObjectCache(
            client, PLURALS, selector=MANAGED_SELECTOR, index_label=KEYSET_LABEL, namespaces=[NS]
        )
        cache.synced.set()  # as if listed (empty): the daemons may start
        # No reconciliation can get past the semaphore: one that starts is counted, and stays.
        self.runtime = Runtime(
            client=client,
            cache=cache,
            post_event=lambda *_: None,
            slots=asyncio.Semaphore(0),
        )
        registry = build_registry(
            self.runtime, self.wakers, cast(SharedLogin, None), parse_selector("jwks.dev/shard=a")
        )
        self.daemon = handler(registry, "keyset")
        self.event = handler(registry, "keyset-changes")
        self.probe = handler(registry, "keysets")
        self.stopper = DaemonStopper()
        self.body = body("b")
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(
            self.daemon(
                body=self.body,
                namespace=NS,
                name=NAME,
                uid=UID,
                stopped=self.stopper.async_waiter,
                logger=logging.getLogger("test"),
            )
        )

    async def relabel(self, shard: str | None, type: str = "MODIFIED") -> None:
        self.body._replace_with(body(shard))
        await self.event(type=type, body=self.body, namespace=NS, name=NAME, uid=UID)
        await asyncio.sleep(0.05)

    @property
    def reconciles(self) -> int:
        return self.runtime.reconciles.get(f"{NS}/{NAME}", 0)


async def test_a_keyset_of_another_shard_is_not_reconciled_until_it_matches() -> None:
    shard = Shard()
    shard.start()
    await asyncio.sleep(0.05)
    waker = shard.wakers.get(NS, NAME)
    assert waker is not None and not waker.owned
    assert shard.reconciles == 0 and await shard.probe() == 0
    await shard.relabel("c")  # still not ours: still parked
    assert shard.reconciles == 0 and await shard.probe() == 0
    await shard.relabel("a")  # ours now: the daemon reconciles it
    assert shard.reconciles == 1 and await shard.probe() == 1
    assert shard.task is not None and not shard.task.done()
    shard.task.cancel()


async def test_a_keyset_that_leaves_the_watch_ends_its_daemon() -> None:
    shard = Shard()
    shard.start()
    await asyncio.sleep(0.05)
    await shard.relabel("b", type="DELETED")
    assert shard.task is not None
    await asyncio.wait_for(shard.task, 1)  # returned on its own: Kopf would never stop it
    assert shard.wakers.get(NS, NAME) is None and shard.reconciles == 0


async def test_a_parked_daemon_stops_with_kopf() -> None:
    shard = Shard()
    shard.start()
    await asyncio.sleep(0.05)
    shard.stopper.set(reason=DaemonStoppingReason.RESOURCE_DELETED)
    assert shard.task is not None
    await asyncio.wait_for(shard.task, 1)
    assert shard.reconciles == 0
