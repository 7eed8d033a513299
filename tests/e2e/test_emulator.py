"""The API emulator keeps the Kubernetes semantics our operator and server rely on.

Each test pins one behaviour of a real API server that plain KMock lacks, so that a
green e2e suite means something; the last tests run real clients (Kopf in a subprocess
via kubeconfig, the ``kubernetes`` sync client, aiohttp) against it.
"""

from __future__ import annotations

import json
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import pytest

from tests.support.cluster import ApiStatusError, EmulatedCluster

KEYSETS = "jwks.dev/v1alpha1/jwkskeysets"
NS = "identity"


def keyset(name: str = "auth", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "jwks.dev/v1alpha1",
        "kind": "JwksKeySet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"algorithm": "RS256", **spec},
    }


def configmap(name: str, labels: Mapping[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS, "labels": dict(labels or {})},
        "data": data,
    }


def names(objects: list[dict[str, Any]]) -> list[str]:
    return [obj["metadata"]["name"] for obj in objects]


def core_api(cluster: EmulatedCluster) -> Any:
    """A ``kubernetes`` client from the cluster's kubeconfig, without touching globals."""
    config = str(cluster.kubeconfig)
    client = kubernetes.config.new_client_from_config(config_file=config)  # type: ignore[no-untyped-call]
    return kubernetes.client.CoreV1Api(client)


def watch(list_function: Any, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The ``kubernetes`` client's watch, as its users write it."""
    stream: Iterator[dict[str, Any]] = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
        list_function, *args, **kwargs
    )
    return stream


def event_summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


# ------------------------------------------------------------------ create and identity


def test_create_answers_201_with_server_owned_metadata(cluster: EmulatedCluster) -> None:
    answer = cluster.request("POST", cluster.path(KEYSETS, namespace=NS), keyset())
    status_codes = [r.status for r in cluster.request_log() if r.method == "POST"]
    meta = answer["metadata"]

    assert status_codes == [201]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert int(meta["resourceVersion"]) == cluster.resource_version()
    assert cluster.get(KEYSETS, "auth", NS) == answer
    assert "generation" not in cluster.create(configmap("plain"))["metadata"]


def test_duplicate_create_is_409_already_exists(cluster: EmulatedCluster) -> None:
    cluster.create(keyset())
    with pytest.raises(ApiStatusError) as caught:
        cluster.create(keyset())
    assert (caught.value.code, caught.value.reason) == (409, "AlreadyExists")


def test_generate_name_gives_every_object_its_own_name(cluster: EmulatedCluster) -> None:
    body = {"metadata": {"generateName": "kopf-event-", "namespace": NS}, "reason": "Test"}
    created = [cluster.create({"apiVersion": "v1", "kind": "Event", **body}) for _ in range(5)]

    assert len(set(names(created))) == 5
    assert all(name.startswith("kopf-event-") for name in names(created))
    assert sorted(names(cluster.events(NS))) == sorted(names(created))


def test_create_rejects_what_a_real_server_rejects(cluster: EmulatedCluster) -> None:
    bad_bodies: list[tuple[dict[str, Any], int]] = [
        ({"metadata": {"name": "Not_A_Name", "namespace": NS}}, 422),
        ({"metadata": {"name": "x", "namespace": NS, "labels": {"a": 1}}}, 400),
        ({"metadata": {"name": "x", "namespace": NS, "resourceVersion": "5"}}, 400),
        ({"metadata": {"namespace": NS}}, 422),
        ({"metadata": {"name": "x", "namespace": NS, "ownerReferences": [{"name": "o"}]}}, 422),
    ]
    for body, code in bad_bodies:
        with pytest.raises(ApiStatusError) as caught:
            cluster.create({"apiVersion": "v1", "kind": "ConfigMap", **body})
        assert caught.value.code == code, body


def test_resource_version_is_global_and_only_real_changes_bump_it(
    cluster: EmulatedCluster,
) -> None:
    first = cluster.create(configmap("a"))
    second = cluster.create(keyset())
    same = cluster.patch("configmaps", "a", {"data": {}}, NS)
    changed = cluster.patch("configmaps", "a", {"data": {"k": "v"}}, NS)

    versions = [int(o["metadata"]["resourceVersion"]) for o in (first, second, same, changed)]
    assert versions[0] == versions[2] < versions[1] < versions[3]
    assert same == first


