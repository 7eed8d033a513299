"""Rotated credentials: after a 401 the operator logs in again, as kubectl would.

The emulator checks a bearer token; the test swaps it (as an expiring service-account or
exec-plugin token would change) and rewrites the kubeconfig. Kopf re-runs the login
handler, and the operator's own API client, which shares that login, retries its request
once with the new credentials.
"""

import pytest
import yaml

from tests.operator.harness import KEYSETS, OperatorUnderTest, manifest, rotation
from tests.support.cluster import EmulatedCluster

pytestmark = pytest.mark.timeout(120)


def test_a_401_makes_the_operator_log_in_again(shared_cluster: EmulatedCluster) -> None:
    operator = OperatorUnderTest(shared_cluster)
    operator.start()
    operator.create(manifest("creds", algorithm="ES256", rotation=rotation("1h", "1m", "1h")))
    operator.wait_ready("creds")

    def swap() -> None:
        shared_cluster.emulator.token = "rotated-token"

    # As with a real token rotation, the new token is on disk before the old one expires
    # (a re-login that finds only the rejected token makes Kopf give up, by design).
    config = yaml.safe_load(shared_cluster.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "rotated-token"
    shared_cluster.kubeconfig.write_text(yaml.safe_dump(config))
    shared_cluster.call(swap)
    shared_cluster.token = "rotated-token"  # the harness's own requests

    operator.cluster.patch(KEYSETS, "creds", {"spec": {"rotation": {"retireAfter": "2h"}}})
    operator.wait_ready("creds", generation=2, timeout=60)
    assert operator.settle("creds") == 2
    rejected = [
        r
        for r in shared_cluster.request_log()
        if r.user_agent == "jwks-operator" and r.status == 401
    ]
    assert rejected, "the operator's client never met the rotated token"
    operator.stop()
    assert "Traceback" not in operator.output()
