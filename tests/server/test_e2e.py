"""``jwks-operator serve`` as a user runs it: a process, a kubeconfig, the emulated API.

One emulator and one server process serve the whole module (each test uses its own
keyset names), so that the suite stays fast; tests that need a fresh process (scoping,
SIGTERM) start their own.
"""

import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jwks_operator.core.contract import (
    KEYSET_LABEL,
    NEXT_CHANGE_ANNOTATION,
)
from tests.server.support import (
    assert_no_private_material,
    configmap_data,
    ec_key,
    jwks_text,
    private_members,
    public_jwk,
    publish,
)
from tests.server.support import configmap as support_configmap
from tests.support.cluster import CliProcess, EmulatedCluster, emulated_cluster

T = TypeVar("T")
NAMESPACE = "identity"
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


class Answer:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(port: int, path: str, headers: Mapping[str, str] | None = None) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=dict(headers or {}))
        response = connection.getresponse()
        answer = Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()
    assert answer.status < 500 or answer.status == 503, answer.body
    assert_no_private_material(answer.body)
    return answer


def start_serve(
    cluster: EmulatedCluster, *args: str, env: Mapping[str, str] | None = None
) -> tuple[CliProcess, int]:
    process = cluster.run_cli("serve", "--host", "127.0.0.1", "--port", "0", *args, env=env)
    port = int(LISTENING.search(process.wait_for_output(LISTENING, timeout=30)).group(1))  # type: ignore[union-attr]
    process.wait_for_output("initial list loaded", timeout=30)
    return process, port