# ------------------------------------------------------------------ writes and concurrency


def test_stale_resource_version_is_409_on_put_and_patch(cluster: EmulatedCluster) -> None:
    old = cluster.create(keyset())
    fresh = cluster.patch(KEYSETS, "auth", {"spec": {"keySize": 3072}}, NS)
    stale_rv = old["metadata"]["resourceVersion"]

    attempts: list[Callable[[], object]] = [
        lambda: cluster.replace(KEYSETS, "auth", old, NS),
        lambda: cluster.patch(
            KEYSETS, "auth", {"metadata": {"resourceVersion": stale_rv}, "spec": {}}, NS
        ),
    ]
    for attempt in attempts:
        with pytest.raises(ApiStatusError) as caught:
            attempt()
        assert (caught.value.code, caught.value.reason) == (409, "Conflict")

    replaced = cluster.replace(KEYSETS, "auth", {**fresh, "spec": {"algorithm": "ES256"}}, NS)
    assert replaced["spec"] == {"algorithm": "ES256"}
    unconditional = {**replaced, "metadata": {"name": "auth", "namespace": NS}}
    with pytest.raises(ApiStatusError) as caught:
        cluster.replace(KEYSETS, "auth", unconditional, NS)
    assert caught.value.code == 422


def test_json_patch_test_op_guards_the_patch(cluster: EmulatedCluster) -> None:
    created = cluster.create(keyset())
    rv = created["metadata"]["resourceVersion"]
    guarded = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/metadata/finalizers", "value": ["jwks.dev/cleanup"]},
    ]

    patched = cluster.patch(KEYSETS, "auth", guarded, NS, patch_type="json")
    with pytest.raises(ApiStatusError) as caught:
        cluster.patch(KEYSETS, "auth", guarded, NS, patch_type="json")

    assert patched["metadata"]["finalizers"] == ["jwks.dev/cleanup"]
    assert caught.value.code == 422
    assert cluster.get(KEYSETS, "auth", NS)["metadata"]["finalizers"] == ["jwks.dev/cleanup"]


def test_generation_follows_spec_changes_only(cluster: EmulatedCluster) -> None:
    cluster.create(keyset())
    spec_change = cluster.patch(KEYSETS, "auth", {"spec": {"algorithm": "ES256"}}, NS)
    label_change = cluster.patch(KEYSETS, "auth", {"metadata": {"labels": {"a": "b"}}}, NS)
    status_change = cluster.patch(
        KEYSETS, "auth", {"status": {"activeKid": "k1"}}, NS, subresource="status"
    )

    generations = [o["metadata"]["generation"] for o in (spec_change, label_change, status_change)]
    assert generations == [2, 2, 2]
    assert label_change["metadata"]["resourceVersion"] != spec_change["metadata"]["resourceVersion"]


def test_status_subresource_is_separate_from_the_main_resource(cluster: EmulatedCluster) -> None:
    created = cluster.create({**keyset(), "status": {"activeKid": "ignored-on-create"}})
    via_status = cluster.patch(
        KEYSETS,
        "auth",
        {"spec": {"algorithm": "PS256"}, "status": {"activeKid": "k1"}},
        NS,
        subresource="status",
    )
    via_main = cluster.patch(
        KEYSETS, "auth", {"spec": {"algorithm": "ES256"}, "status": {"activeKid": "k2"}}, NS
    )
    via_put = cluster.replace(
        KEYSETS, "auth", {**via_main, "status": {"activeKid": "k3"}}, NS, subresource="status"
    )

    assert "status" not in created
    assert (via_status["spec"]["algorithm"], via_status["status"]) == ("RS256", {"activeKid": "k1"})
    assert (via_main["spec"]["algorithm"], via_main["status"]) == ("ES256", {"activeKid": "k1"})
    assert via_put["status"] == {"activeKid": "k3"}


