"""The Kubernetes KeySetStore against the API emulator, driven by the shared ``reconcile``.

The emulator (tests/support/emulator.py) provides resourceVersions with 409 on stale
writes, labels, ownerReferences and a request log, which is what this adapter relies on.
"""

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jwks_operator.core.contract import (
    CONFIGMAP_JWKS,
    CONTENT_HASH_ANNOTATION,
    KEYSET_LABEL,
    KEYSET_UID_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_SELECTOR,
    NEXT_CHANGE_ANNOTATION,
    SECRET_KEYS,
    SECRET_SIGNING_PEM,
)
from jwks_operator.core.spec import KeySetSpec, parse_spec
from jwks_operator.kube.cache import ObjectCache
from jwks_operator.kube.client import Endpoint, KubeApiError, KubeClient
from jwks_operator.operator.wakeups import listed_kids
from jwks_operator.reconcile import reconcile
from jwks_operator.store.base import WriteOutcome
from jwks_operator.store.kubernetes import (
    CONFIGMAP,
    PLURALS,
    SECRET,
    KubernetesStore,
    Owner,
    content_hash,
)
from tests.operator.harness import KEYSETS, decode_secret, manifest
from tests.support.cluster import EmulatedCluster

NOW = datetime(2030, 1, 1, tzinfo=UTC)
OWNER = Owner("auth", "0c6e2a8e-0000-4000-8000-000000000001")


class Versions:
    """A Tracker that records what the store reports."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def observed(self, kind: str, name: str, resource_version: str) -> None:
        self.seen.append((kind, name, resource_version))

    def vouched(self, kids: frozenset[str]) -> None:
        self.seen.append(("status.keys", ",".join(sorted(kids)), ""))


@pytest.fixture
def cluster(make_cluster: Callable[..., EmulatedCluster]) -> EmulatedCluster:
    """Frequent bookmarks, so that "the cache has caught up" is quick to know."""
    return make_cluster(bookmark_interval=0.05)


@pytest.fixture(autouse=True)
def keyset(cluster: EmulatedCluster) -> None:
    """The JwksKeySet whose status the store writes the trust list to."""
    cluster.create(manifest("auth", algorithm="ES256"))


@dataclass
class Kube:
    """The operator's client and its cache of Secrets and ConfigMaps, on the emulator."""

    client: KubeClient
    cache: ObjectCache
    cluster: EmulatedCluster

    async def caught_up(self) -> None:
        """Wait until the cache has seen every change made so far (the API's bookmarks
        carry its current resourceVersion)."""
        target = await asyncio.to_thread(self.cluster.resource_version)
        async with asyncio.timeout(10):
            # Polls another task's state (no event to wait for).
            while any(int(r.resource_version or 0) < target for r in self.cache.reflectors):  # noqa: ASYNC110
                await asyncio.sleep(0.01)


@pytest.fixture
async def client(cluster: EmulatedCluster) -> AsyncIterator[Kube]:
    async def endpoint(refresh: bool) -> Endpoint:
        return Endpoint(cluster.url, {"Authorization": f"Bearer {cluster.token}"})

    kube = KubeClient(endpoint)
    cache = ObjectCache(
        kube, PLURALS, selector=MANAGED_SELECTOR, index_label=KEYSET_LABEL, namespaces=["default"]
    )
    task = asyncio.create_task(cache.run())
    await asyncio.wait_for(cache.synced.wait(), 10)
    yield Kube(kube, cache, cluster)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await kube.close()


def spec(**raw: Any) -> KeySetSpec:
    return parse_spec("auth", {"algorithm": "ES256", **raw})


async def store(kube: Kube, keyset: KeySetSpec, **kwargs: Any) -> KubernetesStore:
    """A store for one reconcile, once the cache reflects every change the test made."""
    await kube.caught_up()
    return KubernetesStore(
        kube.client, kube.cache, namespace="default", spec=keyset, owner=OWNER, **kwargs
    )


def writes(cluster: EmulatedCluster) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in cluster.request_log()
        if r.user_agent == "jwks-operator" and r.method in ("POST", "PATCH", "PUT")
    ]


