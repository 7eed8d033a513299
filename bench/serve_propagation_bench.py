"""Propagation: from a ConfigMap change in the (emulated) API to the new body being served.

Starts the emulated API server and a real ``jwks-operator serve`` process connected to it
through a kubeconfig, then makes N changes (a new key each time) and, for each, measures
the time from just before the operator's two writes (status listing the new kid, then the
ConfigMap holding it) are sent to the first GET that returns the new body
(polled over a keep-alive connection). Goal (issue 4): p99 under 1 s. For contrast, a
ConfigMap mounted as a volume into nginx changes only after the kubelet's sync (its
default period is a minute, plus the cache TTL).

Run: ``.venv/bin/python bench/serve_propagation_bench.py [--changes 100]``.
"""

import argparse
import http.client
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from tests.server.support import configmap_data, ec_key, public_jwk, publish  # noqa: E402
from tests.support.cluster import emulated_cluster  # noqa: E402

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
PATH = "/identity/auth/.well-known/jwks.json"


def new_key() -> dict[str, str]:
    """A real public key with its thumbprint as kid: the server serves nothing else."""
    return public_jwk(ec_key())


def main() -> None:
    parser = argparse.ArgumentParser(description="ConfigMap -> served propagation bench")
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="propagation-") as temp,
        emulated_cluster(Path(temp)) as cluster,
    ):
        cluster.ensure_namespace("identity")
        initial = new_key()
        publish(cluster, "auth", configmap_data(initial), namespace="identity")
        process = cluster.run_cli("serve", "--host", "127.0.0.1", "--port", "0")
        match = LISTENING.search(process.wait_for_output(LISTENING, timeout=30))
        assert match is not None
        port = int(match.group(1))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def served_kid() -> str:
            connection.request("GET", PATH)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                return ""
            return str(json.loads(body)["keys"][0]["kid"])

        deadline = time.monotonic() + 30
        while served_kid() != initial["kid"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the server never served the initial keyset")
            time.sleep(0.05)
        delays = []
        polls = 0
        for change in range(args.changes):
            key = new_key()
            kid = key["kid"]
            started = time.perf_counter()
            # As the operator publishes: status lists the kid, then the ConfigMap holds it.
            publish(cluster, "auth", configmap_data(key), namespace="identity")
            while served_kid() != kid:
                polls += 1
                if time.perf_counter() - started > 10:
                    raise RuntimeError(f"change {change} not served after 10 s")
            delays.append(time.perf_counter() - started)
            time.sleep(0.02)
        connection.close()
        process.terminate()

    delays.sort()
    ms = 1000.0
    p99 = delays[max(0, int(len(delays) * 0.99) - 1)]
    print(
        f"{len(delays)} key changes (status + ConfigMap PATCH via the API, as the operator "
        "writes them -> new body served by serve)"
    )
    print(
        f"p50 {statistics.median(delays) * ms:.1f} ms, p99 {p99 * ms:.1f} ms, "
        f"max {delays[-1] * ms:.1f} ms (includes the PATCH round trip itself)"
    )
    print(f"goal: p99 < 1 s -> {'met' if p99 < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