def test_strategic_merge_merges_maps_on_builtins_and_is_415_on_custom(
    cluster: EmulatedCluster,
) -> None:
    cluster.create(configmap("cm", {"a": "1"}, x="1"))
    cluster.create(keyset())

    merged = cluster.patch(
        "configmaps",
        "cm",
        {"metadata": {"labels": {"b": "2"}}, "data": {"y": "2"}},
        NS,
        patch_type="strategic",
    )
    with pytest.raises(ApiStatusError) as caught:
        cluster.patch(KEYSETS, "auth", {"spec": {"keySize": 4096}}, NS, patch_type="strategic")

    assert merged["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert merged["data"] == {"x": "1", "y": "2"}
    assert caught.value.code == 415


def test_merge_patch_null_deletes_a_key(cluster: EmulatedCluster) -> None:
    cluster.create(configmap("cm", {"a": "1", "b": "2"}))
    patched = cluster.patch("configmaps", "cm", {"metadata": {"labels": {"a": None}}}, NS)
    assert patched["metadata"]["labels"] == {"b": "2"}


def test_secret_string_data_is_stored_as_base64_data(cluster: EmulatedCluster) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": NS},
        "stringData": {"keys.json": "{}"},
    }
    created = cluster.create(secret)
    with pytest.raises(ApiStatusError) as caught:
        cluster.patch("secrets", "s", {"data": {"bad": "not base64!"}}, NS)

    assert created["data"] == {"keys.json": "e30="}
    assert "stringData" not in created
    assert caught.value.code == 400


# ------------------------------------------------------------------ reading: selectors, pages


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("jwks.dev/keyset=auth", ["a1", "a2"]),
        ("jwks.dev/keyset==auth,tier=web", ["a1"]),
        ("jwks.dev/keyset!=auth", ["b1", "none"]),
        ("jwks.dev/keyset", ["a1", "a2", "b1"]),
        ("!jwks.dev/keyset", ["none"]),
        ("jwks.dev/keyset in (auth, billing)", ["a1", "a2", "b1"]),
        ("jwks.dev/keyset notin (auth)", ["b1", "none"]),
    ],
)
def test_label_selectors_on_list(
    cluster: EmulatedCluster, selector: str, expected: list[str]
) -> None:
    cluster.create(configmap("a1", {"jwks.dev/keyset": "auth", "tier": "web"}))
    cluster.create(configmap("a2", {"jwks.dev/keyset": "auth"}))
    cluster.create(configmap("b1", {"jwks.dev/keyset": "billing"}))
    cluster.create(configmap("none"))

    assert names(cluster.list_objects("configmaps", NS, label_selector=selector)) == expected


def test_field_selectors_and_namespaces(cluster: EmulatedCluster) -> None:
    cluster.create(configmap("a"))
    cluster.create({**configmap("a"), "metadata": {"name": "a", "namespace": "other"}})

    by_name = cluster.list_objects("configmaps", field_selector="metadata.name=a")
    by_namespace = cluster.list_objects("configmaps", field_selector="metadata.namespace=other")
    with pytest.raises(ApiStatusError) as caught:
        cluster.list_objects("configmaps", field_selector="data.x=1")

    assert [o["metadata"]["namespace"] for o in by_name] == [NS, "other"]
    assert [o["metadata"]["namespace"] for o in by_namespace] == ["other"]
    assert caught.value.code == 400


def test_list_pages_with_limit_and_continue(cluster: EmulatedCluster) -> None:
    for index in range(5):
        cluster.create(configmap(f"cm{index}"))
    path = cluster.path("configmaps", namespace=NS)

    first = cluster.request("GET", path, query={"limit": "2"})
    second = cluster.request(
        "GET", path, query={"limit": "2", "continue": first["metadata"]["continue"]}
    )
    third = cluster.request(
        "GET", path, query={"limit": "2", "continue": second["metadata"]["continue"]}
    )

    assert [names(p["items"]) for p in (first, second, third)] == [
        ["cm0", "cm1"],
        ["cm2", "cm3"],
        ["cm4"],
    ]
    assert "continue" not in third["metadata"]
    assert "kind" not in first["items"][0]  # built-in list items carry no type meta


# ------------------------------------------------------------------ watching


def test_watch_from_a_resource_version_replays_only_newer_events(cluster: EmulatedCluster) -> None:
    cluster.create(configmap("before"))
    listed = cluster.request("GET", cluster.path("configmaps", namespace=NS))
    cluster.create(configmap("after"))
    cluster.patch("configmaps", "before", {"data": {"k": "v"}}, NS)

    since = listed["metadata"]["resourceVersion"]
    resumed = cluster.watch_events(
        "configmaps", NS, query={"resourceVersion": since, "timeoutSeconds": "0.3"}
    )
    fresh = cluster.watch_events("configmaps", NS, query={"timeoutSeconds": "0.3"})

    assert event_summary(resumed) == [("ADDED", "after"), ("MODIFIED", "before")]
    assert event_summary(fresh) == [("ADDED", "after"), ("ADDED", "before")]