def configmap(
    name: str,
    keyset: str | None,
    data: Mapping[str, str],
    *,
    namespace: str = NAMESPACE,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return support_configmap(name, keyset, data, namespace=namespace, annotations=annotations)


def eventually(probe: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {what}")
        time.sleep(0.02)


def wait_answer(port: int, path: str, check: Callable[[Answer], bool], what: str = "") -> Answer:
    """Poll ``path`` until its answer passes ``check``; that answer."""

    def probe() -> Answer | None:
        answer = http_get(port, path)
        return answer if check(answer) else None

    return eventually(probe, what=what or path)


def metric(port: int, line_prefix: str) -> float:
    text = http_get(port, "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatedCluster, int]]:
    with emulated_cluster(tmp_path_factory.mktemp("serve-e2e")) as cluster:
        cluster.ensure_namespace(NAMESPACE)
        _, port = start_serve(cluster)
        yield cluster, port


def jwks_path(name: str, namespace: str = NAMESPACE) -> str:
    return f"/{namespace}/{name}/.well-known/jwks.json"


def test_ready_after_the_first_list(served: tuple[EmulatedCluster, int]) -> None:
    _, port = served
    assert http_get(port, "/readyz").status == 200
    assert http_get(port, "/healthz").status == 200


def test_created_updated_deleted(
    served: tuple[EmulatedCluster, int],
    ec_private: ec.EllipticCurvePrivateKey,
    ec_private_2: ec.EllipticCurvePrivateKey,
) -> None:
    cluster, port = served
    path = jwks_path("lifecycle")
    assert http_get(port, path).status == 404
    first = public_jwk(ec_private)
    publish(cluster, "lifecycle", configmap_data(first, issuer="https://i"), namespace=NAMESPACE)
    created = wait_answer(port, path, lambda a: a.status == 200, what="served")
    assert created.json() == {"keys": [first]}
    discovery = http_get(port, f"/{NAMESPACE}/lifecycle/.well-known/openid-configuration")
    assert discovery.status == 200 and discovery.json()["issuer"] == "https://i"

    second = public_jwk(ec_private_2)
    publish(cluster, "lifecycle", configmap_data(second, first), namespace=NAMESPACE)
    changed = wait_answer(
        port,
        path,
        lambda a: bool(a.json().get("keys") == [second, first]),
        what="the new body",
    )
    assert changed.headers["etag"] != created.headers["etag"]
    assert http_get(port, path, {"If-None-Match": created.headers["etag"]}).status == 200
    assert http_get(port, path, {"If-None-Match": changed.headers["etag"]}).status == 304

    cluster.delete("configmaps", "lifecycle-jwks", NAMESPACE)
    gone = wait_answer(port, path, lambda a: a.status == 404, what="404")
    assert gone.json()["error"] == "not_found"


def test_next_change_annotation_caps_max_age(
    served: tuple[EmulatedCluster, int], ec_private: ec.EllipticCurvePrivateKey
) -> None:
    cluster, port = served
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 150))
    publish(
        cluster,
        "capped",
        configmap_data(public_jwk(ec_private)),
        namespace=NAMESPACE,
        annotations={NEXT_CHANGE_ANNOTATION: soon},
    )
    answer = wait_answer(port, jwks_path("capped"), lambda a: a.status == 200)
    max_age = int(answer.headers["cache-control"].removeprefix("public, max-age="))
    assert 130 <= max_age <= 150


@pytest.mark.parametrize("case", ["private_member", "oct", "duplicate_kid", "bad_json"])
def test_a_refused_configmap_keeps_the_previous_body(
    served: tuple[EmulatedCluster, int],
    case: str,
    rsa_private: rsa.RSAPrivateKey,
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    cluster, port = served
    name = f"refused-{case.replace('_', '-')}"
    good = public_jwk(ec_private)
    publish(cluster, name, configmap_data(good), namespace=NAMESPACE)
    before = wait_answer(port, jwks_path(name), lambda a: a.status == 200)
    bad = {
        "private_member": jwks_text(
            good, {**public_jwk(rsa_private), **private_members(rsa_private)}
        ),
        "oct": jwks_text(good, {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
        "duplicate_kid": jwks_text(good, {**public_jwk(rsa_private), "kid": good["kid"]}),
        "bad_json": '{"keys": [' + json.dumps(good),
    }[case]
    refused_before = metric(port, "jwks_keysets_refused")
    cluster.patch("configmaps", f"{name}-jwks", {"data": {"jwks.json": bad}}, NAMESPACE)
    eventually(lambda: metric(port, "jwks_keysets_refused") > refused_before, what="refusal")
    after = http_get(port, jwks_path(name))
    assert after.status == 200
    assert after.body == before.body and after.headers["etag"] == before.headers["etag"]
    cluster.delete("configmaps", f"{name}-jwks", NAMESPACE)


def test_a_configmap_refused_from_the_start_is_503(
    served: tuple[EmulatedCluster, int], rsa_private: rsa.RSAPrivateKey
) -> None:
    cluster, port = served
    leaked = jwks_text({**public_jwk(rsa_private), **private_members(rsa_private)})
    publish(cluster, "leaky", {"jwks.json": leaked}, namespace=NAMESPACE)
    answer = wait_answer(port, jwks_path("leaky"), lambda a: a.status == 503)
    assert answer.headers["cache-control"] == "no-store"
    for path in ("/metrics", jwks_path("leaky"), "/.well-known/jwks.json"):
        assert b'"d"' not in http_get(port, path).body


def test_labels_decide_what_is_served(
    served: tuple[EmulatedCluster, int], ec_private: ec.EllipticCurvePrivateKey
) -> None:
    cluster, port = served
    cluster.create(configmap("unlabelled", None, configmap_data(public_jwk(ec_private))))
    publish(cluster, "relabel", configmap_data(public_jwk(ec_private)), namespace=NAMESPACE)
    publish(cluster, "renamed", configmap_data(), namespace=NAMESPACE)
    eventually(lambda: http_get(port, jwks_path("relabel")).status == 200)
    assert http_get(port, jwks_path("unlabelled")).status == 404
    # Relabelled for another keyset, it is served for neither: "renamed" publishes
    # through renamed-jwks only, and "relabel" no longer has a ConfigMap of its own.
    cluster.patch(
        "configmaps", "relabel-jwks", {"metadata": {"labels": {KEYSET_LABEL: "renamed"}}}, NAMESPACE
    )
    eventually(lambda: http_get(port, jwks_path("relabel")).status == 404, what="unbound")
    time.sleep(0.3)
    assert http_get(port, jwks_path("renamed")).status == 503  # its own, empty, ConfigMap
    cluster.patch(
        "configmaps", "relabel-jwks", {"metadata": {"labels": {KEYSET_LABEL: "relabel"}}}, NAMESPACE
    )
    eventually(lambda: http_get(port, jwks_path("relabel")).status == 200, what="label back")


@pytest.mark.parametrize("how", ["end", "abort", "gone"])
def test_watch_dropped_recovers(
    served: tuple[EmulatedCluster, int], how: str, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    cluster, port = served
    name = f"drop-{how}"
    publish(cluster, name, configmap_data(public_jwk(ec_private)), namespace=NAMESPACE)
    eventually(lambda: http_get(port, jwks_path(name)).status == 200)
    restarts = (
        metric(port, 'jwks_watch_restarts_total{reason="closed"}')
        + metric(port, 'jwks_watch_restarts_total{reason="dropped"}')
        + metric(port, 'jwks_watch_restarts_total{reason="expired"}')
        + metric(port, 'jwks_watch_restarts_total{reason="error"}')
    )
    if how == "gone":
        cluster.compact()
    assert cluster.drop_watches(abort=how == "abort") >= 1
    # A change made while the stream is down must still arrive (through the re-list).
    fresh = public_jwk(ec_key())
    publish(cluster, name, configmap_data(fresh), namespace=NAMESPACE)
    eventually(
        lambda: http_get(port, jwks_path(name)).json().get("keys") == [fresh],
        what="change after the drop",
    )
    total = sum(
        metric(port, f'jwks_watch_restarts_total{{reason="{reason}"}}')
        for reason in ("closed", "dropped", "expired", "error")
    )
    assert total > restarts
    eventually(lambda: cluster.watch_count() >= 1, what="a new watch")


def test_api_errors_back_off_and_keep_serving(
    served: tuple[EmulatedCluster, int], ec_private: ec.EllipticCurvePrivateKey
) -> None:
    cluster, port = served
    publish(cluster, "outage", configmap_data(public_jwk(ec_private)), namespace=NAMESPACE)
    before = wait_answer(port, jwks_path("outage"), lambda a: a.status == 200)
    errors = metric(port, 'jwks_watch_restarts_total{reason="error"}')
    cluster.fail_next(500, 3, verb="list", plural="configmaps")
    cluster.fail_next(500, 3, verb="watch", plural="configmaps")
    cluster.drop_watches()
    eventually(lambda: metric(port, 'jwks_watch_restarts_total{reason="error"}') > errors)
    assert http_get(port, jwks_path("outage")).body == before.body  # still served
    assert http_get(port, "/readyz").status == 200
    fresh = public_jwk(ec_key())
    publish(cluster, "outage", configmap_data(fresh), namespace=NAMESPACE)
    eventually(
        lambda: http_get(port, jwks_path("outage")).json().get("keys") == [fresh],
        timeout=20,
        what="recovered",
    )


def test_only_configmaps_and_keysets_are_ever_requested(
    served: tuple[EmulatedCluster, int],
) -> None:
    cluster, _ = served
    calls = cluster.api_calls()
    assert calls, "the server made no API call at all"
    assert {call.resource for call in calls} == {"configmaps", "jwkskeysets"}
    assert {call.verb for call in calls} <= {"list", "watch"}


def test_namespace_scope_and_default_keyset(
    tmp_path: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    with emulated_cluster(tmp_path / "cluster") as cluster:
        for namespace in ("team-a", "team-b"):
            cluster.ensure_namespace(namespace)
            publish(cluster, "k", configmap_data(public_jwk(ec_private)), namespace=namespace)
        # --kubeconfig wins over KUBECONFIG, as with kubectl.
        _, port = start_serve(
            cluster,
            "--namespace",
            "team-a",
            "--default-keyset",
            "team-a/k",
            "--kubeconfig",
            str(cluster.kubeconfig),
            env={"KUBECONFIG": str(tmp_path / "elsewhere")},
        )
        assert http_get(port, jwks_path("k", "team-a")).status == 200
        assert http_get(port, jwks_path("k", "team-b")).status == 404
        assert http_get(port, "/.well-known/jwks.json").json() == {"keys": [public_jwk(ec_private)]}
        assert {call.namespace for call in cluster.api_calls()} == {"team-a"}


def test_sigterm_finishes_in_flight_requests_and_exits_0(
    tmp_path: Path, ec_private: ec.EllipticCurvePrivateKey
) -> None:
    with emulated_cluster(tmp_path / "cluster") as cluster:
        cluster.ensure_namespace(NAMESPACE)
        publish(cluster, "t", configmap_data(public_jwk(ec_private)), namespace=NAMESPACE)
        process, port = start_serve(cluster)
        in_flight = socket.create_connection(("127.0.0.1", port), timeout=10)
        in_flight.sendall(f"GET {jwks_path('t')} HTTP/1.1\r\nHost: t\r\n".encode())
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert process.running  # waiting for the in-flight request
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        in_flight.sendall(b"\r\n")
        received = b""
        while chunk := in_flight.recv(65536):
            received += chunk
        in_flight.close()
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Connection: close" in head
        assert json.loads(body) == {"keys": [public_jwk(ec_private)]}
        assert process.wait(15) == 0
        assert "Traceback" not in process.output()


@pytest.mark.parametrize(
    "flags",
    [
        ["--port", "70000"],
        ["--port", "http"],
        ["--max-age", "-1"],
        ["--max-age", "soon"],
        ["--namespace", "Not_A_Namespace"],
        ["--namespace", "a", "--all-namespaces"],
        ["--default-keyset", "no-slash"],
        ["--metrics-port", "-5"],
        ["--log-level", "LOUD"],
    ],
)
def test_bad_flags_exit_2(flags: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jwks_operator", "serve", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[2] / "operator",
    )
    assert result.returncode == 2
    assert "error" in result.stderr and "Traceback" not in result.stderr


def test_missing_kubeconfig_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jwks_operator", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "KUBECONFIG": str(tmp_path / "missing"),
            "HOME": str(tmp_path),
            "PATH": "/usr/bin:/bin",
        },
        cwd=Path(__file__).resolve().parents[2] / "operator",
    )
    assert result.returncode == 2
    assert "kube" in result.stderr.lower() and "Traceback" not in result.stderr