async def test_reconcile_creates_labelled_hashed_objects_then_writes_nothing(
    cluster: EmulatedCluster, client: Kube
) -> None:
    keyset = spec()
    tracker = Versions()
    first = await reconcile(keyset, await store(client, keyset, tracker=tracker), clock=lambda: NOW)
    assert first.ready.status and first.wrote

    secret = cluster.get("v1/secrets", "auth-signing")
    configmap = cluster.get("v1/configmaps", "auth-jwks")
    for obj in (secret, configmap):
        meta = obj["metadata"]
        assert meta["labels"] == {MANAGED_BY_LABEL: "jwks-operator", KEYSET_LABEL: "auth"}
        assert "ownerReferences" not in meta  # Retain
    assert secret["type"] == "Opaque"
    data = decode_secret(secret)
    assert secret["metadata"]["annotations"][CONTENT_HASH_ANNOTATION] == content_hash(data)
    assert configmap["metadata"]["annotations"][CONTENT_HASH_ANNOTATION] == content_hash(
        configmap["data"]
    )
    assert (
        configmap["metadata"]["annotations"][NEXT_CHANGE_ANNOTATION] == "2030-01-31T00:00:00Z"
    )  # interval
    assert (SECRET, "auth-signing", secret["metadata"]["resourceVersion"]) in tracker.seen
    assert (CONFIGMAP, "auth-jwks", configmap["metadata"]["resourceVersion"]) in tracker.seen

    # The trust list: status.keys names every published kid; the ConfigMap names the keyset.
    status = cluster.get(KEYSETS, "auth").get("status") or {}
    published = {key["kid"] for key in json.loads(configmap["data"][CONFIGMAP_JWKS])["keys"]}
    assert listed_kids(status) == published
    assert configmap["metadata"]["annotations"][KEYSET_UID_ANNOTATION] == OWNER.uid

    before = writes(cluster)
    listed = listed_kids(status)
    again = await reconcile(keyset, await store(client, keyset, listed=listed), clock=lambda: NOW)
    assert again.ready.status and not again.wrote
    assert writes(cluster) == before
    assert (
        cluster.get("v1/secrets", "auth-signing")["metadata"]["resourceVersion"]
        == (secret["metadata"]["resourceVersion"])
    )


async def test_hand_edits_are_detected_and_repaired(cluster: EmulatedCluster, client: Kube) -> None:
    keyset = spec()
    await reconcile(keyset, await store(client, keyset), clock=lambda: NOW)
    good = cluster.get("v1/configmaps", "auth-jwks")["data"]
    cluster.patch("v1/configmaps", "auth-jwks", {"data": {CONFIGMAP_JWKS: '{"keys":[]}'}})
    pem = base64.b64encode(b"not a key").decode()
    cluster.patch("v1/secrets", "auth-signing", {"data": {SECRET_SIGNING_PEM: pem}})

    stored = await (await store(client, keyset)).read()
    assert stored.public_intact is False

    outcome = await reconcile(keyset, await store(client, keyset), clock=lambda: NOW)
    assert [n.event.reason for n in outcome.notices] == ["PublicKeysRepaired"]
    assert outcome.ready.reason == "PublicKeysRepaired"
    assert cluster.get("v1/configmaps", "auth-jwks")["data"] == good
    repaired = decode_secret(cluster.get("v1/secrets", "auth-signing"))
    assert repaired[SECRET_SIGNING_PEM].startswith("-----BEGIN PRIVATE KEY-----")


async def test_foreign_objects_are_a_conflict_and_never_written(
    cluster: EmulatedCluster, client: Kube
) -> None:
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "auth-jwks", "namespace": "default", "labels": {"app": "x"}},
            "data": {"a": "b"},
        }
    )
    keyset = spec()
    outcome = await reconcile(keyset, await store(client, keyset), clock=lambda: NOW)
    assert (outcome.ready.status, outcome.ready.reason) == (False, "NameConflict")
    assert "ConfigMap auth-jwks already exists" in outcome.ready.message
    assert writes(cluster) == []
    assert cluster.find("v1/secrets", "auth-signing") is None


