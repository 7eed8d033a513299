"""Small sync helpers for the real-cluster suite: kubectl, helm, waiting, port-forwarding.

Everything goes through the real command-line tools a user has (kubectl from PATH, helm
fetched by scripts/fetch_helm.py), against the cluster KUBECONFIG points at.
"""

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.deploy.support import CHART, EXAMPLES, helm_binary

T = TypeVar("T")

ENABLED = bool(os.environ.get("KUBECONFIG")) and os.environ.get("JWKS_E2E_CLUSTER") == "1"
SKIP_REASON = (
    "real-cluster suite: needs KUBECONFIG pointing at a cluster (kind, k3d, ...) and "
    "JWKS_E2E_CLUSTER=1, with the image built and loaded (see docs/install.md)"
)
RELEASE = os.environ.get("JWKS_E2E_RELEASE", "jwks-e2e")
NAMESPACE = os.environ.get("JWKS_E2E_NAMESPACE", "jwks-e2e")
KEYS_NAMESPACE = os.environ.get("JWKS_E2E_KEYS_NAMESPACE", "jwks-e2e-keys")
IMAGE_REPOSITORY = os.environ.get("JWKS_E2E_IMAGE_REPOSITORY", "jwks-operator")
IMAGE_TAG = os.environ.get("JWKS_E2E_IMAGE_TAG", "e2e")
FULLNAME = RELEASE if "jwks-operator" in RELEASE else f"{RELEASE}-jwks-operator"
OPERATOR = f"{FULLNAME}-operator"
SERVER = f"{FULLNAME}-server"


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    binary = shutil.which("kubectl") or "kubectl"
    result = subprocess.run(
        [binary, *args], input=stdin, capture_output=True, text=True, check=False, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout if result.returncode == 0 else result.stderr


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def helm(*args: str) -> str:
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, check=False, timeout=600
    )
    if result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def install_chart() -> None:
    """`helm upgrade --install`: idempotent, so the CI workflow's own install step and this
    fixture agree; --wait returns when both Deployments are available."""
    helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--set",
        f"image.repository={IMAGE_REPOSITORY}",
        "--set",
        f"image.tag={IMAGE_TAG}",
        "--set",
        "crds.keep=false",
        "--wait",
        "--timeout",
        "5m",
    )


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0) -> T:
    """Poll ``probe`` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (AssertionError, OSError) as error:  # not there yet: kubectl or HTTP error
            last_error = error
            value = None
        if value:
            return value
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last_error}")


def example(name: str, namespace: str, **spec_changes: Any) -> dict[str, Any]:
    """An examples/ manifest moved into the test namespace, optionally with spec changes."""
    (doc,) = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    doc["metadata"]["namespace"] = namespace
    doc["spec"] = {**(doc.get("spec") or {}), **spec_changes}
    return dict(doc)


def apply(doc: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps(doc))


def keyset(namespace: str, name: str) -> Any:
    return kubectl_json("-n", namespace, "get", "jwkskeyset", name)


def ready(namespace: str, name: str) -> dict[str, Any] | None:
    obj = keyset(namespace, name)
    status = obj.get("status") or {}
    generation = obj["metadata"]["generation"]
    for condition in status.get("conditions", []):
        current = condition.get("observedGeneration", generation) == generation
        if condition["type"] == "Ready" and condition["status"] == "True" and current:
            return dict(obj)
    return None


def secret_data(namespace: str, name: str) -> dict[str, str]:
    secret = kubectl_json("-n", namespace, "get", "secret", name)
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def exists(namespace: str, kind: str, name: str) -> bool:
    out = kubectl("-n", namespace, "get", kind, name, "--ignore-not-found", "-o", "name")
    return bool(out.strip())


def can_i(account: str, verb: str, resource: str, namespace: str) -> bool:
    """``kubectl auth can-i`` as a ServiceAccount; ``resource`` may be ``plural/subresource``."""
    subject = f"system:serviceaccount:{NAMESPACE}:{account}"
    plural, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, plural, "-n", namespace, "--as", subject]
    if subresource:
        args.append(f"--subresource={subresource}")
    binary = shutil.which("kubectl") or "kubectl"
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {result.stderr}"
    return answer == "yes"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def port_forward(service: str, namespace: str, port: int = 80) -> Iterator[str]:
    """``kubectl port-forward svc/...``; yields the local base URL once it accepts."""
    local = _free_port()
    binary = shutil.which("kubectl") or "kubectl"
    process = subprocess.Popen(
        [binary, "-n", namespace, "port-forward", f"svc/{service}", f"{local}:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def accepting() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"port-forward exited: {process.stderr}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), 1):
                return True
            return False

        wait_for("port-forward", accepting, timeout=30)
        yield f"http://127.0.0.1:{local}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def manifest_path(name: str) -> Path:
    return EXAMPLES / name