def test_watch_accepts_the_capitalised_true_spelling(cluster: EmulatedCluster) -> None:
    cluster.create(configmap("a"))
    events = cluster.watch_events(
        "configmaps", NS, query={"watch": "True", "timeoutSeconds": "0.3"}
    )
    assert event_summary(events) == [("ADDED", "a")]


def test_watch_from_a_forgotten_resource_version_is_410_gone(
    make_cluster: Callable[..., EmulatedCluster],
) -> None:
    small = make_cluster(history_size=3)
    small.create(configmap("a"))
    since = str(small.resource_version())
    for index in range(4):
        small.patch("configmaps", "a", {"data": {"n": str(index)}}, NS)

    events = small.watch_events("configmaps", NS, query={"resourceVersion": since})

    assert [e["type"] for e in events] == ["ERROR"]
    assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")


def test_compaction_makes_older_resource_versions_gone(cluster: EmulatedCluster) -> None:
    cluster.create(configmap("a"))
    since = str(cluster.resource_version())
    cluster.create(configmap("b"))
    cluster.compact()
    now = str(cluster.resource_version())
    cluster.create(configmap("c"))

    gone = cluster.watch_events("configmaps", NS, query={"resourceVersion": since})
    current = cluster.watch_events(
        "configmaps", NS, query={"resourceVersion": now, "timeoutSeconds": "0.5"}
    )

    assert [(e["type"], e["object"]["code"]) for e in gone] == [("ERROR", 410)]
    assert event_summary(current) == [("ADDED", "c")]


def test_watch_sees_objects_enter_and_leave_its_selection(cluster: EmulatedCluster) -> None:
    cluster.create(configmap("cm", {"jwks.dev/keyset": "auth"}))
    since = str(cluster.resource_version())
    cluster.patch("configmaps", "cm", {"metadata": {"labels": {"jwks.dev/keyset": None}}}, NS)
    cluster.patch("configmaps", "cm", {"metadata": {"labels": {"jwks.dev/keyset": "auth"}}}, NS)
    cluster.patch("configmaps", "cm", {"data": {"k": "v"}}, NS)
    cluster.delete("configmaps", "cm", NS)

    events = cluster.watch_events(
        "configmaps",
        NS,
        query={
            "resourceVersion": since,
            "labelSelector": "jwks.dev/keyset",
            "timeoutSeconds": "0.3",
        },
    )

    assert [e["type"] for e in events] == ["DELETED", "ADDED", "MODIFIED", "DELETED"]


def test_watch_bookmarks_and_initial_events(make_cluster: Callable[..., EmulatedCluster]) -> None:
    quick = make_cluster(bookmark_interval=0.1)
    quick.create(configmap("a"))
    query = {
        "sendInitialEvents": "true",
        "allowWatchBookmarks": "true",
        "resourceVersionMatch": "NotOlderThan",
    }
    events = quick.watch_events("configmaps", NS, query=query, max_events=3)

    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert events[2]["object"]["metadata"]["resourceVersion"] == str(quick.resource_version())


def test_dropped_watches_end_and_faults_are_injected(cluster: EmulatedCluster) -> None:
    api = core_api(cluster)
    cluster.fail_next(403, verb="list", plural="configmaps")

    with pytest.raises(kubernetes.client.ApiException) as caught:
        api.list_namespaced_config_map(NS)
    listed = api.list_namespaced_config_map(NS)
    stream = watch(
        api.list_namespaced_config_map, NS, resource_version=listed.metadata.resource_version
    )
    cluster.create(configmap("a"))
    first = next(stream)
    dropped = cluster.wait_for(cluster.drop_watches)
    cluster.create(configmap("b"))  # the client reconnects from its last resourceVersion
    second = next(stream)

    assert caught.value.status == 403
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "a")
    assert dropped == 1
    assert (second["type"], second["object"].metadata.name) == ("ADDED", "b")
    calls = cluster.api_calls()
    assert {(c.verb, c.resource, c.namespace) for c in calls} == {
        ("list", "configmaps", NS),
        ("watch", "configmaps", NS),
    }


# ------------------------------------------------------------------ deletion