@pytest.mark.parametrize(
    "data",
    [
        {SECRET_KEYS: base64.b64encode(b"garbage").decode()},
        {SECRET_KEYS: base64.b64encode(b"\xff\xfe").decode()},
        {"other": base64.b64encode(b"x").decode()},
    ],
    ids=["not-json", "not-utf8", "no-keys-json"],
)
async def test_unreadable_secret_is_corrupt_not_absent(
    cluster: EmulatedCluster, client: Kube, data: dict[str, str]
) -> None:
    cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "auth-signing",
                "namespace": "default",
                "labels": {MANAGED_BY_LABEL: "jwks-operator", KEYSET_LABEL: "auth"},
            },
            "data": data,
        }
    )
    keyset = spec()
    outcome = await reconcile(keyset, await store(client, keyset), clock=lambda: NOW)
    assert (outcome.ready.status, outcome.ready.reason) == (False, "CorruptSecret")
    assert writes(cluster) == []


async def test_deletion_policy_sets_and_removes_only_our_owner_reference(
    cluster: EmulatedCluster, client: Kube
) -> None:
    deleting = spec(deletionPolicy="Delete")
    await reconcile(deleting, await store(client, deleting), clock=lambda: NOW)
    refs = cluster.get("v1/secrets", "auth-signing")["metadata"]["ownerReferences"]
    assert refs == [
        {
            "apiVersion": "jwks.dev/v1alpha1",
            "kind": "JwksKeySet",
            "name": "auth",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "u-1"}
    cluster.patch("v1/secrets", "auth-signing", {"metadata": {"ownerReferences": [*refs, foreign]}})

    retaining = spec()
    later = NOW + timedelta(seconds=1)
    await reconcile(retaining, await store(client, retaining), clock=lambda: later)
    assert cluster.get("v1/secrets", "auth-signing")["metadata"]["ownerReferences"] == [foreign]
    assert "ownerReferences" not in cluster.get("v1/configmaps", "auth-jwks")["metadata"]


async def test_a_concurrent_write_makes_ours_fail_with_409(
    cluster: EmulatedCluster, client: Kube
) -> None:
    keyset = spec()
    await reconcile(keyset, await store(client, keyset), clock=lambda: NOW)
    racing = await store(client, keyset)
    stored = await racing.read()
    assert stored.private_state
    cluster.patch("v1/secrets", "auth-signing", {"metadata": {"labels": {"touched": "yes"}}})

    with pytest.raises(KubeApiError) as caught:
        await racing.write_private({SECRET_KEYS: json.dumps({"changed": True})})
    assert caught.value.conflict
    assert SECRET_KEYS not in str(caught.value) and "changed" not in str(caught.value)


async def test_unchanged_data_with_missing_label_is_relabelled(
    cluster: EmulatedCluster, client: Kube
) -> None:
    keyset = spec()
    await reconcile(keyset, await store(client, keyset), clock=lambda: NOW)
    data = decode_secret(cluster.get("v1/secrets", "auth-signing"))
    # Someone strips the managed-by label but keeps ours: still ours, label restored.
    cluster.patch("v1/secrets", "auth-signing", {"metadata": {"labels": {MANAGED_BY_LABEL: None}}})
    adopted = await store(client, keyset)
    assert (await adopted.read()).conflict is not None  # no managed-by: not provably ours

    cluster.patch(
        "v1/secrets", "auth-signing", {"metadata": {"labels": {MANAGED_BY_LABEL: "jwks-operator"}}}
    )
    again = await store(client, keyset)
    await again.read()
    assert await again.write_private(data) is WriteOutcome.UNCHANGED


def test_api_messages_about_secret_writes_are_withheld() -> None:
    """A webhook that quotes the request must not carry key material into Events or logs."""
    from jwks_operator.kube.client import _error

    quoted = json.dumps({"reason": "Invalid", "message": 'denied: {"d": "SECRETVALUE"}'})
    secret_write = _error(422, quoted, "PATCH", "/api/v1/namespaces/ns/secrets/auth-signing")
    assert "SECRETVALUE" not in str(secret_write)
    assert secret_write.reason == "Invalid"
    configmap_write = _error(422, quoted, "PATCH", "/api/v1/namespaces/ns/configmaps/auth-jwks")
    assert "denied" in str(configmap_write)
    pem = json.dumps({"message": "-----BEGIN PRIVATE KEY-----\nMIIB"})
    assert "MIIB" not in str(_error(500, pem, "POST", "/api/v1/namespaces/ns/configmaps"))
