"""SIGKILL the operator at random moments during second-scale rotations, and restart it.

A ``RotationObserver`` checks, all along, that no published kid lacks its private key and
that no token of a key that was ever active stops verifying before ``retireAfter``. After
the last restart the keysets must rotate on, and their stored state must be consistent.
Kill moments are random (the seed is printed, and ``JWKS_KILL_SEED`` replays it); the
longer soak with many more kills is ``bench/operator_bench.py``.
"""

import json
import os
import random
import time

import pytest

from jwks_operator.core.contract import SECRET_KEYS
from tests.operator.harness import OperatorUnderTest, manifest, rotation
from tests.operator.killing import kill_loop
from tests.operator.observer import RotationObserver
from tests.support.cluster import EmulatedCluster

pytestmark = pytest.mark.timeout(180)
KILLS = 6
KEYSETS = (("kill-ec", "ES256"), ("kill-rsa", "RS256"))


def test_sigkill_at_random_moments_loses_no_key(
    shared_cluster: EmulatedCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("JWKS_KILL_SEED") or time.time_ns() % 1_000_000)
    chance = random.Random(seed)
    operator = OperatorUnderTest(shared_cluster, namespaces=("default",))
    for name, algorithm in KEYSETS:
        operator.create(manifest(name, algorithm=algorithm, rotation=rotation("3s", "1s", "2s")))
    operator.start()
    for name, _ in KEYSETS:
        operator.wait_ready(name)

    names = [name for name, _ in KEYSETS]
    with RotationObserver(shared_cluster, [("default", n, 2.0) for n in names]) as observer:
        report = kill_loop(operator, names, KILLS, chance)
        active_before = observer.active_keys_seen
        shared_cluster.wait_for(
            lambda: observer.active_keys_seen >= active_before + 2 * len(KEYSETS),
            30,
            message="rotations continue after the last restart",
        )
    operator.stop()

    with capsys.disabled():
        print(
            f"\nkill-restart: seed {seed}, {report.kills} kills survived "
            f"({dict(report.moments)}; {report.torn} mid-reconciliation), "
            f"{observer.rounds} checks, {observer.active_keys_seen} active keys"
        )
    assert observer.violations == [], f"seed {seed}: {observer.violations[:10]}"
    assert report.kills == KILLS
    assert observer.rounds > 100
    for name, _ in KEYSETS:
        state = json.loads(operator.secret_data(f"{name}-signing")[SECRET_KEYS])
        states = [key["state"] for key in state["keys"]]
        assert states.count("active") == 1 and states.count("next") == 1
        published = operator.kids(f"{name}-jwks")
        assert len(published) == len(set(published))
        assert {key["kid"] for key in state["keys"]} == set(published)
