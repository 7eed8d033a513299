"""The operator's timing and crash safety, measured against the API emulator.

Everything runs the real ``jwks-operator run`` in a subprocess through a kubeconfig, as
the end-to-end tests do (tests/operator/), with longer runs and numbers instead of
pass/fail:

1. create -> Ready, one keyset at a time (RS256 and ES256): median, p95, max;
2. 50 keysets created at once (RS256, the default; then ES256): per-object create ->
   Ready median, p95, max, and the time until the last one is Ready;
3. rotation punctuality: 10 keysets rotating every 3 s for 30 s; how late each
   activation and each removal happened after it was due (from ``keys.json``);
4. the SIGKILL loop of tests/operator/test_kill_restart.py with many more kills, with
   the rotation observer checking every invariant throughout (exit 1 on a violation).

Times are measured by the harness polling the API every 5-20 ms, so they include up to
that much observation delay. Run: ``.venv/bin/python bench/operator_bench.py
[--kills 30] [--seed N] [--skip-kills]``; the numbers go into docs/operator.md.
"""

import argparse
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from jwks_operator.core.contract import SECRET_KEYS  # noqa: E402
from jwks_operator.core.timefmt import parse_time  # noqa: E402
from tests.operator.harness import (  # noqa: E402
    KEYSETS,
    OperatorUnderTest,
    decode_secret,
    is_ready,
    manifest,
    rotation,
)
from tests.operator.killing import kill_loop  # noqa: E402
from tests.operator.observer import RotationObserver  # noqa: E402
from tests.support.cluster import EmulatedCluster, emulated_cluster  # noqa: E402


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def started_operator(cluster: EmulatedCluster, namespace: str) -> OperatorUnderTest:
    cluster.ensure_namespace(namespace)
    operator = OperatorUnderTest(cluster, namespaces=(namespace,), extra_args=())
    operator.start()
    operator.process.wait_for_output("Initial authentication has finished", 30)
    time.sleep(1.0)  # let Kopf's watches start: we measure reconciling, not Python startup
    return operator


def one_at_a_time(cluster: EmulatedCluster, algorithm: str, count: int) -> dict[str, float]:
    namespace = f"single-{algorithm.lower()}"
    operator = started_operator(cluster, namespace)
    samples = []
    for index in range(count):
        name = f"s{index:02d}"
        started = time.monotonic()
        operator.create(manifest(name, namespace, algorithm=algorithm))

        def ready(name: str = name) -> bool:
            return is_ready(operator.keyset(name, namespace))

        cluster.wait_for(ready, 30, interval=0.005)
        samples.append(time.monotonic() - started)
    operator.stop()
    return summary(samples)


def all_at_once(cluster: EmulatedCluster, algorithm: str, count: int) -> dict[str, Any]:
    namespace = f"fleet-{algorithm.lower()}"
    operator = started_operator(cluster, namespace)
    created: dict[str, float] = {}
    ready: dict[str, float] = {}
    first = time.monotonic()
    for index in range(count):
        name = f"f{index:02d}"
        operator.create(manifest(name, namespace, algorithm=algorithm))
        created[name] = time.monotonic()

    def poll() -> bool:
        now = time.monotonic()
        for item in cluster.list_objects(KEYSETS, namespace):
            name = item["metadata"]["name"]
            if name not in ready and is_ready(item):
                ready[name] = now
        return len(ready) == count

    cluster.wait_for(poll, 180, interval=0.02)
    latencies = [ready[name] - created[name] for name in created]
    reconciles = sum(operator.reconciles(name, namespace) for name in created)
    operator.stop()
    return {
        **summary(latencies),
        "all_ready_after_s": round(max(ready.values()) - first, 2),
        "reconciles": reconciles,
    }


