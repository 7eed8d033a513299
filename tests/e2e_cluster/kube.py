"""Small sync helpers for the real-cluster suite: kubectl, helm, waiting, the API itself.

Everything goes through the real command-line tools a user has (kubectl from PATH, helm
fetched by scripts/fetch_helm.py) against ``TARGET``, the cluster of this session: the
control plane that ``tests/controlplane`` builds and starts (the default, in ``make
test``), or the cluster ``KUBECONFIG`` points at when ``JWKS_E2E_CLUSTER=1`` (kind, k3d,
with the image loaded; the workloads then run as pods).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.controlplane.cluster import free_port
from tests.deploy.support import CHART, EXAMPLES, helm_binary

T = TypeVar("T")

EXTERNAL = bool(os.environ.get("KUBECONFIG")) and os.environ.get("JWKS_E2E_CLUSTER") == "1"
RELEASE = os.environ.get("JWKS_E2E_RELEASE", "jwks-e2e")
NAMESPACE = os.environ.get("JWKS_E2E_NAMESPACE", "jwks-e2e")
KEYS_NAMESPACE = os.environ.get("JWKS_E2E_KEYS_NAMESPACE", "jwks-e2e-keys")
IMAGE_REPOSITORY = os.environ.get("JWKS_E2E_IMAGE_REPOSITORY", "jwks-operator")
IMAGE_TAG = os.environ.get("JWKS_E2E_IMAGE_TAG", "e2e")
FULLNAME = RELEASE if "jwks-operator" in RELEASE else f"{RELEASE}-jwks-operator"
OPERATOR = f"{FULLNAME}-operator"
SERVER = f"{FULLNAME}-server"


@dataclass
class Target:
    """The cluster of this session: its admin kubeconfig, and whether pods can run."""

    kubeconfig: Path
    pods_run: bool
    server: str = ""
    ca_file: Path | None = None
    client_cert: tuple[Path, Path] | None = None


__all__ = ["CHART", "EXAMPLES", "free_port"]  # re-exported for the tests' helm calls

TARGET: Target | None = None
KUBECTL: str | None = None
"""The kubectl to run: the control plane's own build (same version), else the one on PATH."""


def kubectl_binary() -> str:
    return KUBECTL or shutil.which("kubectl") or "kubectl"


def target() -> Target:
    assert TARGET is not None, "the cluster fixture has not started a cluster"
    return TARGET


def env() -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(target().kubeconfig)}


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 300) -> str:
    result = subprocess.run(
        [kubectl_binary(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env(),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout if result.returncode == 0 else result.stderr


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def helm(*args: str, check: bool = True) -> str:
    result = subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=env(),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout if result.returncode == 0 else result.stderr


def install_chart(*values: str) -> str:
    """``helm upgrade --install`` of the chart with ``--set`` values.

    With pods (a real cluster) ``--wait`` returns when both Deployments are available; on
    the node-less control plane nothing becomes available, so the install returns when the
    API server accepted every object (helm's own default), and the workloads run locally.
    """
    args = [
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
    ]
    for value in values:
        args += ["--set", value]
    if target().pods_run:
        args += ["--wait", "--timeout", "5m"]
    return helm(*args)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0) -> T:
    """Poll ``probe`` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (AssertionError, OSError, KeyError) as error:  # not there yet
            last_error = error
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last_error}")


def example(name: str, namespace: str, **spec_changes: Any) -> dict[str, Any]:
    """An examples/ manifest moved into the test namespace, optionally with spec changes."""
    (doc,) = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    doc["metadata"]["namespace"] = namespace
    doc["spec"] = {**(doc.get("spec") or {}), **spec_changes}
    return dict(doc)


def keyset_doc(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "jwks.dev/v1alpha1",
        "kind": "JwksKeySet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


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
    result = subprocess.run(
        [kubectl_binary(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        check=False,
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {result.stderr}"
    return answer == "yes"


def api_request(
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """One raw API request, as the admin (client certificate) or with a bearer ``token``.

    Returns (status, decoded JSON body); errors are returned, not raised, so a test can
    assert a 403 or a 422 and its message.
    """
    cluster = target()
    assert cluster.ca_file is not None, "api_request needs the local control plane"
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    elif cluster.client_cert is not None:
        context.load_cert_chain(*cluster.client_cert)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = content_type
    request = urllib.request.Request(
        cluster.server + path, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            raw = response.read() or b"{}"
            lines = raw.splitlines()
            # A watch answers one JSON event per line: the first one is what tests look at.
            return response.status, json.loads(raw if len(lines) <= 1 else lines[0])
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, {"message": raw.decode(errors="replace")}


@contextlib.contextmanager
def port_forward(service: str, namespace: str, port: int = 80) -> Iterator[str]:
    """``kubectl port-forward svc/...``; yields the local base URL once it accepts."""
    local = free_port()
    process = subprocess.Popen(
        [kubectl_binary(), "-n", namespace, "port-forward", f"svc/{service}", f"{local}:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env(),
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
