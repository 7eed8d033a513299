"""List+watch against the API emulator: pages, resumption from resourceVersion, 410, bookmarks.

The emulator keeps a bounded event history (etcd's compaction, ``compact()``), replays
events after a resourceVersion, answers 410 Gone for older ones and sends BOOKMARKs: the
behaviour of kube-apiserver that the reflector relies on. (The same loop against the real
API server, across its restart and a compaction, is tests/e2e_cluster/test_resilience.py.)
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from jwks_operator.kube.client import KubeApiError, KubeClient, WatchExpired, collection_path
from jwks_operator.kube.config import endpoint_provider
from jwks_operator.kube.reflector import Change, Reflector, ReflectorSettings
from tests.support.cluster import EmulatedCluster

FAST = ReflectorSettings(backoff_initial=0.05, backoff_max=0.2, page_size=2)
PATH = collection_path("v1", "configmaps", "default")


def configmap(name: str, value: str = "1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "t"}},
        "data": {"v": value},
    }


class Recorder:
    def __init__(self) -> None:
        self.deliveries: list[list[tuple[str, str, str]]] = []
        self.state: dict[str, str] = {}

    async def __call__(self, changes: Sequence[Change]) -> None:
        self.deliveries.append(
            [(c.type, c.key[1], str((c.obj.get("data") or {}).get("v"))) for c in changes]
        )
        for change in changes:
            if change.type == "DELETED":
                self.state.pop(change.key[1], None)
            else:
                self.state[change.key[1]] = str((change.obj.get("data") or {}).get("v"))


@pytest.fixture
def client(kube_client: KubeClient) -> KubeClient:
    return kube_client


@pytest.fixture
async def reflect(
    client: KubeClient,
) -> AsyncIterator[Callable[..., tuple[Reflector, Recorder]]]:
    tasks: list[asyncio.Task[None]] = []

    def start(**options: Any) -> tuple[Reflector, Recorder]:
        recorder = Recorder()
        reflector = Reflector(client, PATH, recorder, title="ConfigMaps", settings=FAST, **options)
        tasks.append(asyncio.create_task(reflector.run()))
        return reflector, recorder

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def until(condition: Callable[[], object]) -> None:
    """Poll state another task (or the emulator's loop) changes: there is no event."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def requests(cluster: EmulatedCluster, verb: str) -> int:
    return len([r for r in cluster.request_log() if r.verb == verb and r.resource == "configmaps"])


async def test_first_list_is_paged_then_events_arrive(
    cluster: EmulatedCluster, reflect: Callable[..., tuple[Reflector, Recorder]]
) -> None:
    for index in range(5):
        await asyncio.to_thread(cluster.create, configmap(f"c{index}"))
    reflector, recorder = reflect(selector="app=t")
    await asyncio.wait_for(reflector.synced.wait(), 10)
    assert recorder.deliveries[0] == [("ADDED", f"c{i}", "1") for i in range(5)]
    assert await asyncio.to_thread(requests, cluster, "list") == 3  # pages of two
    await asyncio.to_thread(cluster.create, configmap("late"))
    await asyncio.to_thread(cluster.create, configmap("other", labels={"app": "not-t"}))
    await asyncio.to_thread(cluster.patch, "configmaps", "c0", {"data": {"v": "2"}}, "default")
    await asyncio.to_thread(cluster.delete, "configmaps", "c1", "default")
    await until(lambda: recorder.state.get("c0") == "2" and "c1" not in recorder.state)
    assert "late" in recorder.state and "other" not in recorder.state
    assert recorder.deliveries[1:] == [
        [("ADDED", "late", "1")],
        [("MODIFIED", "c0", "2")],
        [("DELETED", "c1", "1")],
    ]


async def test_an_ended_stream_is_resumed_from_its_resource_version_without_a_list(
    cluster: EmulatedCluster, reflect: Callable[..., tuple[Reflector, Recorder]]
) -> None:
    await asyncio.to_thread(cluster.create, configmap("a"))
    reflector, recorder = reflect()
    await asyncio.wait_for(reflector.synced.wait(), 10)
    for round_ in range(3):
        await until(lambda: cluster.watch_count() >= 1)
        await asyncio.to_thread(cluster.drop_watches, abort=round_ == 1)  # EOF, reset, EOF
        # A change while no watch is open is replayed by the resumed watch.
        await asyncio.to_thread(
            cluster.patch, "configmaps", "a", {"data": {"v": str(round_ + 2)}}, "default"
        )
        wanted = str(round_ + 2)
        await until(lambda: recorder.state.get("a") == wanted)  # noqa: B023 (awaited here)
    assert await asyncio.to_thread(requests, cluster, "list") == 1
    assert reflector.lists == 1 and reflector.watches >= 4
    watches = [r for r in cluster.request_log() if r.verb == "watch"]
    versions = [int(r.query.get("resourceVersion") or 0) for r in watches]
    assert all(versions) and versions == sorted(versions)  # always moving on
    assert all(r.query.get("allowWatchBookmarks") == "true" for r in watches)


async def test_a_compacted_resource_version_means_a_relist_and_its_differences(
    cluster: EmulatedCluster, reflect: Callable[..., tuple[Reflector, Recorder]]
) -> None:
    for name in ("keep", "change", "drop"):
        await asyncio.to_thread(cluster.create, configmap(name))
    restarts: list[str] = []
    reflector, recorder = reflect(on_restart=restarts.append)
    await asyncio.wait_for(reflector.synced.wait(), 10)
    await until(lambda: cluster.watch_count() >= 1)
    await asyncio.to_thread(cluster.fail_next, 503, 2, verb="watch", plural="configmaps")
    await asyncio.to_thread(cluster.drop_watches, abort=True)
    await asyncio.to_thread(cluster.patch, "configmaps", "change", {"data": {"v": "2"}}, "default")
    await asyncio.to_thread(cluster.delete, "configmaps", "drop", "default")
    await asyncio.to_thread(cluster.create, configmap("new"))
    await asyncio.to_thread(cluster.compact)
    await until(lambda: reflector.lists == 2)
    await until(lambda: recorder.state == {"keep": "1", "change": "2", "new": "1"})
    relist = sorted(recorder.deliveries[-1])
    assert relist == [
        ("ADDED", "new", "1"),
        ("DELETED", "drop", "None"),
        ("MODIFIED", "change", "2"),
    ]
    assert "expired" in restarts and "error" in restarts


async def test_bookmarks_move_the_resource_version_on(
    make_cluster: Callable[..., EmulatedCluster], client: KubeClient
) -> None:
    fast_bookmarks = make_cluster(bookmark_interval=0.2)
    kube = KubeClient(endpoint_provider(str(fast_bookmarks.kubeconfig)))
    recorder = Recorder()
    reflector = Reflector(kube, PATH, recorder, title="ConfigMaps", settings=FAST)
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(reflector.synced.wait(), 10)
        listed = int(reflector.resource_version)
        # Changes elsewhere (another namespace) move the server's version; a bookmark
        # tells this watch about it, with no event for it to deliver.
        for index in range(3):
            other = configmap(f"x{index}")
            other["metadata"]["namespace"] = "kube-system"
            await asyncio.to_thread(fast_bookmarks.create, other)
        await until(lambda: int(reflector.resource_version) >= listed + 3)
        assert recorder.deliveries == [[]]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await kube.close()


async def test_error_events(client: KubeClient) -> None:
    reflector = Reflector(client, PATH, Recorder(), title="ConfigMaps")
    with pytest.raises(WatchExpired):
        await reflector._event({"type": "ERROR", "object": {"code": 410, "reason": "Expired"}})
    with pytest.raises(KubeApiError, match="500"):
        await reflector._event({"type": "ERROR", "object": {"code": 500}})
