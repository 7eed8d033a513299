"""Scale: 10,000 keysets in the server's snapshot, their memory and the cost of one change.

Builds a SnapshotStore with N keysets of two RSA-2048-sized keys each (plus discovery
documents), as a first list would, then measures: the time of that initial build, the
memory it holds (traced Python allocations and the process RSS growth), the time to apply
one changed keyset (guard, re-encode, gzip, ETag, copy of the entry table, swap), the time
of a re-list that finds nothing changed, and the time of a request's lookup meanwhile.

Run: ``.venv/bin/python bench/serve_scale_bench.py [--keysets 10000]``.
"""

import argparse
import base64
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from inprocess import answer, request  # noqa: E402

from jwks_operator.server.app import Responder  # noqa: E402
from jwks_operator.server.snapshot import SnapshotStore  # noqa: E402


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def configmap_data(index: int, generation: int = 0) -> dict[str, str]:
    keys = [
        {
            "kty": "RSA",
            "kid": b64(os.urandom(32)),
            "use": "sig",
            "alg": "RS256",
            "n": b64(b"\xc0" + os.urandom(255)),
            "e": "AQAB",
        }
        for _ in range(2)
    ]
    issuer = f"https://auth.example.com/ns-{index % 100}/keyset-{index}"
    return {
        "jwks.json": json.dumps({"keys": keys}, separators=(",", ":")),
        "openid-configuration": json.dumps(
            {
                "issuer": issuer,
                "jwks_uri": issuer + "/.well-known/jwks.json",
                "id_token_signing_alg_values_supported": ["RS256"],
                "generation": generation,
            }
        ),
    }


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description="snapshot scale bench")
    parser.add_argument("--keysets", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    count = args.keysets

    inputs = [(f"ns-{i % 100}", f"keyset-{i}", configmap_data(i)) for i in range(count)]
    raw_bytes = sum(len(v) for _, _, data in inputs for v in data.values())
    # Memory first (tracemalloc slows allocation, so this build is not the timed one).
    tracemalloc.start()
    traced_store = SnapshotStore(build_verifier=None)
    with traced_store.batch() as batch:
        for namespace, name, data in inputs:
            batch.apply(namespace, name, data, {})
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del traced_store, batch

    store = SnapshotStore(build_verifier=None)
    started = time.perf_counter()
    with store.batch() as batch:
        for namespace, name, data in inputs:
            batch.apply(namespace, name, data, {})
    build = time.perf_counter() - started
    store.mark_ready()
    rss_after = rss_mib()

    change_times = []
    for change in range(args.changes):
        index = (change * 7919) % count
        namespace, name, _ = inputs[index]
        data = configmap_data(index, change + 1)
        started = time.perf_counter()
        store.apply(namespace, name, data, {})
        change_times.append(time.perf_counter() - started)

    started = time.perf_counter()
    with store.batch() as batch:
        current = {key: entry for key, entry in store.snapshot.entries.items()}
        for namespace, name, data in inputs[: count // 2]:
            batch.apply(namespace, name, data, {})  # mostly unchanged: fingerprint only
    relist = time.perf_counter() - started
    assert len(current) == count

    responder = Responder(store)
    path = f"/ns-42/keyset-{4242 % count // 100 * 100 + 42}/.well-known/jwks.json"
    prepared = request(path)
    assert answer(responder, prepared).status == 200
    rounds = 100_000
    started = time.perf_counter()
    for _ in range(rounds):
        answer(responder, prepared)
    answer_us = (time.perf_counter() - started) / rounds * 1e6

    snapshot = store.snapshot
    ms = 1000.0
    print(f"keysets: {len(snapshot.entries):,} (2 RSA-2048-sized keys + discovery each)")
    print(f"ConfigMap text in: {raw_bytes / 2**20:.1f} MiB")
    print(f"pre-encoded bytes held (plain + gzip): {snapshot.total_bytes / 2**20:.1f} MiB")
    print(f"traced Python memory of the snapshot: {traced / 2**20:.1f} MiB")
    print(f"process RSS at the end (inputs included): {rss_after:.0f} MiB")
    print(f"initial build (first list, one batch): {build * ms:.0f} ms")
    median = statistics.median(change_times) * ms
    print(
        f"one changed keyset -> new snapshot: median {median:.2f} ms, "
        f"p99 {sorted(change_times)[int(len(change_times) * 0.99) - 1] * ms:.2f} ms "
        f"over {len(change_times)} changes"
    )
    print(f"re-list of {count // 2:,} unchanged keysets: {relist * ms:.0f} ms")
    print(f"answer for one keyset (lookup + cached bytes), in process: {answer_us:.2f} us")


if __name__ == "__main__":
    main()
