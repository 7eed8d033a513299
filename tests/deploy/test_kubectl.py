"""The manifests through the real kubectl, offline.

`kubectl apply --dry-run=client -o yaml -f ...` cannot run here: even with
--validate=false, kubectl maps every kind to a REST resource through the API server's
discovery and GETs the live object to compute its patch, so without a server it stops at
"unable to recognize ... connection refused". What kubectl does offline is its client-side
decoding and object handling (`--local`): `kubectl annotate --local -f FILE -o json` reads
every document with kubectl's own YAML/JSON decoder, as `apply` would, and prints it back.
The real-cluster suite (tests/e2e_cluster) runs the real `kubectl apply`.
"""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import CHART, CRD_DIR, EXAMPLES, RELEASE, helm, load_yaml_documents

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
FILES = sorted(CRD_DIR.glob("*.yaml")) + sorted(EXAMPLES.glob("keyset-*.yaml"))
MARK = "jwks.dev/kubectl-decoded"

pytestmark = pytest.mark.skipif(
    not Path(KUBECTL).exists(), reason="kubectl is not installed on this machine"
)


def kubectl_local(source: Path | str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """kubectl with an empty kubeconfig (no server to talk to), decoding ``source``."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    stdin = None if isinstance(source, Path) else source
    target = str(source) if isinstance(source, Path) else "-"
    return subprocess.run(
        [KUBECTL, "annotate", "--local", "-o", "json", "-f", target, f"{MARK}=yes"],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )


def _items(output: str) -> list[dict[str, Any]]:
    """kubectl prints one JSON object per document (or a List): read them all."""
    decoder = json.JSONDecoder()
    items: list[dict[str, Any]] = []
    position = 0
    while position < len(output.rstrip()):
        data, end = decoder.raw_decode(output, position)
        items += data["items"] if data.get("kind") == "List" else [data]
        position = end
        while position < len(output) and output[position].isspace():
            position += 1
    return items


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_kubectl_decodes_the_manifest_unchanged(path: Path, tmp_path: Path) -> None:
    result = kubectl_local(path, tmp_path)
    assert result.returncode == 0, result.stderr
    decoded = _items(result.stdout)
    originals = load_yaml_documents(path)
    assert len(decoded) == len(originals)
    for got, want in zip(decoded, originals, strict=True):
        assert got["metadata"]["annotations"].pop(MARK) == "yes"
        if not got["metadata"]["annotations"]:
            del got["metadata"]["annotations"]
        assert got == want


def test_kubectl_decodes_every_rendered_chart_object(helm_path: Path, tmp_path: Path) -> None:
    rendered = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "operator.replicas=2",
        "--set",
        "server.ingress.enabled=true",
        "--set",
        "networkPolicy.enabled=true",
    ).stdout
    result = kubectl_local(rendered, tmp_path)
    assert result.returncode == 0, result.stderr
    kinds = {item["kind"] for item in _items(result.stdout)}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "Ingress"} <= kinds


def test_kubectl_refuses_a_broken_manifest(tmp_path: Path) -> None:
    """The negative control: the same command fails on a document kubectl cannot decode."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: jwks.dev/v1alpha1\nkind: JwksKeySet\nmetadata: {name: a\n")
    result = kubectl_local(broken, tmp_path)
    assert result.returncode != 0
    assert "error" in result.stderr.lower()
