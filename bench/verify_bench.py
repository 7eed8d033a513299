"""Gateway verification throughput: the /verify endpoint beside a JWKS request and raw crypto.

Run: ``.venv/bin/python bench/verify_bench.py [--duration 10] [--rounds 3] [--connections 50]``.
Needs ``wrk`` (Debian's; installed with apt-get when missing, as root). The JWKS server runs
in its own process (the real ``JwksServer``, which calls the verification package, fed
one keyset per algorithm), and ``wrk -t1`` loads it from the other core. For RS256,
ES256 and EdDSA it prints, from one run:

- raw: signature verifications per second with ``cryptography`` alone (same key, same
  token, single thread);
- verifier: ``TokenVerifier.verify`` in-process, every call a new token (full work:
  parsing, signature, policy, identity headers);
- request path: the same, through aiohttp's request object, the server's routing and
  ``/verify`` glue (``Responder.handle``), still in-process and without a socket;
- endpoint, repeated token: ``/{ns}/{name}/verify`` with the same token on every request,
  as a gateway sees one client session (answered from the verifier's accepted-token cache);
- endpoint, new token per request: a wrk Lua script cycles through 10,000 pre-signed tokens,
  more than the cache holds, so every request is a full verification;
- jwks: ``/{ns}/{name}/.well-known/jwks.json`` requests per second, same server, same run.

Every wrk run must see only 200s (a benchmark of refusals would measure the wrong thing).
Goal (issue 7): the endpoint's cost over raw verification, ``1/endpoint - 1/raw``, is no
more than a plain JWKS request's cost, ``1/jwks``. Medians over the rounds are reported.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from jwks_operator.core.keys import KeyMaterial, b64url_decode, generate_key, load_private_key
from jwks_operator.core.tokens import sign_token
from jwks_operator.verification import build_verifier

ALGORITHMS = ("RS256", "ES256", "EdDSA")
UNIQUE_TOKENS = 10_000
LUA = """
local tokens = {{}}
for line in io.lines("{tokens}") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", "{path}", {{["Authorization"] = "Bearer " .. tokens[i]}})
end
"""
NAMESPACE = "bench"
ISSUER = "https://auth.example.com/bench"
AUDIENCE = "api"


def _keyset(algorithm: str) -> str:
    return algorithm.lower()


def _policy(algorithm: str) -> str:
    return json.dumps(
        {
            "algorithm": algorithm,
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "requiredClaims": [],
            "leeway": "60s",
            "claimHeaders": {"email": "X-Auth-Email"},
        }
    )


def _token(material: KeyMaterial, jti: int = 0) -> str:
    now = int(time.time())
    claims = {
        "jti": str(jti),
        "sub": "bench-user",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "email": "bench@example.com",
    }
    return sign_token(material, claims)


def _raw_check(material: KeyMaterial, token: str) -> Callable[[], None]:
    """The bare ``cryptography`` verify call a perfect endpoint could not avoid."""
    head, body, signature_b64 = token.split(".")
    data = f"{head}.{body}".encode()
    signature = b64url_decode(signature_b64)
    public = load_private_key(material.private_jwk).public_key()
    if isinstance(public, rsa.RSAPublicKey):
        pad, digest = padding.PKCS1v15(), hashes.SHA256()
        return lambda: public.verify(signature, data, pad, digest)
    if isinstance(public, ec.EllipticCurvePublicKey):
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        der, scheme = encode_dss_signature(r, s), ec.ECDSA(hashes.SHA256())
        return lambda: public.verify(der, data, scheme)
    assert isinstance(public, ed25519.Ed25519PublicKey)
    return lambda: public.verify(signature, data)


def _per_second(call: Callable[[], object], seconds: float = 2.0) -> float:
    """Calls per CPU-second of ``call`` (process time: other processes' load does not count)."""
    for _ in range(50):
        call()
    done, batch, start = 0, 200, time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        for _ in range(batch):
            call()
        done += batch
    return done / elapsed


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _request_path(keyset: dict[str, str], name: str, tokens: list[str]) -> Callable[[], object]:
    """One /verify request through the server's own code without a socket: head parse,
    routing, hook glue, endpoint and verifier (a new token each call). What the server
    measures beyond this is the event loop and the kernel's share of the exchange."""
    from inprocess import answer, request

    from jwks_operator.server.app import Responder
    from jwks_operator.server.snapshot import SnapshotStore

    store = SnapshotStore()
    store.apply(NAMESPACE, name, keyset, {})
    store.mark_ready()
    responder = Responder(store)
    path = f"/{NAMESPACE}/{name}/verify?audience={AUDIENCE}"
    requests = [request(path, {"Authorization": f"Bearer {token}"}) for token in tokens]
    if answer(responder, requests[0]).status != 200:
        raise SystemExit(f"the in-process request path refused a {name} token")
    cycle = iter(requests * 100)
    return lambda: answer(responder, next(cycle))


# -- the server process -------------------------------------------------------------------


def serve(port: int, data_file: Path) -> None:
    """Child process: the production server classes with the verification hooks."""
    from jwks_operator.server.runner import ServerSettings, run_server
    from jwks_operator.server.snapshot import SnapshotStore

    store = SnapshotStore()
    for name, data in json.loads(data_file.read_text()).items():
        store.apply(NAMESPACE, name, data, {})
    store.mark_ready()
    settings = ServerSettings(host="127.0.0.1", port=port)
    asyncio.run(run_server(store, settings))


def _start_server(
    port: int, data: dict[str, dict[str, str]], root: Path
) -> subprocess.Popen[bytes]:
    data_file = root / "keysets.json"
    data_file.write_text(json.dumps(data))
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), str(data_file)],
        stdout=subprocess.DEVNULL,
        stderr=(root / "server.log").open("wb"),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "operator")},
    )
    deadline = time.monotonic() + 15
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
                if reply.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the server did not start; see {root / 'server.log'}")


