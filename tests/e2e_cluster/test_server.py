"""The JWKS server against the real API server, as the chart's server ServiceAccount."""

import json
import urllib.request
import uuid
from typing import Any

import pytest

from jwks_operator.core import contract
from tests.e2e_cluster import kube
from tests.e2e_cluster.conftest import Workloads

pytestmark = pytest.mark.usefixtures("workloads")
NS = kube.KEYS_NAMESPACE


def served_kids(base: str, namespace: str, name: str) -> list[str]:
    url = f"{base}/{namespace}/{name}/.well-known/jwks.json"
    with urllib.request.urlopen(url, timeout=10) as response:
        document: dict[str, Any] = json.loads(response.read())
    return [key["kid"] for key in document["keys"]]


def test_the_server_account_cannot_read_secrets_by_rbac_and_by_trying(
    workloads: Workloads, local_plane: Any, tmp_path: Any
) -> None:
    for verb in ("get", "list", "watch"):
        assert not kube.can_i(kube.SERVER, verb, "secrets", NS)
    assert kube.can_i(kube.SERVER, "list", "configmaps", NS)
    kubeconfig = local_plane.service_account_kubeconfig(
        kube.NAMESPACE, kube.SERVER, tmp_path / "server.kubeconfig"
    )
    token = kubeconfig.with_suffix(".token").read_text()
    status, body = kube.api_request("GET", f"/api/v1/namespaces/{NS}/secrets", token=token)
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    assert f"system:serviceaccount:{kube.NAMESPACE}:{kube.SERVER}" in body["message"]
    status, _ = kube.api_request("GET", f"/api/v1/namespaces/{NS}/configmaps", token=token)
    assert status == 200


def test_the_server_serves_a_keyset_and_follows_its_rotation(workloads: Workloads) -> None:
    kube.apply(
        kube.keyset_doc(
            NS,
            "served",
            algorithm="ES256",
            rotation={"interval": "1h", "prePublish": "2s", "retireAfter": "1h"},
        )
    )
    status = kube.wait_for("served Ready", lambda: kube.ready(NS, "served"))["status"]
    with workloads.server_url() as base:
        kube.wait_for(
            "both keys served",
            lambda: served_kids(base, NS, "served") == [status["activeKid"], status["nextKid"]],
        )
        kube.kubectl(
            "-n",
            NS,
            "annotate",
            "--overwrite",
            "jwks",
            "served",
            f"{contract.ROTATE_ANNOTATION}={uuid.uuid4().hex}",
        )
        rotated = kube.wait_for(
            "the rotation",
            lambda: (
                (s := kube.keyset(NS, "served")["status"])["activeKid"] == status["nextKid"]
                and s.get("nextKid")
                and s
            ),
        )
        expected = [rotated["activeKid"], rotated["nextKid"], status["activeKid"]]
        kube.wait_for("the rotation served", lambda: served_kids(base, NS, "served") == expected)