def punctuality(cluster: EmulatedCluster, keysets: int, seconds: float) -> dict[str, Any]:
    namespace = "punctual"
    operator = started_operator(cluster, namespace)
    interval, pre_publish, retire_after = 3.0, 1.0, 2.0
    names = [f"p{index}" for index in range(keysets)]
    for name in names:
        operator.create(
            manifest(name, namespace, algorithm="ES256", rotation=rotation("3s", "1s", "2s"))
        )
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    gone_at: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name in names:
            secret = operator.secret(f"{name}-signing", namespace)
            if secret is None:
                continue
            polled = time.time()
            present = set()
            for key in json.loads(decode_secret(secret)[SECRET_KEYS])["keys"]:
                seen[(name, key["kid"])] = key
                present.add(key["kid"])
            for owner, kid in seen:
                if owner == name and kid not in present:
                    gone_at.setdefault((owner, kid), polled)
        time.sleep(0.05)
    activation_late: list[float] = []
    removal_late: list[float] = []
    for name in names:
        keys = sorted(
            (key for (owner, _), key in seen.items() if owner == name and key.get("activatedAt")),
            key=lambda key: key["activatedAt"],
        )
        for previous, key in itertools.pairwise(keys):
            due = max(
                parse_time(previous["activatedAt"]).timestamp() + interval,
                parse_time(key["publishedAt"]).timestamp() + pre_publish,
            )
            activation_late.append(parse_time(key["activatedAt"]).timestamp() - due)
    for (_, kid), left in gone_at.items():
        last = next(key for (_, k), key in seen.items() if k == kid)
        if last.get("removesAt"):
            # Upper bound: includes the time until this poll noticed the removal.
            removal_late.append(left - parse_time(last["removesAt"]).timestamp())
    reconciles = {name: operator.reconciles(name, namespace) for name in names}
    revisions = {
        name: (operator.keyset(name, namespace) or {}).get("status", {}).get("revision")
        for name in names
    }
    operator.stop()
    return {
        "keysets": keysets,
        "seconds": seconds,
        "activation_late": summary(activation_late) if activation_late else {},
        "removal_late_upper_bound": summary(removal_late) if removal_late else {},
        "retire_after_s": retire_after,
        "reconciles_equal_revisions": all(reconciles[name] == revisions[name] for name in names),
    }


def kill_run(cluster: EmulatedCluster, kills: int, seed: int) -> dict[str, Any]:
    operator = OperatorUnderTest(cluster, namespaces=("default",), extra_args=())
    names = ["kill-ec", "kill-rsa"]
    for name, algorithm in zip(names, ("ES256", "RS256"), strict=True):
        operator.create(manifest(name, algorithm=algorithm, rotation=rotation("3s", "1s", "2s")))
    operator.start()
    for name in names:
        operator.wait_ready(name, timeout=60)
    started = time.monotonic()
    with RotationObserver(cluster, [("default", name, 2.0) for name in names]) as observer:
        report = kill_loop(operator, names, kills, random.Random(seed))
        active_before = observer.active_keys_seen
        cluster.wait_for(lambda: observer.active_keys_seen >= active_before + 4, 60)
    operator.stop()
    return {
        "seed": seed,
        "kills_survived": report.kills if not observer.violations else 0,
        "moments": dict(report.moments),
        "mid_reconciliation": report.torn,
        "observer_checks": observer.rounds,
        "active_keys_seen": observer.active_keys_seen,
        "violations": observer.violations[:20],
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="jwks-operator run: timing and crash safety")
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--skip-kills", action="store_true")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="operator-bench-") as workdir:
        steps: list[tuple[str, Callable[[EmulatedCluster], Any]]] = [
            ("create_to_ready_1_rs256", lambda c: one_at_a_time(c, "RS256", 20)),
            ("create_to_ready_1_es256", lambda c: one_at_a_time(c, "ES256", 20)),
            ("create_to_ready_50_rs256", lambda c: all_at_once(c, "RS256", 50)),
            ("create_to_ready_50_es256", lambda c: all_at_once(c, "ES256", 50)),
            ("rotation_punctuality", lambda c: punctuality(c, 10, 30.0)),
        ]
        if not args.skip_kills:
            steps.append(("sigkill_loop", lambda c: kill_run(c, args.kills, seed)))
        for index, (label, step) in enumerate(steps):
            with emulated_cluster(Path(workdir) / f"cluster-{index}") as cluster:
                results[label] = step(cluster)
            print(f"{label}: {json.dumps(results[label])}", flush=True)
    print(json.dumps(results, indent=2))
    violations = results.get("sigkill_loop", {}).get("violations")
    if violations:
        print(f"INVARIANT VIOLATED (seed {seed})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