def test_finalizers_hold_an_object_until_they_are_removed(cluster: EmulatedCluster) -> None:
    cluster.create({**keyset(), "metadata": {**keyset()["metadata"], "finalizers": ["x/y"]}})
    since = str(cluster.resource_version())

    terminating = cluster.delete(KEYSETS, "auth", NS)
    still_there = cluster.get(KEYSETS, "auth", NS)
    with pytest.raises(ApiStatusError) as caught:
        cluster.patch(KEYSETS, "auth", {"metadata": {"finalizers": ["x/y", "new/one"]}}, NS)
    cluster.patch(KEYSETS, "auth", {"metadata": {"finalizers": None}}, NS)
    events = cluster.watch_events(
        KEYSETS, NS, query={"resourceVersion": since, "timeoutSeconds": "0.3"}
    )

    assert terminating is not None and "deletionTimestamp" in terminating["metadata"]
    assert (
        still_there["metadata"]["deletionTimestamp"] == terminating["metadata"]["deletionTimestamp"]
    )
    assert caught.value.code == 422
    assert cluster.find(KEYSETS, "auth", NS) is None
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]


def owned(name: str, *owners: dict[str, Any]) -> dict[str, Any]:
    refs = [
        {
            "apiVersion": o["apiVersion"],
            "kind": o["kind"],
            "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"],
        }
        for o in owners
    ]
    body = configmap(name)
    body["metadata"]["ownerReferences"] = refs
    return body


def test_garbage_collection_follows_owner_references(cluster: EmulatedCluster) -> None:
    owner = cluster.create(keyset("owner"))
    other = cluster.create(keyset("other"))
    orphaned_owner = cluster.create(keyset("orphaner"))
    cluster.create(owned("only-owner", owner))
    cluster.create(owned("two-owners", owner, other))
    cluster.create(owned("orphan", orphaned_owner))
    cluster.create(owned("grandchild", cluster.get("configmaps", "only-owner", NS)))

    cluster.delete(KEYSETS, "owner", NS)
    cluster.delete(KEYSETS, "orphaner", NS, propagation_policy="Orphan")

    assert names(cluster.list_objects("configmaps", NS)) == ["orphan", "two-owners"]
    refs = {
        obj["metadata"]["name"]: [r["name"] for r in obj["metadata"].get("ownerReferences", [])]
        for obj in cluster.list_objects("configmaps", NS)
    }
    assert refs == {"orphan": [], "two-owners": ["other"]}


def test_deleting_a_namespace_deletes_its_objects(cluster: EmulatedCluster) -> None:
    cluster.ensure_namespace(NS)
    cluster.create(configmap("a"))
    cluster.create(keyset())
    cluster.create({**configmap("kept"), "metadata": {"name": "kept", "namespace": "default"}})

    cluster.delete("namespaces", NS)

    assert names(cluster.list_objects("configmaps")) == ["kept"]
    assert cluster.list_objects(KEYSETS) == []


def test_delete_collection_honours_the_label_selector(cluster: EmulatedCluster) -> None:
    cluster.create(configmap("a", {"jwks.dev/keyset": "auth"}))
    cluster.create(configmap("b", {"jwks.dev/keyset": "auth"}))
    cluster.create(configmap("c"))

    path = cluster.path("configmaps", namespace=NS)
    deleted = cluster.request("DELETE", path, query={"labelSelector": "jwks.dev/keyset=auth"})

    assert names(deleted["items"]) == ["a", "b"]
    assert names(cluster.list_objects("configmaps", NS)) == ["c"]


def test_delete_preconditions_are_checked(cluster: EmulatedCluster) -> None:
    created = cluster.create(configmap("a"))
    path = cluster.path("configmaps", "a", NS)
    stale = {"preconditions": {"uid": "not-the-uid"}}
    current = {"preconditions": {"uid": created["metadata"]["uid"]}}

    with pytest.raises(ApiStatusError) as caught:
        cluster.request("DELETE", path, stale)
    cluster.request("DELETE", path, current)

    assert caught.value.code == 409
    assert cluster.find("configmaps", "a", NS) is None


# ------------------------------------------------------------------ discovery and access


