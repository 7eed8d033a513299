"""Several replicas with ``--peering``: only the one with the highest priority reconciles.

Also the ``--liveness`` endpoint, which reports how many keysets the replica manages.
The emulator serves Kopf's KopfPeering resource like a real cluster with the CRDs of
deploy/crds; it cannot show the takeover after a replica dies (Kopf waits for the
peer's 60 s lifetime to lapse), which the real-cluster suite covers.
"""

import json
import socket
import urllib.request

import pytest

from tests.operator.harness import OperatorUnderTest, manifest, rotation, unpermitted_calls
from tests.support.cluster import EmulatedCluster

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_only_the_highest_priority_replica_reconciles(shared_cluster: EmulatedCluster) -> None:
    shared_cluster.create(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "jwks"}},
        namespace="default",
    )
    port = free_port()
    leader = OperatorUnderTest(
        shared_cluster,
        extra_args=(
            "--peering",
            "jwks",
            "--priority",
            "100",
            "--liveness",
            f"http://127.0.0.1:{port}/healthz",
        ),
    )
    follower = OperatorUnderTest(
        shared_cluster, extra_args=("--peering", "jwks", "--priority", "50")
    )
    # Kopf's peering replaces --standalone: drop the harness's default flag.
    leader.start_args = follower.start_args = ("run",)
    leader.start()
    leader.process.wait_for_output("Resuming operations", 30)
    follower.start()

    def priorities() -> list[int]:
        peering = shared_cluster.get("kopf.dev/v1/kopfpeerings", "jwks")
        return sorted(peer["priority"] for peer in (peering.get("status") or {}).values())

    # Both replicas announced themselves; the follower, seeing the leader from its first
    # look at the peering object, stays paused (Kopf logs nothing when it never resumed).
    shared_cluster.wait_for(lambda: priorities() == [50, 100], 30, message="both peers")

    leader.create(manifest("peered", algorithm="ES256", rotation=rotation("1h", "1m", "1h")))
    leader.wait_ready("peered")
    assert leader.settle("peered") == 1
    assert follower.reconciles("peered") == 0

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        health = json.loads(response.read())
    assert health["keysets"] == 1

    follower.stop()
    leader.stop()
    assert unpermitted_calls(shared_cluster, peering=True) == []
