"""The ConfigMap source in process: pagination, claims, relabelling, watch errors.

The end-to-end tests drive the real command; these reach the parts a command line cannot
set (page size, backoff) and the event handling rules, against the same emulated API.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from jwks_operator.core.contract import KEYSET_LABEL
from jwks_operator.server.kube import (
    ApiError,
    ConfigMapSource,
    KubeConnection,
    SourceSettings,
    _WatchExpired,
    load_connection,
)
from jwks_operator.server.snapshot import SnapshotStore
from tests.server.support import configmap_data, public_jwk
from tests.support.cluster import EmulatedCluster

FAST = SourceSettings(backoff_initial=0.05, backoff_max=0.2, relist_delay=0.01, page_size=2)


def configmap(
    name: str, keyset: str | None, data: dict[str, str], namespace: str = "default"
) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {KEYSET_LABEL: keyset} if keyset else {},
        },
        "data": data,
    }


@pytest.fixture
async def running(cluster: EmulatedCluster) -> AsyncIterator[tuple[ConfigMapSource, SnapshotStore]]:
    store = SnapshotStore()
    source = ConfigMapSource(store, load_connection(str(cluster.kubeconfig)), settings=FAST)
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
    cluster: EmulatedCluster, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    for index in range(5):
        await asyncio.to_thread(
            cluster.create,
            configmap(f"cm-{index}", f"k{index}", configmap_data(public_jwk(ec_private))),
        )
    await asyncio.to_thread(cluster.create, configmap("plain", None, {"jwks.json": "{}"}))
    store = SnapshotStore()
    source = ConfigMapSource(store, load_connection(str(cluster.kubeconfig)), settings=FAST)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.ready.wait(), 10)
        assert store.snapshot.ready
        assert sorted(name for _, name in store.snapshot.entries) == [f"k{i}" for i in range(5)]
        lists = [r for r in await asyncio.to_thread(cluster.request_log) if r.verb == "list"]
        assert len(lists) >= 3  # five objects in pages of two
        assert all(r.query.get("labelSelector") == KEYSET_LABEL for r in lists)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_two_configmaps_claiming_one_keyset(
    cluster: EmulatedCluster,
    running: tuple[ConfigMapSource, SnapshotStore],
    ec_private: ec.EllipticCurvePrivateKey,
    ec_private_2: ec.EllipticCurvePrivateKey,
) -> None:
    source, store = running
    await asyncio.wait_for(source.ready.wait(), 10)
    first, second = public_jwk(ec_private), public_jwk(ec_private_2)

    def served() -> object:
        entry = store.get("default", "shared")
        return json.loads(entry.jwks.body)["keys"] if entry and entry.jwks else None

    await asyncio.to_thread(cluster.create, configmap("b-jwks", "shared", configmap_data(second)))
    await until(lambda: served() == [second])
    # The ConfigMap whose name sorts first wins, deterministically on every replica.
    await asyncio.to_thread(cluster.create, configmap("a-jwks", "shared", configmap_data(first)))
    await until(lambda: served() == [first])
    await asyncio.to_thread(cluster.delete, "configmaps", "a-jwks", "default")
    await until(lambda: served() == [second])
    await asyncio.to_thread(cluster.delete, "configmaps", "b-jwks", "default")
    await until(lambda: store.get("default", "shared") is None)


async def test_a_relist_removes_what_vanished_while_disconnected(
    cluster: EmulatedCluster,
    running: tuple[ConfigMapSource, SnapshotStore],
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    _, store = running
    await asyncio.to_thread(
        cluster.create, configmap("gone-jwks", "gone", configmap_data(public_jwk(ec_private)))
    )
    await until(lambda: store.get("default", "gone") is not None)
    # Break the watch and fail the re-lists for a while; delete meanwhile.
    await asyncio.to_thread(cluster.fail_next, 503, 2, verb="list", plural="configmaps")
    await asyncio.to_thread(cluster.fail_next, 503, 2, verb="watch", plural="configmaps")
    await asyncio.to_thread(cluster.drop_watches, abort=True)
    await asyncio.to_thread(cluster.delete, "configmaps", "gone-jwks", "default")
    await until(lambda: store.get("default", "gone") is None)
    assert store.metrics.watch_restarts.get("error", 0) >= 1


def test_watch_events(ec_private: ec.EllipticCurvePrivateKey) -> None:
    store = SnapshotStore()
    source = ConfigMapSource(store, load_connection_stub(), settings=FAST)
    obj = configmap("cm", "k", configmap_data(public_jwk(ec_private)))
    obj["metadata"]["managedFields"] = [{"time": "2026-01-02T03:04:05Z"}]  # type: ignore[index]
    source._handle_event_line(json.dumps({"type": "ADDED", "object": obj}).encode())
    entry = store.get("default", "k")
    assert entry is not None and entry.jwks is not None
    assert entry.jwks.last_modified == "Fri, 02 Jan 2026 03:04:05 GMT"  # the same on replicas
    source._handle_event_line(b'{"type": "BOOKMARK", "object": {"metadata": {}}}')
    source._handle_event_line(json.dumps({"type": "DELETED", "object": obj}).encode())
    assert store.get("default", "k") is None
    with pytest.raises(_WatchExpired):
        source._handle_event_line(
            b'{"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}'
        )
    with pytest.raises(ApiError):
        source._handle_event_line(b'{"type": "ERROR", "object": {"code": 500}}')


def load_connection_stub() -> KubeConnection:
    """A connection is only used for HTTP; event handling never touches it."""
    return KubeConnection("http://127.0.0.1:9", None, None, None)
