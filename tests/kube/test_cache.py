"""The operator's cache: label index, its own writes, late events, deletions seen by a re-list."""

from collections.abc import Mapping
from typing import Any

import pytest

from jwks_operator.kube.cache import ObjectCache
from jwks_operator.kube.client import Endpoint, KubeClient
from jwks_operator.kube.reflector import Change


def obj(name: str, version: int, keyset: str = "k", **data: str) -> dict[str, Any]:
    return {
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": str(version),
            "labels": {"jwks.dev/keyset": keyset},
            "managedFields": [{"manager": "x"}],
        },
        "data": data,
    }


@pytest.fixture
def cache() -> tuple[ObjectCache, list[tuple[str, str, str]]]:
    async def provider(refresh: bool) -> Endpoint:
        raise AssertionError("no request in these tests")

    seen: list[tuple[str, str, str]] = []

    def listener(kind: str, event_type: str, found: Mapping[str, Any]) -> None:
        meta = found.get("metadata") or {}
        seen.append((event_type, str(meta.get("name")), str(meta.get("resourceVersion"))))

    made = ObjectCache(
        KubeClient(provider),
        {"Secret": "secrets"},
        selector="x",
        index_label="jwks.dev/keyset",
        namespaces=["ns"],
        listener=listener,
    )
    return made, seen


async def test_index_writes_late_events_and_deletions(
    cache: tuple[ObjectCache, list[tuple[str, str, str]]],
) -> None:
    store, seen = cache
    deliver = store.reflectors[0]._deliver
    await deliver([Change("ADDED", obj("a", 5)), Change("ADDED", obj("b", 6, keyset="other"))])
    assert [o["metadata"]["name"] for o in store.labelled("Secret", "ns", "k")] == ["a"]
    assert "managedFields" not in (store.get("Secret", "ns", "a") or {})["metadata"]
    # Our own write returns version 9; the watch then brings the older 7: it is ignored.
    store.observe("Secret", obj("a", 9, v="ours"))
    await deliver([Change("MODIFIED", obj("a", 7, v="older"))])
    assert (store.get("Secret", "ns", "a") or {})["data"] == {"v": "ours"}
    assert ("MODIFIED", "a", "7") not in seen
    # Relabelled to another keyset: the index follows.
    await deliver([Change("MODIFIED", obj("a", 10, keyset="other"))])
    assert store.labelled("Secret", "ns", "k") == []
    assert len(store.labelled("Secret", "ns", "other")) == 2
    # A deletion found by a re-list carries only the name: the listener gets the last
    # version held (with its labels), so the keyset it belonged to is known.
    await deliver([Change("DELETED", {"metadata": {"namespace": "ns", "name": "b"}})])
    assert seen[-1] == ("DELETED", "b", "6")
    assert store.get("Secret", "ns", "b") is None and len(store) == 1
