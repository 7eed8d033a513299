"""Faults only a real control plane has: kill -9 of kube-apiserver or etcd in the middle of
rotations, watches that expire, and 429s from API priority and fairness.

The judge is a user's-eye probe (``RotationProbe``): a signer that re-reads the Secret's
``signing.pem`` and ``signing.kid`` the way a service mounting it would, and signs a token
each time; and a verifier that fetches the served JWKS and checks that every token still
inside its retireAfter window verifies. Invariant 3 of DESIGN.md says each such token must.
"""

from __future__ import annotations

import base64
import json
import signal
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest

from jwks_operator.core import contract
from tests.controlplane.cluster import ControlPlane, admin_ssl_context
from tests.e2e_cluster import kube
from tests.e2e_cluster.conftest import Workloads

pytestmark = pytest.mark.usefixtures("workloads")
NS = kube.KEYS_NAMESPACE
# Seconds: each key signs for INTERVAL, is served PRE_PUBLISH before and RETIRE_AFTER after.
INTERVAL, PRE_PUBLISH, RETIRE_AFTER = 10, 3, 12
# The signer re-reads the Secret every SIGNER_PERIOD, so it may sign with a key up to that
# long after the key stopped signing (as a mounted Secret lags); tokens are judged with
# that margin, and the verifier's own fetch lag.
SIGNER_PERIOD = 0.3
MARGIN = 2.0


@dataclass
class Token:
    token: str
    kid: str
    signed_at: float


@dataclass
class RotationProbe:
    """Signs with what the Secret holds; checks tokens against what the server serves."""

    plane: ControlPlane
    base: str
    name: str
    tokens: list[Token] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    checks: int = 0
    kids_seen: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._context: ssl.SSLContext = admin_ssl_context(self.plane)
        self._threads = [
            threading.Thread(target=self._sign_loop, daemon=True),
            threading.Thread(target=self._verify_loop, daemon=True),
        ]

    def __enter__(self) -> RotationProbe:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _read_secret(self) -> dict[str, str] | None:
        url = f"{self.plane.server}/api/v1/namespaces/{NS}/secrets/{self.name}-signing"
        try:
            with urllib.request.urlopen(url, timeout=2, context=self._context) as response:
                data = json.loads(response.read())["data"]
        except OSError:
            return None  # the API server is down: a mounted Secret keeps its last content
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def _sign_loop(self) -> None:
        current: dict[str, str] | None = None
        while not self._stop.is_set():
            current = self._read_secret() or current
            if current is not None:
                kid = current[contract.SECRET_SIGNING_KID].strip()
                now = time.time()
                token = jwt.encode(
                    {"sub": "probe", "iat": int(now), "exp": int(now) + 600},
                    current[contract.SECRET_SIGNING_PEM],
                    algorithm="ES256",
                    headers={"kid": kid},
                )
                self.tokens.append(Token(token, kid, now))
            self._stop.wait(SIGNER_PERIOD)

    def _verify_loop(self) -> None:
        url = f"{self.base}/{NS}/{self.name}/.well-known/jwks.json"
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    jwks = json.loads(response.read())
            except OSError:
                self._stop.wait(0.2)
                continue
            fetched = time.time()
            keys = {key["kid"]: key for key in jwks["keys"]}
            self.kids_seen |= set(keys)
            for token in list(self.tokens):
                due = fetched - token.signed_at < RETIRE_AFTER - MARGIN
                if not due or fetched - token.signed_at < MARGIN:
                    continue  # past its window, or too fresh for the signer's lag
                self.checks += 1
                key = keys.get(token.kid)
                if key is None:
                    self.failures.append(
                        f"token of {token.kid} signed {fetched - token.signed_at:.1f}s ago: "
                        "kid not served"
                    )
                    continue
                public = jwt.PyJWK(key).key
                try:
                    jwt.decode(token.token, public, algorithms=["ES256"])
                except jwt.PyJWTError as error:
                    self.failures.append(f"token of {token.kid}: {error}")
            self._stop.wait(0.25)