def test_discovery_serves_the_crd_and_kopf_resources(cluster: EmulatedCluster) -> None:
    jwks = cluster.request("GET", "/apis/jwks.dev/v1alpha1")["resources"]
    kopf = cluster.request("GET", "/apis/kopf.dev/v1")["resources"]
    core = {r["name"] for r in cluster.request("GET", "/api/v1")["resources"]}

    by_name = {r["name"]: r for r in jwks}
    assert set(by_name) == {"jwkskeysets", "jwkskeysets/status"}
    assert by_name["jwkskeysets"]["kind"] == "JwksKeySet"
    assert by_name["jwkskeysets"]["namespaced"] is True
    assert {"list", "watch", "patch"} <= set(by_name["jwkskeysets"]["verbs"])
    assert {(r["name"], r["namespaced"]) for r in kopf} == {
        ("kopfpeerings", True),
        ("clusterkopfpeerings", False),
    }
    assert {"namespaces", "events", "configmaps", "secrets"} <= core


def test_a_created_crd_registers_its_resource(cluster: EmulatedCluster) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}}
            ],
        },
    }
    created = cluster.create(crd)
    widget = cluster.create(
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "namespace": NS},
        }
    )
    cluster.delete("customresourcedefinitions", "widgets.example.com")

    assert {c["type"] for c in created["status"]["conditions"]} == {"NamesAccepted", "Established"}
    assert widget["metadata"]["generation"] == 1
    with pytest.raises(ApiStatusError) as caught:
        cluster.request("GET", "/apis/example.com/v1/namespaces/identity/widgets")
    assert caught.value.code == 404


def test_the_token_from_the_kubeconfig_is_required(cluster: EmulatedCluster) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{cluster.url}/api/v1/namespaces")

    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=5)
    assert caught.value.code == 401
    assert cluster.request("GET", "/version")["major"] == "1"


def test_verbs_outside_discovery_are_405(cluster: EmulatedCluster) -> None:
    with pytest.raises(ApiStatusError) as caught:
        cluster.request("GET", "/api/v1/namespaces/default/bindings")
    assert caught.value.code == 405


def test_size_limit_and_optional_namespace_check(
    make_cluster: Callable[..., EmulatedCluster],
) -> None:
    strict = make_cluster(require_namespaces=True)
    too_big = configmap("big")
    too_big["data"] = {"jwks.json": "x" * (1024 * 1024 + 1)}

    with pytest.raises(ApiStatusError) as missing_namespace:
        strict.create(configmap("a"))
    strict.ensure_namespace(NS)
    with pytest.raises(ApiStatusError) as oversized:
        strict.create(too_big)

    assert missing_namespace.value.code == 404
    assert oversized.value.code == 422
    assert names(strict.list_objects("configmaps", NS)) == []


def test_cli_subprocess_gets_the_kubeconfig(cluster: EmulatedCluster, tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(
        "import kubernetes\n"
        "kubernetes.config.load_kube_config()\n"
        "api = kubernetes.client.CoreV1Api()\n"
        "print(sorted(ns.metadata.name for ns in api.list_namespace().items))\n"
    )
    probe = cluster.start_process([sys.executable, str(script)], name="probe")
    code, version = cluster.run_cli_to_completion("--version")

    assert probe.wait() == 0
    assert "['default', 'kube-system']" in probe.output()
    assert code == 0 and "jwks-operator" in version


# ------------------------------------------------------------------ real clients


def test_kubernetes_sync_client_lists_watches_resumes_and_sees_410(
    make_cluster: Callable[..., EmulatedCluster],
) -> None:
    cluster = make_cluster(history_size=4)
    cluster.create(configmap("a1", {"jwks.dev/keyset": "auth"}))
    cluster.create(configmap("other"))
    api = core_api(cluster)

    listed = api.list_namespaced_config_map(NS, label_selector="jwks.dev/keyset")
    rv = listed.metadata.resource_version
    cluster.create(configmap("a2", {"jwks.dev/keyset": "auth"}))
    cluster.create(configmap("other2"))
    events = list(
        watch(
            api.list_namespaced_config_map,
            NS,
            label_selector="jwks.dev/keyset",
            resource_version=rv,
            timeout_seconds=1,
        )
    )
    for index in range(5):
        cluster.patch("configmaps", "other", {"data": {"n": str(index)}}, NS)
    with pytest.raises(kubernetes.client.ApiException) as caught:
        list(watch(api.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=1))

    assert [i.metadata.name for i in listed.items] == ["a1"]
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "a2")]
    assert caught.value.status == 410


