"""Per-shard figures: one operator for N keysets, then K label shards sharing them.

Against the API emulator (tests/support), with the real ``jwks-operator run`` in
subprocesses, as bench/operator_bench.py does. N ES256 keysets in one namespace, labelled
``jwks.dev/shard=s0 .. s{K-1}`` round robin, are created; then either one operator without
a selector, or K operators with ``--keyset-selector jwks.dev/shard=s<j>`` start and
reconcile them. Reported per process, once every keyset is Ready and the processes have
settled: the keysets it reconciled, its resident memory and CPU time, the keyset watch
events it handled, and the Secret/ConfigMap watch events it handled for keysets it does not
own (the cost a label shard pays for the other shards' objects in its namespaces).

With ``--real`` the same runs go against the real control plane of tests/controlplane
(started fresh for each setup; its binaries are built and cached by ``make test``).

Run: ``.venv/bin/python bench/shard_bench.py [--keysets 300] [--shards 2] [--real]``.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "operator"))

from tests.controlplane import cluster as controlplane  # noqa: E402
from tests.operator.harness import KEYSETS, is_ready, manifest  # noqa: E402
from tests.support.cluster import CliProcess, EmulatedCluster, emulated_cluster  # noqa: E402

NAMESPACE = "bench"
SETTLE = 3.0
_OBJECT_EVENT = re.compile(
    rf"\[{NAMESPACE}/(k\d+)-(?:signing|jwks)\] Handler '(?:secret|configmap)-drift'"
)
_KEYSET_EVENT = re.compile(rf"\[{NAMESPACE}/(k\d+)\] Handler 'keyset-changes'")
_RECONCILED = re.compile(rf"\[{NAMESPACE}/(k\d+)\] Reconciled \(")


def resources(pid: int) -> tuple[float, float]:
    """(resident MiB, CPU seconds) of a live process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return rss_kib / 1024, ticks / 100


class Emulated:
    """The API emulator of tests/support (in this process)."""

    def __init__(self, cluster: EmulatedCluster) -> None:
        self.cluster = cluster

    def create(self, bodies: list[dict[str, Any]]) -> None:
        self.cluster.ensure_namespace(NAMESPACE)
        for body in bodies:
            self.cluster.create(body)

    def ready(self) -> int:
        return sum(is_ready(obj) for obj in self.cluster.list_objects(KEYSETS, NAMESPACE))

    def operator(self, args: list[str]) -> CliProcess:
        return self.cluster.run_cli(*args)


class Real:
    """The real control plane of tests/controlplane (etcd, kube-apiserver, controller
    manager, built and cached by the test command); operators use the admin kubeconfig."""

    def __init__(self, plane: Any, workdir: Path) -> None:
        self.plane = plane
        self.workdir = workdir
        self.count = 0
        plane.kubectl("apply", "--server-side", "-f", str(REPO / "deploy" / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd/jwkskeysets.jwks.dev")

    def create(self, bodies: list[dict[str, Any]]) -> None:
        self.plane.kubectl("create", "namespace", NAMESPACE)
        items = {"apiVersion": "v1", "kind": "List", "items": bodies}
        self.plane.kubectl("create", "-f", "-", stdin=json.dumps(items), timeout=600)

    def ready(self) -> int:
        listed = self.plane.kubectl("-n", NAMESPACE, "get", "jwks", "-o", "json").stdout
        return sum(is_ready(obj) for obj in json.loads(listed)["items"])

    def operator(self, args: list[str]) -> CliProcess:
        self.count += 1
        log = self.workdir / f"operator-{self.count}.log"
        kubeconfig = str(self.plane.kubeconfig)
        env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(REPO / "operator")}
        command = [sys.executable, "-m", "jwks_operator", *args, "--kubeconfig", kubeconfig]
        with log.open("wb") as out:
            popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        return CliProcess(popen, log, command)


def run(backend: Emulated | Real, keysets: int, shards: int, sharded: bool) -> dict[str, Any]:
    owner = {f"k{i}": f"s{i % shards}" for i in range(keysets)}
    bodies = []
    for name, shard in owner.items():
        body = manifest(name, NAMESPACE, algorithm="ES256")
        body["metadata"]["labels"] = {"jwks.dev/shard": shard}
        bodies.append(body)
    backend.create(bodies)
    selectors = [f"jwks.dev/shard=s{j}" for j in range(shards)] if sharded else [None]
    started = time.monotonic()
    processes: list[tuple[str | None, CliProcess]] = []
    for selector in selectors:
        args = ["run", "--standalone", "--namespace", NAMESPACE]
        if selector:
            args += ["--keyset-selector", selector]
        processes.append((selector, backend.operator(args)))
    try:
        while True:
            if backend.ready() == keysets:
                break
            for _, process in processes:
                if not process.running:
                    raise SystemExit(f"an operator exited:\n{process.output()[-3000:]}")
            time.sleep(0.2)
        all_ready = time.monotonic() - started
        time.sleep(SETTLE)
        rows = []
        for selector, process in processes:
            rss, cpu = resources(process.pid)
            text = process.output()
            mine = {n for n, s in owner.items() if selector is None or selector.endswith(s)}
            reconciled = set(_RECONCILED.findall(text))
            foreign = [k for k in _OBJECT_EVENT.findall(text) if k not in mine]
            rows.append(
                {
                    "selector": selector or "(none)",
                    "owned": len(mine),
                    "reconciled": len(reconciled),
                    "reconciled_foreign": len(reconciled - mine),
                    "rss_mib": round(rss, 1),
                    "cpu_s": round(cpu, 2),
                    "keyset_events": len(_KEYSET_EVENT.findall(text)),
                    "object_events": len(_OBJECT_EVENT.findall(text)),
                    "foreign_object_events": len(foreign),
                }
            )
        return {"all_ready_s": round(all_ready, 2), "processes": rows}
    finally:
        for _, process in processes:
            process.terminate(timeout=15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keysets", type=int, default=300)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument(
        "--real", action="store_true", help="on the real control plane instead of the emulator"
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the operators' logs in DIR")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.keep or scratch
        for label, sharded in (("one operator", False), (f"{args.shards} shards", True)):
            directory = Path(workdir) / label.replace(" ", "-")
            if args.real:
                directory.mkdir(parents=True, exist_ok=True)
                with controlplane.running(directory / "plane") as plane:
                    results[label] = run(Real(plane, directory), args.keysets, args.shards, sharded)
            else:
                with emulated_cluster(directory) as cluster:
                    results[label] = run(Emulated(cluster), args.keysets, args.shards, sharded)
            print(f"{label}: {json.dumps(results[label])}", flush=True)
    print()
    print(
        "| setup | all Ready | process | owned | reconciled | RSS MiB | CPU s | keyset events | "
        "Secret/ConfigMap events (of other shards) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, result in results.items():
        for row in result["processes"]:
            print(
                f"| {label} | {result['all_ready_s']} s | {row['selector']} | {row['owned']} | "
                f"{row['reconciled']} | {row['rss_mib']} | {row['cpu_s']} | "
                f"{row['keyset_events']} | {row['object_events']} "
                f"({row['foreign_object_events']}) |"
            )
    failed = any(row["reconciled_foreign"] for r in results.values() for row in r["processes"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