def fast_keyset(name: str) -> dict[str, Any]:
    rotation = {
        "interval": f"{INTERVAL}s",
        "prePublish": f"{PRE_PUBLISH}s",
        "retireAfter": f"{RETIRE_AFTER}s",
    }
    kube.apply(kube.keyset_doc(NS, name, algorithm="ES256", rotation=rotation))
    return kube.wait_for(f"{name} Ready", lambda: kube.ready(NS, name))


def active_kid(name: str) -> str:
    return str(kube.keyset(NS, name)["status"]["activeKid"])


def stored_kids(name: str) -> set[str]:
    data = kube.secret_data(NS, f"{name}-signing")
    return {key["kid"] for key in json.loads(data[contract.SECRET_KEYS])["keys"]}


def served_kids(base: str, name: str) -> set[str]:
    with urllib.request.urlopen(f"{base}/{NS}/{name}/.well-known/jwks.json", timeout=5) as r:
        return {key["kid"] for key in json.loads(r.read())["keys"]}


def wait_rotations(name: str, count: int, timeout: float) -> list[str]:
    seen = [active_kid(name)]
    deadline = time.monotonic() + timeout
    while len(seen) <= count and time.monotonic() < deadline:
        try:
            kid = active_kid(name)
        except AssertionError:
            kid = seen[-1]
        if kid != seen[-1]:
            seen.append(kid)
        time.sleep(0.3)
    assert len(seen) > count, f"only {len(seen) - 1} rotations in {timeout:.0f}s: {seen}"
    return seen


@pytest.mark.parametrize("process", ["kube-apiserver", "etcd"])
def test_kill_9_in_the_middle_of_rotations_loses_no_key_and_breaks_no_token(
    process: str, workloads: Workloads, local_plane: ControlPlane
) -> None:
    name = f"kill-{process.split('-')[-1]}"
    fast_keyset(name)
    with workloads.server_url() as base, RotationProbe(local_plane, base, name) as probe:
        wait_rotations(name, 1, timeout=60)
        # Right after a rotation the operator is writing: the retired key's removal and the
        # next key's publication are in flight. Kill mid-flight, stay down past a due time.
        time.sleep(INTERVAL / 2)
        local_plane.kill(process, signal.SIGKILL)
        time.sleep(INTERVAL / 2 + 2)
        local_plane.restart(process)
        if process == "etcd":
            kube.wait_for("the API server to reach etcd again", lambda: kube.keyset(NS, name))
        wait_rotations(name, 2, timeout=90)  # the operator recovered on its own
        time.sleep(2)
    assert probe.failures == [], probe.failures[:5]
    assert probe.checks > 50
    # No key lost: every key the server serves has its private half stored.
    with workloads.server_url() as base:
        kube.wait_for(
            "served keys to be stored keys",
            lambda: served_kids(base, name) <= stored_kids(name),
        )
    assert workloads.operator is None or workloads.operator.running
    assert workloads.server is None or workloads.server.running


