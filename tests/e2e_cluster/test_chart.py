"""The chart and the plain manifests, as a real API server takes them.

Runs first in the cluster group (file order): the uninstall test removes the release's
ServiceAccounts, so it must happen before the workloads authenticate as them.
"""

import json
from typing import Any

import pytest
import yaml

from tests.deploy.support import CRD_DIR, EXAMPLES
from tests.e2e_cluster import kube

pytestmark = pytest.mark.usefixtures("installed")
CRD = "jwkskeysets.jwks.dev"


def crd_conditions(name: str) -> dict[str, str]:
    crd = kube.kubectl_json("get", "crd", name)
    return {c["type"]: c["status"] for c in crd["status"].get("conditions", [])}


def release_objects() -> list[dict[str, Any]]:
    manifest = kube.helm("get", "manifest", kube.RELEASE, "--namespace", kube.NAMESPACE)
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def test_every_object_of_the_release_was_accepted_and_the_crd_is_established() -> None:
    objects = release_objects()
    kinds = sorted({doc["kind"] for doc in objects})
    assert {"CustomResourceDefinition", "Deployment", "Service", "ServiceAccount"} <= set(kinds)
    for doc in objects:
        namespace = doc["metadata"].get("namespace", kube.NAMESPACE)
        found = kube.kubectl(
            "-n", namespace, "get", doc["kind"], doc["metadata"]["name"], "-o", "name"
        )
        assert found.strip(), doc["kind"]
    assert crd_conditions(CRD) == {"NamesAccepted": "True", "Established": "True"}
    # The short names and printer columns are what `kubectl get jwks` relies on.
    resources = kube.kubectl("api-resources", "--api-group=jwks.dev", "-o", "wide")
    assert "jwks" in resources and "keyset" in resources


def test_helm_upgrade_with_changed_values_reaches_the_objects() -> None:
    kube.install_chart("server.maxAge=120", "server.replicas=3")
    server = kube.kubectl_json("-n", kube.NAMESPACE, "get", "deployment", kube.SERVER)
    assert server["spec"]["replicas"] == 3
    args = server["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-age") + 1] == "120"
    history = kube.helm("history", kube.RELEASE, "--namespace", kube.NAMESPACE, "-o", "json")
    assert [entry["status"] for entry in json.loads(history)][-1] == "deployed"
    kube.helm(
        "upgrade", kube.RELEASE, str(kube.CHART), "--namespace", kube.NAMESPACE, "--reset-values"
    )
    server = kube.kubectl_json("-n", kube.NAMESPACE, "get", "deployment", kube.SERVER)
    args = server["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-age") + 1] == "300"


def test_helm_uninstall_keeps_the_crd_and_the_keys_and_a_reinstall_adopts_them() -> None:
    namespace = "chart-keep"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    kube.apply(kube.keyset_doc(namespace, "kept", algorithm="ES256"))
    kube.helm("uninstall", kube.RELEASE, "--namespace", kube.NAMESPACE, "--wait")
    assert crd_conditions(CRD)["Established"] == "True"
    assert kube.exists(namespace, "jwkskeyset", "kept")  # the CRD's objects survive too
    assert not kube.exists(kube.NAMESPACE, "deployment", kube.OPERATOR)
    kube.install_chart()  # the kept CRD carries this release's metadata: helm adopts it
    assert kube.exists(kube.NAMESPACE, "deployment", kube.OPERATOR)
    crd = kube.kubectl_json("get", "crd", CRD)
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == kube.RELEASE


def test_plain_manifests_and_every_example_apply() -> None:
    """`kubectl apply -f deploy/crds/` (what a user without helm runs) and each example."""
    out = kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    assert CRD in out
    for crd in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):

        def established(name: str = crd) -> str | None:
            return crd_conditions(name).get("Established")

        kube.wait_for(f"{crd} established", established)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "identity"}})
    applied = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        out = kube.kubectl("apply", "-f", str(path))
        applied.append(path.name)
        assert "jwkskeyset.jwks.dev/" in out, (path.name, out)
    assert {"keyset-minimal.yaml", "standalone.yaml"} <= set(applied)