# -- wrk ----------------------------------------------------------------------------------


def _wrk(
    url: str,
    seconds: int,
    connections: int,
    headers: dict[str, str],
    script: Path | None = None,
    server_pid: int | None = None,
) -> dict[str, float]:
    """req/s, p99 and, given the server's pid, the server's CPU microseconds per request."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    cpu_before = _cpu_seconds(server_pid) if server_pid else 0.0
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    cpu = _cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    if rate is None or p99 is None:
        raise SystemExit(f"could not read wrk's output:\n{output}")
    if bad is not None or errors is not None:
        raise SystemExit(f"wrk saw failed requests against {url}:\n{output}")
    total = re.search(r"(\d+) requests in", output)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {
        "rps": float(rate.group(1)),
        "p99_ms": float(p99.group(1)) * scale,
        "cpu_us": cpu / int(total.group(1)) * 1e6 if total and cpu else 0.0,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_wrk() -> None:
    """Install Debian's wrk when missing (as root), like the serving bench does."""
    if shutil.which("wrk") is not None:
        return
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: run `apt-get install -y wrk` as root")
    print("installing wrk with apt-get ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def run(seconds: int, rounds: int, connections: int) -> list[dict[str, Any]]:
    _ensure_wrk()
    materials = {
        alg: generate_key(alg, 2048 if alg.startswith("RS") else None) for alg in ALGORITHMS
    }
    unique = {alg: [_token(m, i) for i in range(UNIQUE_TOKENS)] for alg, m in materials.items()}
    tokens = {alg: unique[alg][0] for alg in ALGORITHMS}
    data = {
        _keyset(alg): {
            "jwks.json": json.dumps({"keys": [dict(material.public_jwk)]}),
            "verification.json": _policy(alg),
        }
        for alg, material in materials.items()
    }
    now = datetime.now(UTC)
    raw = {alg: _per_second(_raw_check(materials[alg], tokens[alg])) for alg in ALGORITHMS}
    verifier_rates = {}
    for alg in ALGORITHMS:
        verifier = build_verifier(json.loads(data[_keyset(alg)]["jwks.json"]), _policy(alg))
        assert verifier.verify(tokens[alg], now).ok
        cycle = iter(unique[alg] * 100)
        verifier_rates[alg] = _per_second(
            lambda v=verifier, c=cycle: v.verify(next(c), now)  # type: ignore[misc]
        )

    path_rates = {
        alg: _per_second(_request_path(data[_keyset(alg)], _keyset(alg), unique[alg]))
        for alg in ALGORITHMS
    }

    port = _free_port()
    base = f"http://127.0.0.1:{port}/{NAMESPACE}"
    cases = ("jwks", *(f"{alg} {kind}" for alg in ALGORITHMS for kind in ("same", "new")))
    samples: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as temp:
        root = Path(temp)
        scripts = {}
        for alg in ALGORITHMS:
            (root / f"{alg}.tokens").write_text("\n".join(unique[alg]) + "\n")
            path = f"/{NAMESPACE}/{_keyset(alg)}/verify?audience={AUDIENCE}"
            scripts[alg] = root / f"{alg}.lua"
            scripts[alg].write_text(LUA.format(tokens=root / f"{alg}.tokens", path=path))
        process = _start_server(port, data, root)
        pid = process.pid
        try:
            _wrk(f"{base}/rs256/.well-known/jwks.json", 2, connections, {})  # warm-up
            for _ in range(rounds):
                samples["jwks"].append(
                    _wrk(f"{base}/rs256/.well-known/jwks.json", seconds, connections, {}, None, pid)
                )
                for alg in ALGORITHMS:
                    url = f"{base}/{_keyset(alg)}/verify?audience={AUDIENCE}"
                    same = {"Authorization": f"Bearer {tokens[alg]}"}
                    samples[f"{alg} same"].append(_wrk(url, seconds, connections, same, None, pid))
                    samples[f"{alg} new"].append(
                        _wrk(url, seconds, connections, {}, scripts[alg], pid)
                    )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def median(case: str, field: str) -> float:
        return statistics.median(sample[field] for sample in samples[case])

    jwks_cpu = median("jwks", "cpu_us")
    rows: list[dict[str, Any]] = [
        {
            "case": "JWKS GET",
            "rps": median("jwks", "rps"),
            "p99_ms": median("jwks", "p99_ms"),
            "cpu_us": jwks_cpu,
        }
    ]
    for alg in ALGORITHMS:
        raw_us = 1e6 / raw[alg]
        row: dict[str, Any] = {
            "case": alg,
            "raw_us": raw_us,
            "verifier_us": 1e6 / verifier_rates[alg],
            "path_us": 1e6 / path_rates[alg],
        }
        for kind in ("same", "new"):
            cpu = median(f"{alg} {kind}", "cpu_us")
            row[kind] = {
                "rps": median(f"{alg} {kind}", "rps"),
                "p99_ms": median(f"{alg} {kind}", "p99_ms"),
                "cpu_us": cpu,
                "overhead_us": cpu - raw_us,
                "ratio": (cpu - raw_us) / jwks_cpu,
            }
        rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]], seconds: int, rounds: int, connections: int) -> str:
    jwks = rows[0]
    lines = [
        f"wrk -t1 -c{connections}, {seconds} s per run, {rounds} rounds (medians); one server "
        "process. Costs are the server process's CPU time per request (from /proc), which "
        "other load on the machine does not inflate; raw and in-process costs are CPU time "
        "per call.",
        "",
        f"JWKS GET: {jwks['rps']:,.0f} req/s, p99 {jwks['p99_ms']:.2f} ms, "
        f"**{jwks['cpu_us']:.1f} us CPU per request**.",
        "",
        "| alg | raw crypto verify | in-process verifier, new token "
        "| in-process request path, new token "
        "| /verify, same token: req/s, p99 ms, CPU/req "
        "| /verify, new token: req/s, p99 ms, CPU/req "
        "| overhead over raw, same / new | overhead / JWKS cost, same / new |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows[1:]:
        same, new = row["same"], row["new"]
        lines.append(
            f"| {row['case']} | {row['raw_us']:.1f} us | {row['verifier_us']:.1f} us "
            f"| {row['path_us']:.1f} us "
            f"| {same['rps']:,.0f}, {same['p99_ms']:.2f}, {same['cpu_us']:.1f} us "
            f"| {new['rps']:,.0f}, {new['p99_ms']:.2f}, {new['cpu_us']:.1f} us "
            f"| {same['overhead_us']:.1f} / {new['overhead_us']:.1f} us "
            f"| {same['ratio']:.2f} / {new['ratio']:.2f} |"
        )
    lines.append("")
    lines.append(
        "Goal: overhead / JWKS cost <= 1, where overhead = endpoint CPU per request - raw "
        "crypto CPU per verification."
    )
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), Path(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per case (median)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()
    rows = run(args.duration, args.rounds, args.connections)
    print(_table(rows, args.duration, args.rounds, args.connections))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