def test_watches_resumed_after_a_restart_and_compaction_relist_and_miss_nothing(
    workloads: Workloads, local_plane: ControlPlane
) -> None:
    """A watch resumed from a resourceVersion the API server no longer has (it left the watch
    cache, and etcd compacted it, while the clients were stopped across an API server
    restart) gets 410 Gone: the server and the operator re-list, and what changed while
    they were away is served and acted on."""
    assert workloads.server is not None and workloads.operator is not None
    kube.apply(kube.keyset_doc(NS, "relist", algorithm="ES256"))
    status = kube.wait_for("relist Ready", lambda: kube.ready(NS, "relist"))["status"]
    server_log_before = len(workloads.server.output())
    _, listed = kube.api_request("GET", f"/api/v1/namespaces/{NS}/configmaps")
    old_version = listed["metadata"]["resourceVersion"]  # where the clients' watches stand
    workloads.server.send_signal(signal.SIGSTOP)
    workloads.operator.send_signal(signal.SIGSTOP)
    try:
        local_plane.kill("kube-apiserver")
        local_plane.restart("kube-apiserver")
        # Changes while both are away: a rotation request, and churn that pushes the
        # clients' resourceVersion out of the API server's watch cache. The cache keeps
        # every event younger than 75 s (growing as needed) and evicts older ones only
        # when full: a burst, a pause past 75 s, then a bigger burst.
        kube.kubectl(
            "-n", NS, "annotate", "--overwrite", "jwks", "relist", f"{contract.ROTATE_ANNOTATION}=1"
        )
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "churn"}})
        churn("a", 200)
        time.sleep(80)
        churn("b", 300)
        kube.wait_for(
            "the clients' resourceVersion to leave the watch cache",
            lambda: watch_answer(old_version) == 410,
            timeout=60,
        )
    finally:
        workloads.server.send_signal(signal.SIGCONT)
        workloads.operator.send_signal(signal.SIGCONT)
    rotated = kube.wait_for(
        "the rotation requested while the operator was stopped",
        lambda: (s := kube.keyset(NS, "relist")["status"])["activeKid"] == status["nextKid"] and s,
    )
    with workloads.server_url() as base:
        kube.wait_for(
            "the server to serve the rotation",
            lambda: (
                rotated["activeKid"] in served_kids(base, "relist")
                and rotated["nextKid"] in served_kids(base, "relist")
            ),
            timeout=60,
        )
    log = workloads.server.output()[server_log_before:]
    assert "listing again" in log or "retrying" in log, log[-2000:]


def churn(prefix: str, count: int) -> None:
    """``count`` new ConfigMaps in one ``kubectl apply`` (one watch event each)."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{prefix}{index}", "namespace": "churn"},
            "data": {"a": "b"},
        }
        for index in range(count)
    ]
    kube.apply({"apiVersion": "v1", "kind": "List", "items": items})


def watch_answer(resource_version: str) -> int:
    """The status a watch of ConfigMaps from ``resource_version`` gets: HTTP, or the code
    of its first ERROR event (how the API server says 410 Gone on a watch)."""
    path = (
        f"/api/v1/namespaces/{NS}/configmaps?watch=true&timeoutSeconds=1"
        f"&resourceVersion={resource_version}"
    )
    status, body = kube.api_request("GET", path)
    if status != 200:
        return status
    event = body if body.get("type") else {}
    return int(event.get("object", {}).get("code", 200)) if event.get("type") == "ERROR" else 200


STARVED = "jwks-test-starved"


def test_429s_from_priority_and_fairness_are_retried_after_retry_after(
    workloads: Workloads, local_plane: ControlPlane
) -> None:
    """The operator's ServiceAccount is put in a priority level of one share that rejects
    (no queues, no borrowing): a burst of keysets makes the API server answer 429 with
    Retry-After. Every keyset still becomes Ready, and the operator says it waited."""
    assert workloads.operator is not None
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": STARVED},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 1,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": STARVED},
        "spec": {
            "priorityLevelConfiguration": {"name": STARVED},
            "matchingPrecedence": 100,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"name": kube.OPERATOR, "namespace": kube.NAMESPACE},
                        }
                    ],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                }
            ],
        },
    }
    log_start = len(workloads.operator.output())
    kube.apply(level)
    kube.apply(schema)
    try:
        names = [f"burst-{index}" for index in range(24)]
        manifest = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [kube.keyset_doc(NS, name, algorithm="ES256") for name in names],
        }
        kube.apply(manifest)
        for name in names:

            def is_ready(keyset: str = name) -> dict[str, Any] | None:
                return kube.ready(NS, keyset)

            kube.wait_for(f"{name} Ready", is_ready, timeout=180)
        metrics = kube.kubectl("get", "--raw", "/metrics")
        rejected = [
            line
            for line in metrics.splitlines()
            if line.startswith("apiserver_flowcontrol_rejected_requests_total")
            and f'priority_level="{STARVED}"' in line
        ]
        assert rejected and sum(float(line.rsplit(" ", 1)[1]) for line in rejected) > 0, rejected
        log = workloads.operator.output()[log_start:]
        assert "429" in log, log[-3000:]
    finally:
        kube.kubectl("delete", "flowschema", STARVED, check=False)
        kube.kubectl("delete", "prioritylevelconfiguration", STARVED, check=False)
