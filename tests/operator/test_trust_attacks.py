"""Attacks on what the JWKS server serves, by someone who may write ConfigMaps but not status.

The real operator and the real ``jwks-operator serve`` run against the emulated API. The
attacker holds a key pair of their own and tries to get it served for a keyset (so that
every verifier would accept tokens they sign) by planting, editing or relabelling
ConfigMaps. A watcher polls the server all along and records every kid it ever served,
so "never served" means never, not "not at the end". After each attack the keyset's
real keys must be served again (the operator repairs what it owns).
"""

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from jwks_operator.core.contract import (
    CONFIGMAP_JWKS,
    KEYSET_LABEL,
    KEYSET_UID_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
)
from tests.operator.harness import (
    KEYSETS,
    OperatorUnderTest,
    condition,
    manifest,
    rotation,
    sign_token,
)
from tests.server.support import ec_key, public_jwk
from tests.server.test_e2e import http_get, start_serve
from tests.support.cluster import EmulatedCluster

pytestmark = pytest.mark.timeout(180)

LONG = rotation("1h", "1m", "1h")
ATTACKER = ec_key()
ATTACKER_JWK = public_jwk(ATTACKER)


class Watcher:
    """Polls one keyset's JWKS on the server in a thread; remembers every kid served."""

    def __init__(self, port: int, name: str, namespace: str = "default") -> None:
        self.port = port
        self.path = f"/{namespace}/{name}/.well-known/jwks.json"
        self.ever: set[str] = set()
        self.last: list[dict[str, Any]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Watcher":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = http_get(self.port, self.path)
            keys = answer.json().get("keys", []) if answer.status == 200 else []
            self.last = keys
            self.ever |= {key["kid"] for key in keys}
            self.polls += 1
            time.sleep(0.01)

    def served(self) -> set[str]:
        return {key["kid"] for key in self.last}

    def wait_served(self, kids: set[str], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.served() != kids:
            assert time.monotonic() < deadline, f"served {self.served()}, wanted {kids}"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def port(shared_cluster: EmulatedCluster, operator: OperatorUnderTest) -> Iterator[int]:
    process, port = start_serve(shared_cluster)
    yield port
    process.terminate()
    assert "Traceback" not in process.output()


def real_keyset(operator: OperatorUnderTest, name: str) -> tuple[dict[str, Any], set[str]]:
    operator.create(manifest(name, algorithm="ES256", rotation=LONG))
    keyset = operator.wait_ready(name)
    return keyset, set(operator.kids(f"{name}-jwks"))


def planted(name: str, keyset: str, keys: list[dict[str, Any]], uid: str = "") -> dict[str, Any]:
    """A ConfigMap labelled exactly as the operator labels, holding the attacker's key."""
    annotations = {KEYSET_UID_ANNOTATION: uid} if uid else {}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {KEYSET_LABEL: keyset, MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": annotations,
        },
        "data": {CONFIGMAP_JWKS: json.dumps({"keys": keys})},
    }


def untrusted(port: int, reason: str) -> float:
    for line in http_get(port, "/metrics").body.decode().splitlines():
        if line.startswith(f'jwks_untrusted_total{{reason="{reason}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_planted_configmap_is_never_served_with_or_without_the_real_one(
    operator: OperatorUnderTest, port: int
) -> None:
    # Planted before the keyset exists, so it is the older claim (the old rule's winner).
    operator.cluster.create(planted("plant-evil", "plant", [ATTACKER_JWK]))
    time.sleep(1.1)  # creationTimestamp has a resolution of one second
    keyset, real = real_keyset(operator, "plant")
    untrusted_condition = operator.wait_condition("plant", "UntrustedConfigMap", status="True")
    assert "plant-evil" in str((condition(untrusted_condition) or {}).get("message"))
    operator.wait_event("plant", "UntrustedConfigMap")
    with Watcher(port, "plant") as watcher:
        watcher.wait_served(real)
        # The attacker deletes the real ConfigMap: the operator rebuilds it, and the
        # plant (even one carrying the keyset's UID) is served neither meanwhile nor after.
        uid = keyset["metadata"]["uid"]
        operator.cluster.create(planted("plant-evil-2", "plant", [ATTACKER_JWK], uid))
        operator.cluster.delete("v1/configmaps", "plant-jwks")
        operator.wait_event("plant", "PublicKeysRepaired")
        watcher.wait_served(real)
        time.sleep(0.3)
    assert ATTACKER_JWK["kid"] not in watcher.ever and watcher.polls > 10
    assert untrusted(port, "unbound") >= 2
    # Removed, the plants are no longer reported.
    operator.cluster.delete("v1/configmaps", "plant-evil")
    operator.cluster.delete("v1/configmaps", "plant-evil-2")
    operator.wait_condition("plant", "KeysPublished", status="True")


def test_a_configmap_in_the_real_name_after_deletion_is_never_served(
    operator: OperatorUnderTest, port: int
) -> None:
    keyset, real = real_keyset(operator, "squat")
    with Watcher(port, "squat") as watcher:
        watcher.wait_served(real)
        operator.cluster.delete("v1/configmaps", "squat-jwks")
        uid = keyset["metadata"]["uid"]
        try:  # the operator may win the race and recreate it first: then edit it
            operator.cluster.create(planted("squat-jwks", "squat", [ATTACKER_JWK], uid))
        except Exception:
            operator.cluster.patch(
                "v1/configmaps",
                "squat-jwks",
                {"data": {CONFIGMAP_JWKS: json.dumps({"keys": [ATTACKER_JWK]})}},
            )
        watcher.wait_served(real)
        time.sleep(0.3)
    assert ATTACKER_JWK["kid"] not in watcher.ever


@pytest.mark.parametrize("edit", ["added", "swapped", "removed"])
def test_an_edited_configmap_never_serves_what_status_does_not_vouch_for(
    operator: OperatorUnderTest, port: int, edit: str
) -> None:
    name = f"edit-{edit}"
    keyset, real = real_keyset(operator, name)
    active = keyset["status"]["activeKid"]
    with Watcher(port, name) as watcher:
        watcher.wait_served(real)
        keys = operator.jwks(f"{name}-jwks")["keys"]
        before = untrusted(port, "thumbprint") + untrusted(port, "unlisted")
        if edit == "added":
            keys = [*keys, ATTACKER_JWK]
        elif edit == "swapped":  # the attacker's material under the active key's kid
            keys = [{**ATTACKER_JWK, "kid": active} if k["kid"] == active else k for k in keys]
        else:
            keys = [k for k in keys if k["kid"] == active]
        operator.cluster.patch(
            "v1/configmaps", f"{name}-jwks", {"data": {CONFIGMAP_JWKS: json.dumps({"keys": keys})}}
        )
        operator.wait_event(name, "PublicKeysRepaired")
        watcher.wait_served(real)
        time.sleep(0.3)
    assert ATTACKER_JWK["kid"] not in watcher.ever
    if edit != "removed":
        assert untrusted(port, "thumbprint") + untrusted(port, "unlisted") > before
    served_material = {json.dumps(k, sort_keys=True) for k in watcher.last}
    assert json.dumps({**ATTACKER_JWK, "kid": active}, sort_keys=True) not in served_material


def test_another_keysets_configmap_is_not_served_for_this_one(
    operator: OperatorUnderTest, port: int
) -> None:
    _, mine = real_keyset(operator, "mine")
    _, theirs = real_keyset(operator, "theirs")
    with Watcher(port, "mine") as watcher:
        watcher.wait_served(mine)
        # Relabel "theirs"'s real ConfigMap (bound to its own UID) to claim "mine".
        operator.cluster.patch(
            "v1/configmaps", "theirs-jwks", {"metadata": {"labels": {KEYSET_LABEL: "mine"}}}
        )
        operator.cluster.delete("v1/configmaps", "mine-jwks")
        operator.wait_event("mine", "PublicKeysRepaired")
        watcher.wait_served(mine)
        time.sleep(0.3)
    assert not watcher.ever & theirs


def test_wiped_status_serves_nothing_until_the_operator_restores_it(
    operator: OperatorUnderTest, port: int
) -> None:
    _, real = real_keyset(operator, "wiped")
    with Watcher(port, "wiped") as watcher:
        watcher.wait_served(real)
        before = untrusted(port, "unlisted")
        operator.cluster.patch(
            KEYSETS, "wiped", {"status": {"keys": None}}, "default", subresource="status"
        )
        # The server fails closed (it refuses every key: none is listed) until the operator,
        # woken by the change of what status lists, writes status again; then the keys are
        # served again. The empty moment may be too short for the watcher to see.
        deadline = time.monotonic() + 10
        while untrusted(port, "unlisted") < before + len(real):
            assert time.monotonic() < deadline, "the server never saw the wiped status"
            time.sleep(0.02)
        watcher.wait_served(real)
    assert watcher.ever == real
    # The operator restores status.keys (it may land a moment after the server re-served).
    operator.wait_keyset(
        "wiped", lambda o: {k["kid"] for k in o.get("status", {}).get("keys") or ()} == real
    )


def test_verify_follows_the_same_rule(operator: OperatorUnderTest, port: int) -> None:
    _, real = real_keyset(operator, "gate")
    with Watcher(port, "gate") as watcher:
        watcher.wait_served(real)
    _, genuine = sign_token(operator.secret_data("gate-signing"), exp=int(time.time()) + 300)
    pem = ATTACKER.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    forged = jwt.encode(
        {"sub": "mallory", "exp": int(time.time()) + 300},
        pem,
        algorithm="ES256",
        headers={"kid": ATTACKER_JWK["kid"]},
    )
    keys = [*operator.jwks("gate-jwks")["keys"], ATTACKER_JWK]
    operator.cluster.patch(
        "v1/configmaps", "gate-jwks", {"data": {CONFIGMAP_JWKS: json.dumps({"keys": keys})}}
    )
    operator.cluster.create(planted("gate-evil", "gate", [ATTACKER_JWK]))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        forged_answer = http_get(
            port, "/default/gate/verify", {"Authorization": f"Bearer {forged}"}
        )
        assert forged_answer.status == 401, forged_answer.body
        time.sleep(0.05)
    ok = http_get(port, "/default/gate/verify", {"Authorization": f"Bearer {genuine}"})
    assert ok.status == 200, ok.body
