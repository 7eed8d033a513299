"""Requests per second: the JWKS server against nginx serving the same jwks.json.

Both serve one 2-3 KB JWKS on loopback; ``wrk -t1`` loads each for 10 s at 50 and 200
connections, for 200 responses and for 304 responses (If-None-Match with the server's own
ETag); a second nginx with ``open_file_cache`` is shown too. Goal (issue 4): our one
process >= half of one nginx worker's requests per second, and p99 under 20 ms at 200
connections. Cells are interleaved (every server runs back to
back for each cell) and ``--rounds`` repeats them for medians, because the machine may be
shared. ``--pin`` pins servers to CPU 0 and wrk to CPU 1 (it hurts tail latency badly when
other processes compete for those CPUs). A floor row shows a plain aiohttp app (low-level
``web.Server``, no router, one handler) answering with the same bytes: what aiohttp
itself costs. ``--before DIR`` adds a row for another source tree of this project (e.g.
``git archive <commit> | tar -x -C DIR``) in the same interleaved run, to compare a change.

Run: ``.venv/bin/python bench/serve_http_bench.py [--duration 10] [--no-aiohttp]
[--before DIR]``.
nginx and wrk come from Debian (``apt-get install -y nginx-light wrk``); the script
installs them when missing and running as root, and otherwise says what to install.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# A child serving another source tree (--before) puts that tree first instead.
sys.path.insert(0, os.environ.get("JWKS_BENCH_SOURCE") or str(REPO / "operator"))

PATH = "/identity/auth/.well-known/jwks.json"


def jwks_text() -> str:
    """A JWKS of 2-3 KB, the size the perf anchors use: four RSA-2048-sized keys and one
    P-256 key (the bench serves bytes, so the moduli are random rather than generated)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    keys: list[dict[str, str]] = [
        {
            "kty": "RSA",
            "kid": b64(os.urandom(32)),
            "use": "sig",
            "alg": "RS256",
            "n": b64(b"\xc0" + os.urandom(255)),
            "e": "AQAB",
        }
        for _ in range(4)
    ]
    keys.append(
        {
            "kty": "EC",
            "kid": b64(os.urandom(32)),
            "use": "sig",
            "alg": "ES256",
            "crv": "P-256",
            "x": b64(os.urandom(32)),
            "y": b64(os.urandom(32)),
        }
    )
    return json.dumps({"keys": keys}, separators=(",", ":"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {' '.join(missing)}: run `apt-get install -y nginx-light wrk` as root")
    packages = ["nginx-light" if tool == "nginx" else tool for tool in missing]
    print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True)


PIN = False


def pinned(argv: list[str], cpu: int) -> list[str]:
    if PIN and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def wait_http(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def etag_of(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=5) as answer:
        return str(answer.headers["ETag"])


def run_wrk(port: int, connections: int, duration: int, etag: str | None) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) of one wrk run."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if etag:
        argv += ["-H", f"If-None-Match: {etag}"]
    argv.append(f"http://127.0.0.1:{port}{PATH}")
    output = subprocess.run(pinned(argv, 1), capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output and not etag:
        raise RuntimeError(f"errors during the run:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    match = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    assert match, output
    value, unit = float(match.group(1)), match.group(2)
    p99 = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return rate, p99


def start_nginx(
    root: Path, port: int, workdir: Path, *, cached: bool = False
) -> subprocess.Popen[bytes]:
    """One nginx worker serving the file; ``cached`` adds open_file_cache (no open/stat per
    request), the closest static-file setup to serving from memory."""
    workdir = workdir / f"nginx-{port}"
    workdir.mkdir()
    config = workdir / "nginx.conf"
    cache = "open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s;" if cached else ""
    config.write_text(
        f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {cache}
  types {{ application/json json; }}
  server {{
    listen 127.0.0.1:{port} backlog=1024;
    root {root};
    location / {{
      add_header Cache-Control "public, max-age=300";
      add_header Access-Control-Allow-Origin "*";
      add_header X-Content-Type-Options "nosniff";
    }}
  }}
}}
"""
    )
    return subprocess.Popen(
        pinned(["nginx", "-c", str(config), "-p", str(workdir)], 0),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_ours(
    jwks_file: Path, port: int, mode: str, source: Path | None = None
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, f"--serve-{mode}", str(port), str(jwks_file)]
    env = dict(os.environ)
    if source is not None:
        env["JWKS_BENCH_SOURCE"] = str(source / "operator")
    return subprocess.Popen(
        pinned(argv, 0), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )


def serve_ours(port: int, jwks_file: Path) -> None:
    from jwks_operator.server.runner import ServerSettings, run_server
    from jwks_operator.server.snapshot import SnapshotStore

    store = SnapshotStore()
    store.apply("identity", "auth", {"jwks.json": jwks_file.read_text()}, {})
    store.mark_ready()
    asyncio.run(run_server(store, ServerSettings(host="127.0.0.1", port=port)))


def serve_aiohttp(port: int, jwks_file: Path) -> None:
    """Reference: aiohttp's low-level server answering with the same pre-encoded bytes."""
    from aiohttp import web

    body = jwks_file.read_bytes()
    headers = {
        "Content-Type": "application/json",
        "Cache-Control": "public, max-age=300",
        "ETag": '"reference"',
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }

    async def handler(request: web.BaseRequest) -> web.Response:
        if request.headers.get("If-None-Match") == '"reference"':
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)

    async def main() -> None:
        runner = web.ServerRunner(web.Server(handler), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def _median(values: list[tuple[float, float]]) -> tuple[float, float]:
    rates = sorted(rate for rate, _ in values)
    p99s = sorted(p99 for _, p99 in values)
    return rates[len(rates) // 2], p99s[len(p99s) // 2]


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="repeat and take medians")
    parser.add_argument("--pin", action="store_true", help="taskset: servers CPU 0, wrk CPU 1")
    parser.add_argument("--no-aiohttp", action="store_true", help="skip the plain aiohttp floor")
    parser.add_argument(
        "--before", type=Path, metavar="DIR", help="also serve this source tree of the project"
    )
    parser.add_argument("--serve-ours", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--serve-aiohttp", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_ours:
        serve_ours(int(args.serve_ours[0]), Path(args.serve_ours[1]))
        return
    if args.serve_aiohttp:
        serve_aiohttp(int(args.serve_aiohttp[0]), Path(args.serve_aiohttp[1]))
        return

    global PIN
    PIN = args.pin
    ensure_tools()
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as temp:
        workdir = Path(temp)
        workdir.chmod(0o755)  # nginx workers run as an unprivileged user
        root = workdir / "www"
        target = root / PATH.lstrip("/")
        target.parent.mkdir(parents=True)
        text = jwks_text()
        target.write_text(text)
        jwks_file = workdir / "jwks.json"
        jwks_file.write_text(text)
        print(
            f"serving a {len(text)}-byte jwks.json on loopback; wrk -t1, {args.duration}s runs; "
            f"{nginx_version}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
            f"load average {os.getloadavg()[0]:.2f}; pinned: {PIN}"
        )
        servers: list[tuple[str, Any]] = [
            ("nginx (1 worker, static file)", lambda port: start_nginx(root, port, workdir)),
            ("jwks-operator serve (1 process)", lambda port: start_ours(jwks_file, port, "ours")),
            (
                "nginx (1 worker, open_file_cache)",
                lambda port: start_nginx(root, port, workdir, cached=True),
            ),
        ]
        if not args.no_aiohttp:
            servers.append(
                (
                    "plain aiohttp app (floor)",
                    lambda port: start_ours(jwks_file, port, "aiohttp"),
                )
            )
        if args.before is not None:
            before = args.before.resolve()
            servers.append(
                (
                    "jwks-operator serve, --before tree",
                    lambda port: start_ours(jwks_file, port, "ours", before),
                )
            )
        samples: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
        processes: list[tuple[str, int, subprocess.Popen[bytes]]] = []
        try:
            for label, start in servers:
                port = free_port()
                processes.append((label, port, start(port)))
            etags = {}
            for label, port, _ in processes:
                wait_http(port)
                etags[label] = etag_of(port)
                run_wrk(port, 50, 2, None)  # warm-up
            # Interleaved (each cell runs every server back to back) and repeated: the
            # machine may be shared, and a ratio is only fair between neighbouring runs.
            for _ in range(args.rounds):
                for kind in ("200", "304"):
                    for connections in (50, 200):
                        for label, port, _ in processes:
                            etag = etags[label] if kind == "304" else None
                            samples.setdefault((label, kind, connections), []).append(
                                run_wrk(port, connections, args.duration, etag)
                            )
        finally:
            for _, _, process in processes:
                stop(process)
        results = {key: _median(values) for key, values in samples.items()}
        nginx_label, ours_label = servers[0][0], servers[1][0]
        print()
        print(f"| {'server':34} | resp | conns |   req/s | p99 ms | vs nginx   |")
        print(f"|{'-' * 36}|------|-------|---------|--------|------------|")
        for kind in ("200", "304"):
            for connections in (50, 200):
                base = results[(nginx_label, kind, connections)][0]
                for label, _ in servers:
                    rate, p99 = results[(label, kind, connections)]
                    ratio = f"{rate / base:10.2f}" if label != nginx_label else f"{'':>10}"
                    row = f"| {label:34} | {kind:4} | {connections:5} | {rate:7.0f} | {p99:6.2f} |"
                    print(f"{row} {ratio} |")
        cached_label = servers[2][0]
        versus_cached = [
            results[(ours_label, kind, c)][0] / results[(cached_label, kind, c)][0]
            for kind in ("200", "304")
            for c in (50, 200)
        ]
        ours_200 = results[(ours_label, "200", 200)]
        worst = min(
            results[(ours_label, kind, c)][0] / results[(nginx_label, kind, c)][0]
            for kind in ("200", "304")
            for c in (50, 200)
        )
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f}; rounds: {args.rounds}")
        print(
            "ours/nginx with open_file_cache: "
            + ", ".join(f"{ratio:.2f}" for ratio in versus_cached)
            + " (200 c50, 200 c200, 304 c50, 304 c200)"
        )
        print(
            f"goal: ratio >= 0.5 -> lowest ratio {worst:.2f} "
            f"({'met' if worst >= 0.5 else 'NOT met'}); p99 at 200 connections < 20 ms -> "
            f"{ours_200[1]:.2f} ms ({'met' if ours_200[1] < 20 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
