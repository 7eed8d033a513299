"""Two peered operator replicas, as the chart deploys them with ``operator.replicas: 2``.

The chart turns the operator into a StatefulSet whose pods run ``--peering`` with their pod
index as priority, and creates the (Cluster)KopfPeering object. Here both replicas run as
local processes with exactly those arguments; the one with the higher priority works, the
other waits. When the active one is killed (kill -9: no goodbye in the peering object),
the other takes over once the dead peer's lifetime has lapsed in the API server's copy of
the peering object. Afterwards the release goes back to one replica.
"""

import signal
import time

from tests.e2e_cluster import kube
from tests.e2e_cluster.conftest import Workloads

NS = kube.KEYS_NAMESPACE


def test_two_peered_replicas_only_one_works_and_the_other_takes_over(
    workloads: Workloads, local_plane: object
) -> None:
    local = workloads.local
    assert local is not None and workloads.operator is not None
    # The peering CRDs came with deploy/crds (test_chart): the release must not own them.
    kube.install_chart("operator.replicas=2", "crds.peering=false")
    kube.wait_for(
        "the peering object",
        lambda: kube.kubectl("get", "clusterkopfpeerings", "-o", "name").strip(),
    )
    args, _ = local.container_args(kube.OPERATOR)
    assert "--peering" in args and "$(POD_INDEX)" in args
    workloads.operator.terminate()
    leader = local.start_operator(priority=1)
    leader.wait_for_output("Resuming operations", timeout=60)
    follower = local.start_operator(priority=0)
    try:
        time.sleep(3)  # the follower has read the peering object and paused
        kube.apply(kube.keyset_doc(NS, "peered-a", algorithm="ES256"))
        kube.wait_for("peered-a Ready", lambda: kube.ready(NS, "peered-a"))
        assert "peered-a" not in follower.output()  # the follower never touched it

        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        killed = time.monotonic()
        kube.apply(kube.keyset_doc(NS, "peered-b", algorithm="ES256"))
        kube.wait_for("the follower to take over", lambda: kube.ready(NS, "peered-b"), timeout=150)
        takeover = time.monotonic() - killed
        assert "peered-b" in follower.output()
        assert takeover < 150
    finally:
        follower.terminate()
        kube.helm(
            "upgrade",
            kube.RELEASE,
            str(kube.CHART),
            "--namespace",
            kube.NAMESPACE,
            "--reset-values",
        )
        workloads.operator = local.start_operator()
    kube.wait_for("the single replica again", lambda: kube.ready(NS, "peered-a"))
