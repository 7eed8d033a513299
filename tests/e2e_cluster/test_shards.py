"""Shards: several operator releases, each owning a disjoint set of JwksKeySets.

Each shard is a helm release of the chart (its own ServiceAccount, RBAC, Deployment) whose
operator runs here as a local process with exactly the rendered args, authenticated as
that release's ServiceAccount. Two ways to split:

- by namespace (``watchNamespaces``): two releases side by side, cluster-wide objects named
  per release, the CRD owned by one release (a second one that would take it over is
  refused with what to do);
- by label (``operator.keysetSelector`` -> ``--keyset-selector``): two releases over the
  same namespace with ``jwks.dev/shard=a`` and ``jwks.dev/shard=b``.

Every reconciliation logs one ``[namespace/name] Reconciled (trigger: ...)`` line, so each
shard's log says which keysets it reconciled; the liveness endpoint's ``keysets`` says how
many it owns. A keyset moved from shard a to shard b (a relabel) must keep its keys (kids,
Secret and ConfigMap untouched, Ready unchanged, served JWKS unchanged), shard a must stop
handling it (a deleted ConfigMap is repaired by shard b alone), the finalizer must stay,
and deleting the moved keyset must complete.

The session's own operator (cluster-wide, no selector) is stopped meanwhile: it would
reconcile every keyset.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.controlplane import cluster as controlplane
from tests.e2e_cluster import kube
from tests.e2e_cluster.conftest import LOCAL_ONLY, Workloads
from tests.support.cluster import CliProcess

SHARD_NS = "jwks-shards"
NS_ONE = "jwks-shard-one"
NS_TWO = "jwks-shard-two"
FINALIZER = "jwks.dev/finalizer"
SHARD_LABEL = "jwks.dev/shard"


def fullname(release: str) -> str:
    return release if "jwks-operator" in release else f"{release}-jwks-operator"


def install_release(
    release: str, values: dict[str, Any], directory: Path, check: bool = True
) -> str:
    """``helm upgrade --install`` of another release of the chart, next to the session's."""
    path = directory / f"{release}-values.yaml"
    path.write_text(yaml.safe_dump(values))
    return kube.helm(
        "upgrade",
        "--install",
        release,
        str(kube.CHART),
        "--namespace",
        kube.NAMESPACE,
        "--set",
        f"image.repository={kube.IMAGE_REPOSITORY}",
        "--set",
        f"image.tag={kube.IMAGE_TAG}",
        "--values",
        str(path),
        check=check,
    )


def uninstall(release: str) -> None:
    kube.helm("uninstall", release, "--namespace", kube.NAMESPACE, "--wait", check=False)


