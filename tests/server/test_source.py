"""The keyset and ConfigMap source in process: pagination, trust, relabelling, watch errors.

(The list+watch loop itself, resumption and 410, is tested in tests/kube/test_reflector.py;
kubeconfig loading in tests/kube/test_config.py.)

The end-to-end tests drive the real command; these reach the parts a command line cannot
set (page size, backoff) and the event handling rules, against the same emulated API.
"""

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from jwks_operator.core.contract import KEYSET_LABEL, KEYSET_UID_ANNOTATION
from jwks_operator.kube.client import KubeClient
from jwks_operator.kube.reflector import Change, ReflectorSettings
from jwks_operator.server.kube import CONFIGMAPS, KEYSETS, SELECTOR, ConfigMapSource
from jwks_operator.server.snapshot import SnapshotStore
from tests.server.support import configmap, configmap_data, keyset_body, public_jwk, publish
from tests.support.cluster import EmulatedCluster

FAST = ReflectorSettings(backoff_initial=0.05, backoff_max=0.2, page_size=2)


@pytest.fixture
def client(kube_client: KubeClient) -> KubeClient:
    return kube_client


@pytest.fixture
async def running(client: KubeClient) -> AsyncIterator[tuple[ConfigMapSource, SnapshotStore]]:
    store = SnapshotStore()
    source = ConfigMapSource(store, client, settings=FAST)
    task = asyncio.create_task(source.run())
    yield source, store
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def until(condition: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_paginated_first_list_then_ready(
    cluster: EmulatedCluster, client: KubeClient, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    for index in range(5):
        await asyncio.to_thread(
            publish, cluster, f"k{index}", configmap_data(public_jwk(ec_private))
        )
    await asyncio.to_thread(cluster.create, configmap("plain", None, {"jwks.json": "{}"}))
    store = SnapshotStore()
    source = ConfigMapSource(store, client, settings=FAST)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.ready.wait(), 10)
        assert store.snapshot.ready
        assert sorted(name for _, name in store.snapshot.entries) == [f"k{i}" for i in range(5)]
        lists = [r for r in await asyncio.to_thread(cluster.request_log) if r.verb == "list"]
        maps = [r for r in lists if r.resource == "configmaps"]
        assert len(maps) >= 3  # five objects in pages of two
        assert all(r.query.get("labelSelector") == SELECTOR for r in maps)
        assert len([r for r in lists if r.resource == "jwkskeysets"]) >= 3
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_configmaps_not_managed_by_the_operator_are_not_served(
    cluster: EmulatedCluster,
    running: tuple[ConfigMapSource, SnapshotStore],
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    source, store = running
    await asyncio.wait_for(source.ready.wait(), 10)
    await asyncio.to_thread(cluster.create, keyset_body("victim"))
    foreign = configmap("victim-jwks", "victim", configmap_data(public_jwk(ec_private)))
    foreign["metadata"]["labels"] = {KEYSET_LABEL: "victim"}  # no managed-by label
    await asyncio.to_thread(cluster.create, foreign)
    await asyncio.to_thread(publish, cluster, "marker", configmap_data(public_jwk(ec_private)))
    await until(lambda: store.get("default", "marker") is not None)
    assert store.get("default", "victim") is None


async def delete_behind_a_broken_watch(
    cluster: EmulatedCluster,
    store: SnapshotStore,
    ec_private: ec.EllipticCurvePrivateKey,
    *,
    failed_watches: int,
    compact: bool = False,
) -> None:
    """Publish a keyset, then break the ConfigMap watch (and fail the next watches) while
    its ConfigMap is deleted; with ``compact`` the deletion cannot be replayed either."""
    await asyncio.to_thread(publish, cluster, "gone", configmap_data(public_jwk(ec_private)))
    await until(lambda: store.get("default", "gone") is not None)
    await asyncio.to_thread(
        cluster.fail_next, 503, failed_watches, verb="watch", plural="configmaps"
    )
    await asyncio.to_thread(cluster.drop_watches, abort=True)
    await asyncio.to_thread(cluster.delete, "configmaps", "gone-jwks", "default")
    if compact:
        await asyncio.to_thread(cluster.compact)


def lists(cluster: EmulatedCluster) -> int:
    return len([r for r in cluster.request_log() if r.verb == "list"])


async def test_a_dropped_watch_resumes_and_misses_nothing_without_a_relist(
    cluster: EmulatedCluster,
    running: tuple[ConfigMapSource, SnapshotStore],
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    _, store = running
    await until(lambda: store.snapshot.ready)
    lists_before = await asyncio.to_thread(lists, cluster)
    await delete_behind_a_broken_watch(cluster, store, ec_private, failed_watches=2)
    await until(lambda: store.get("default", "gone") is None)
    assert store.metrics.watch_restarts.get("error", 0) >= 1
    assert await asyncio.to_thread(lists, cluster) == lists_before  # resumed, not re-listed


async def test_after_compaction_a_relist_removes_what_vanished(
    cluster: EmulatedCluster,
    running: tuple[ConfigMapSource, SnapshotStore],
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    _, store = running
    await delete_behind_a_broken_watch(cluster, store, ec_private, failed_watches=3, compact=True)
    await until(lambda: store.get("default", "gone") is None)
    assert store.metrics.watch_restarts.get("expired", 0) >= 1


def test_watch_events(client: KubeClient, ec_private: ec.EllipticCurvePrivateKey) -> None:
    store = SnapshotStore()
    source = ConfigMapSource(store, client, settings=FAST)
    jwk = public_jwk(ec_private)
    keyset = {
        "metadata": {"namespace": "default", "name": "k", "uid": "u-1"},
        "spec": {"configMapName": "cm"},
        "status": {"keys": [{"kid": jwk["kid"]}]},
    }
    obj = configmap("cm", "k", configmap_data(jwk), annotations={KEYSET_UID_ANNOTATION: "u-1"})
    obj["metadata"]["managedFields"] = [{"time": "2026-01-02T03:04:05Z"}]
    source._apply(KEYSETS, [Change("ADDED", keyset)])
    source._apply(CONFIGMAPS, [Change("ADDED", obj)])
    entry = store.get("default", "k")
    assert entry is not None and entry.jwks is not None
    assert entry.jwks.last_modified == "Fri, 02 Jan 2026 03:04:05 GMT"  # the same on replicas
    source._apply(CONFIGMAPS, [Change("DELETED", obj)])
    assert store.get("default", "k") is None
    source._apply(CONFIGMAPS, [Change("ADDED", obj)])
    assert store.get("default", "k") is not None
    source._apply(KEYSETS, [Change("DELETED", keyset)])
    assert store.get("default", "k") is None  # no keyset, nothing served
