"""Propagation: from a ConfigMap change in the (emulated) API to the new body being served.

Starts the emulated API server and a real ``jwks-operator serve`` process connected to it
through a kubeconfig, then makes N changes (a new key each time) and, for each, measures
the time from just before the PATCH is sent to the first GET that returns the new body
(polled over a keep-alive connection). Goal (issue 4): p99 under 1 s. For contrast, a
ConfigMap mounted as a volume into nginx changes only after the kubelet's sync (its
default period is a minute, plus the cache TTL).

Run: ``.venv/bin/python bench/serve_propagation_bench.py [--changes 100]``.
"""

import argparse
import base64
import http.client
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from tests.support.cluster import emulated_cluster  # noqa: E402

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
PATH = "/identity/auth/.well-known/jwks.json"


def jwks(kid: str) -> str:
    key = {
        "kty": "EC",
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
        "crv": "P-256",
        "x": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(),
        "y": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(),
    }
    return json.dumps({"keys": [key]})


def main() -> None:
    parser = argparse.ArgumentParser(description="ConfigMap -> served propagation bench")
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="propagation-") as temp,
        emulated_cluster(Path(temp)) as cluster,
    ):
        cluster.ensure_namespace("identity")
        cluster.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "auth-jwks",
                    "namespace": "identity",
                    "labels": {
                        "jwks.dev/keyset": "auth",
                        "app.kubernetes.io/managed-by": "jwks-operator",
                    },
                },
                "data": {"jwks.json": jwks("initial")},
            }
        )
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
        while served_kid() != "initial":
            if time.monotonic() > deadline:
                raise RuntimeError("the server never served the initial keyset")
            time.sleep(0.05)
        delays = []
        polls = 0
        for change in range(args.changes):
            kid = f"change-{change}"
            started = time.perf_counter()
            cluster.patch("configmaps", "auth-jwks", {"data": {"jwks.json": jwks(kid)}}, "identity")
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
    print(f"{len(delays)} ConfigMap changes (PATCH via the API -> new body served by serve)")
    print(
        f"p50 {statistics.median(delays) * ms:.1f} ms, p99 {p99 * ms:.1f} ms, "
        f"max {delays[-1] * ms:.1f} ms (includes the PATCH round trip itself)"
    )
    print(f"goal: p99 < 1 s -> {'met' if p99 < 1 else 'NOT met'}")


if __name__ == "__main__":
    main()