def namespace(name: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def labelled(ns: str, name: str, shard: str | None) -> dict[str, Any]:
    doc = kube.keyset_doc(ns, name, algorithm="ES256")
    if shard is not None:
        doc["metadata"]["labels"] = {SHARD_LABEL: shard}
    return doc


def _mention(ns: str, name: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(ns)}/{re.escape(name)}(?![\w-])")


def mentions(process: CliProcess, ns: str, name: str) -> bool:
    """Whether the process's log names the keyset at all (any line, any level)."""
    return bool(_mention(ns, name).search(process.output()))


def reconciled(process: CliProcess, ns: str, name: str) -> list[str]:
    """The process's reconciliations of the keyset: one log line each."""
    prefix = f"[{ns}/{name}] Reconciled (trigger: "
    return [line for line in process.output().splitlines() if prefix in line]


def health(process: CliProcess) -> dict[str, Any]:
    url = process.argv[process.argv.index("--liveness") + 1]
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def owned(process: CliProcess) -> int:
    return int(health(process)["keysets"])


def served(base: str, ns: str, name: str) -> bytes:
    url = f"{base}/{ns}/{name}/.well-known/jwks.json"
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def operator_writes(name: str) -> list[dict[str, Any]]:
    """What Kopf (finalizer, annotations) and the operator (status) last wrote to a keyset:
    their managedFields entries, each with the fields it owns and the time of its write."""
    obj = kube.kubectl_json("-n", SHARD_NS, "get", "jwkskeyset", name, "--show-managed-fields")
    entries = obj["metadata"]["managedFields"]
    return [entry for entry in entries if entry["manager"] in ("kopf", "jwks-operator")]


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    (ready,) = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
    return dict(ready)


@pytest.fixture(scope="module")
def session_operator_stopped(
    workloads: Workloads, control_plane: controlplane.ControlPlane | None
) -> Iterator[None]:
    """The session's cluster-wide operator is stopped while the shards run, then restarted."""
    if control_plane is None or workloads.local is None or workloads.operator is None:
        pytest.skip(LOCAL_ONLY)
    workloads.operator.terminate()
    try:
        yield
    finally:
        workloads.operator = workloads.local.start_operator()


def test_releases_split_by_namespace_install_side_by_side(
    workloads: Workloads, session_operator_stopped: None, tmp_path: Path
) -> None:
    local = workloads.local
    assert local is not None
    for ns in (NS_ONE, NS_TWO):
        namespace(ns)
    # The CRDs belong to the session's release: another release must not take them over.
    refused = install_release("ns-one", {"watchNamespaces": [NS_ONE]}, tmp_path, check=False)
    assert (
        f"the CRD jwkskeysets.jwks.dev is already installed by the release {kube.RELEASE} "
        f"(namespace {kube.NAMESPACE}); install this release with --set crds.enabled=false"
    ) in refused
    assert "ns-one" not in kube.helm("list", "--namespace", kube.NAMESPACE, "--short").split()
    # Kopf's peering CRDs, as a user without helm applies them (owned by no release).
    for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        path = kube.CHART / "files" / "crds" / f"{crd}.yaml"
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")

    releases = {"ns-one": NS_ONE, "ns-two": NS_TWO}
    processes: dict[str, CliProcess] = {}
    try:
        for release, ns in releases.items():
            values = {
                "watchNamespaces": [ns],
                "crds": {"enabled": False},
                "operator": {"replicas": 2},  # peering: a KopfPeering object per release
            }
            install_release(release, values, tmp_path)
        for release, ns in releases.items():
            # Cluster-wide objects (the operator's discovery ClusterRole) carry the release's
            # name; the namespaced grants are Roles in the release's own namespaces.
            operator = f"{fullname(release)}-operator"
            for kind in ("clusterrole", "clusterrolebinding"):
                assert kube.kubectl("get", kind, operator, "-o", "name").strip()
            for component in ("operator", "server"):
                name = f"{fullname(release)}-{component}"
                assert kube.exists(ns, "role", name) and kube.exists(ns, "rolebinding", name)
            kube.wait_for(
                f"the peering object of {release}",
                functools.partial(kube.exists, ns, "kopfpeering", release),
            )
            other = NS_TWO if ns == NS_ONE else NS_ONE
            assert not kube.exists(other, "role", f"{fullname(release)}-operator")
            processes[release] = local.start_operator(
                priority=1, workload=f"{fullname(release)}-operator"
            )
        for release, ns in releases.items():
            processes[release].wait_for_output("Resuming operations", timeout=90)
            kube.apply(labelled(ns, f"keys-of-{release}", None))
        for release, ns in releases.items():
            kube.wait_for(
                f"{ns} keyset Ready", functools.partial(kube.ready, ns, f"keys-of-{release}")
            )
        for release, ns in releases.items():
            other_release = "ns-two" if release == "ns-one" else "ns-one"
            other_ns = releases[other_release]
            assert reconciled(processes[release], ns, f"keys-of-{release}")
            assert not mentions(processes[release], other_ns, f"keys-of-{other_release}")
            assert owned(processes[release]) == 1
        for release, ns in releases.items():
            kube.kubectl(
                "-n", ns, "delete", "jwkskeyset", f"keys-of-{release}", "--wait", "--timeout=60s"
            )
    finally:
        for process in processes.values():
            process.terminate()
        for release in releases:
            uninstall(release)


def test_label_shards_never_share_a_keyset_and_a_move_keeps_its_keys(
    workloads: Workloads, session_operator_stopped: None, tmp_path: Path
) -> None:
    local = workloads.local
    assert local is not None
    namespace(SHARD_NS)
    shards = {"shard-a": "jwks.dev/shard=a", "shard-b": "jwks.dev/shard in (b)"}
    processes: dict[str, CliProcess] = {}
    try:
        for release, selector in shards.items():
            values = {
                "watchNamespaces": [SHARD_NS],
                "crds": {"enabled": False},
                "operator": {"keysetSelector": selector},
            }
            install_release(release, values, tmp_path)
            workload = f"{fullname(release)}-operator"
            args, _ = local.container_args(workload)
            assert args[args.index("--keyset-selector") + 1] == selector
            processes[release] = local.start_operator(workload=workload)
        a, b = processes["shard-a"], processes["shard-b"]
        started = "Shard: reconciling only the JwksKeySets whose labels match "
        a.wait_for_output(started + "jwks.dev/shard=a", 60)
        b.wait_for_output(started + "jwks.dev/shard in (b)", 60)

        keysets = {"a-one": "a", "a-two": "a", "b-one": "b", "unsharded": None}
        for name, shard in keysets.items():
            kube.apply(labelled(SHARD_NS, name, shard))
        for name, shard in keysets.items():
            if shard is not None:
                kube.wait_for(f"{name} Ready", functools.partial(kube.ready, SHARD_NS, name))
        kube.wait_for("both shards to count their keysets", lambda: owned(a) == 2 and owned(b) == 1)

        # Each keyset was reconciled by its own shard, and the other shard never even saw it
        # (the API server filters the watch). A keyset no selector matches is nobody's:
        # no status, and no finalizer that nothing would ever remove.
        for name, shard in keysets.items():
            mine = {"a": a, "b": b}.get(shard or "")
            for process in (a, b):
                if process is mine:
                    assert reconciled(process, SHARD_NS, name), name
                else:
                    assert not mentions(process, SHARD_NS, name), name
        unsharded = kube.keyset(SHARD_NS, "unsharded")
        assert "status" not in unsharded
        assert FINALIZER not in (unsharded["metadata"].get("finalizers") or [])

        # Move a-one to shard b: a relabel.
        def state() -> dict[str, Any]:
            obj = kube.keyset(SHARD_NS, "a-one")
            secret = kube.kubectl_json("-n", SHARD_NS, "get", "secret", "a-one-signing")
            configmap = kube.kubectl_json("-n", SHARD_NS, "get", "configmap", "a-one-jwks")
            with workloads.server_url() as base:
                jwks = served(base, SHARD_NS, "a-one")
            return {
                "kids": [key["kid"] for key in obj["status"]["keys"]],
                "revision": obj["status"]["revision"],
                "ready": ready_condition(obj),
                "finalizers": obj["metadata"].get("finalizers"),
                "secret": (secret["metadata"]["resourceVersion"], secret["data"]),
                "configmap": (configmap["metadata"]["resourceVersion"], configmap["data"]),
                "served": jwks,
            }

        before = state()
        assert before["ready"]["status"] == "True" and before["finalizers"] == [FINALIZER]
        by_a = len(reconciled(a, SHARD_NS, "a-one"))
        written = operator_writes("a-one")
        assert {entry["manager"] for entry in written} == {"kopf", "jwks-operator"}
        kube.kubectl(
            "-n", SHARD_NS, "label", "jwkskeyset", "a-one", "jwks.dev/shard=b", "--overwrite"
        )
        kube.wait_for("shard b to adopt a-one", lambda: reconciled(b, SHARD_NS, "a-one"))
        kube.wait_for("the shards to recount", lambda: owned(a) == 1 and owned(b) == 2)
        # Neither shard wrote the keyset: no finalizer removed or added, no annotation of
        # Kopf's, no status patch (the API server records each writer's fields and time).
        assert operator_writes("a-one") == written
        (adopted,) = reconciled(b, SHARD_NS, "a-one")
        assert "trigger: daemon started" in adopted and "keys written" not in adopted
        assert state() == before  # same kids, no write to the Secret or ConfigMap, Ready kept

        # Shard a no longer handles it: a deleted ConfigMap (which shard a's ConfigMap watch
        # still sees) is repaired by shard b alone, with the same keys.
        kube.kubectl("-n", SHARD_NS, "delete", "configmap", "a-one-jwks")
        kube.wait_for(
            "shard b to repair the ConfigMap",
            lambda: any(
                "ConfigMap a-one-jwks deleted" in line for line in reconciled(b, SHARD_NS, "a-one")
            ),
        )
        kube.wait_for("a-one Ready again", lambda: kube.ready(SHARD_NS, "a-one"))
        repaired = kube.kubectl_json("-n", SHARD_NS, "get", "configmap", "a-one-jwks")
        assert repaired["data"]["jwks.json"] == before["configmap"][1]["jwks.json"]
        assert len(reconciled(a, SHARD_NS, "a-one")) == by_a
        a.wait_for_output(f"[{SHARD_NS}/a-one] Left this operator's watch", timeout=5)
        left = a.output().index(f"[{SHARD_NS}/a-one] Left this operator's watch")
        after_leaving = a.output()[left:].splitlines()[1:]
        lines = [line for line in after_leaving if _mention(SHARD_NS, "a-one").search(line)]
        assert [line.split(" ", 2)[2] for line in lines] == [
            f"[{SHARD_NS}/a-one] Daemon 'keyset' succeeded."  # its exit, and nothing after
        ]

        # Deleting the moved keyset completes: its owner, shard b, removes the finalizer.
        kube.kubectl("-n", SHARD_NS, "delete", "jwkskeyset", "a-one", "--wait", "--timeout=60s")
        assert not kube.exists(SHARD_NS, "jwkskeyset", "a-one")
        for name in ("a-two", "b-one", "unsharded"):
            kube.kubectl("-n", SHARD_NS, "delete", "jwkskeyset", name, "--wait", "--timeout=60s")
    finally:
        for process in processes.values():
            process.terminate()
        for release in shards:
            uninstall(release)