async def test_aiohttp_client_from_an_async_test(cluster: EmulatedCluster) -> None:
    cluster.create(configmap("a1", {"jwks.dev/keyset": "auth"}, **{"jwks.json": "{}"}))
    headers = {"Authorization": f"Bearer {cluster.token}"}
    url = f"{cluster.url}/api/v1/namespaces/{NS}/configmaps"

    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(url, params={"labelSelector": "jwks.dev/keyset"}) as response:
            listed = await response.json()
        params = {
            "watch": "true",
            "labelSelector": "jwks.dev/keyset",
            "resourceVersion": listed["metadata"]["resourceVersion"],
            "timeoutSeconds": "2",
        }
        async with session.get(url, params=params) as stream:
            cluster.create(configmap("a2", {"jwks.dev/keyset": "auth"}))
            line = await stream.content.readline()

    assert names(listed["items"]) == ["a1"]
    assert json.loads(line)["object"]["metadata"]["name"] == "a2"


KOPF_HANDLERS = textwrap.dedent(
    """
    import os, pathlib, kopf

    LOG = pathlib.Path(os.environ["HANDLER_LOG"])

    def note(line):
        with LOG.open("a") as f:
            f.write(line + "\\n")

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.networking.error_backoffs = [0.1, 0.2]
        settings.watching.reconnect_backoff = 0.05

    @kopf.on.create("jwks.dev", "v1alpha1", "jwkskeysets")
    def created(body, spec, patch, **_):
        note("create " + spec["algorithm"])
        kopf.info(body, reason="Seen", message="created")
        kopf.info(body, reason="Seen", message="again")
        patch.status["phase"] = "Created"
        return {"algorithm": spec["algorithm"]}

    @kopf.on.update("jwks.dev", "v1alpha1", "jwkskeysets")
    def updated(diff, patch, **_):
        fields = ",".join(sorted(".".join(d[1]) for d in diff))
        note("update " + fields)
        patch.status["phase"] = "Updated:" + fields

    @kopf.on.delete("jwks.dev", "v1alpha1", "jwkskeysets")
    def deleted(name, **_):
        note("delete " + name)
    """
)


def test_kopf_runs_each_handler_exactly_once_per_change(
    cluster: EmulatedCluster, tmp_path: Path
) -> None:
    handlers, log = tmp_path / "handlers.py", tmp_path / "handlers.log"
    handlers.write_text(KOPF_HANDLERS)
    cluster.ensure_namespace(NS)
    argv = [sys.executable, "-m", "kopf", "run", "--standalone", "--verbose", "-n", NS]
    operator = cluster.start_process(
        [*argv, str(handlers)], name="kopf", env={"HANDLER_LOG": str(log)}
    )

    def phase_is(expected: str) -> Callable[[dict[str, Any]], bool]:
        return lambda obj: obj.get("status", {}).get("phase") == expected

    cluster.create(keyset())
    created = cluster.wait_for_object(KEYSETS, "auth", NS, phase_is("Created"), timeout=30)
    dropped = cluster.drop_watches(abort=True)  # Kopf must resume, re-running nothing
    cluster.patch(KEYSETS, "auth", {"spec": {"algorithm": "ES256"}}, NS)
    cluster.wait_for_object(KEYSETS, "auth", NS, phase_is("Updated:spec.algorithm"))
    cluster.patch(KEYSETS, "auth", {"metadata": {"annotations": {"team": "a"}}}, NS)
    cluster.wait_for_object(KEYSETS, "auth", NS, phase_is("Updated:metadata"))
    cluster.delete(KEYSETS, "auth", NS)
    cluster.wait_for_absence(KEYSETS, "auth", NS)
    exit_code = operator.terminate()
    output = operator.output()

    assert log.read_text().splitlines() == [
        "create RS256",
        "update spec.algorithm",
        "update metadata",
        "delete auth",
    ]
    assert dropped >= 1
    assert created["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
    assert created["status"]["created"] == {"algorithm": "RS256"}
    messages = [e["message"] for e in cluster.events(NS, involved_name="auth")]
    assert sorted(messages) == ["again", "created"]
    assert ("patch", "jwks.dev", "jwkskeysets", "status", NS) in {
        (c.verb, c.group, c.resource, c.subresource, c.namespace) for c in cluster.api_calls()
    }
    symptoms = ("Traceback", "Conflict", "Patching failed", "Could not apply", "[ERROR")
    for symptom in symptoms:
        assert symptom not in output, output[-4000:]
    assert exit_code == 0
