"""The operator at scale (issue 14): N keysets on the real Kubernetes control plane.

For each algorithm and each ``--keysets N``, on a fresh control plane of
tests/controlplane (etcd, kube-apiserver, kube-controller-manager on loopback):

1. the CRD, 10 namespaces and N JwksKeySets are created by the harness straight against
   the API server (50 requests in flight), before the operator exists;
2. cold start: ``jwks-operator run --all-namespaces`` starts, and the harness's own watch
   (admin connection, not through the proxy) times it until every keyset is Ready=True
   for its generation; then until the operator is idle (no API call for 5 s);
3. warm restart: SIGTERM, start again, time to idle, and what it asked for meanwhile
   (goal: no write, no per-keyset GET or LIST);
4. idle: API calls over ``--idle-seconds`` (watch streams excluded);
5. rotation burst: up to ``--burst`` keysets are patched so that each one's next activation
   falls due at the same instant T (interval = T - its active key's activatedAt, so the
   planner's due time ``max(activatedAt + interval, publishedAt + prePublish)`` is T for
   all); after T, each new key's lateness is its ``activatedAt`` against that due time,
   both read from the Secret's ``keys.json`` as bench/operator_bench.py does; every
   keyset must have rotated.

The operator talks to the API server only through a counting proxy
(tests/controlplane/apiproxy.py, its own process): every figure about requests (peak
rate, writes, GETs/LISTs per keyset, 409s, 429s, Events posted and lost) comes from its
records. Memory (VmHWM, VmRSS) and CPU (utime + stime) come from /proc of the operator.
The CPU that kube-apiserver, etcd, the proxy and the harness spent in each phase is
recorded too (``neighbours_cpu_s`` in ``--json``), with etcd's mean fsync time and the
round trip the proxy adds (200 sequential GETs, straight and through it): on a small
machine they share the operator's cores, and the wall-clock figures include that.

Run: ``.venv/bin/python bench/operator_scale_bench.py [--keysets 1000 3000]
[--algorithm ES256 RS256] [--operator-tree DIR] [--operator-arg=--flag=value ...]
[--json FILE]``. ``--operator-tree`` runs the operator of another source tree (e.g. a
``git worktree add DIR <commit>``) with ``PYTHONPATH=DIR/operator``, to compare a change.
The machine's load average is printed with each run: the proxy, the API server, etcd and
the operator share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import yaml

REPO: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.controlplane import cluster as controlplane  # noqa: E402
from tests.controlplane.apiproxy import Request, RequestLog, tally  # noqa: E402

GROUP: Final = "jwks.dev"
VERSION: Final = "v1alpha1"
KEYSETS_PATH: Final = f"/apis/{GROUP}/{VERSION}"
CRD: Final = REPO / "deploy" / "crds" / "jwkskeysets.jwks.dev.yaml"
QUIET: Final = 5.0
"""Seconds without an API call (watch streams aside) that count as idle."""
PRE_PUBLISH_S: Final = 1
RETIRE_AFTER: Final = "1h"


class BenchError(Exception):
    """A run that cannot go on (did not converge in time, the operator died...)."""


def load() -> str:
    """The load average (1, 5, 15 min): the machine is shared, so every run says how much."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- the API, straight (admin), for the harness itself -----------------------------------


class Api:
    """The harness's own admin connection to the API server (never through the proxy)."""

    def __init__(self, server: str, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
        attempts: int = 5,
    ) -> Any:
        """One request, retried on 429/5xx/connection errors; the decoded JSON answer."""
        for attempt in itertools.count(1):
            try:
                async with self.session.request(
                    method,
                    self.server + path,
                    data=None if body is None else json.dumps(body),
                    headers={"Content-Type": content_type, "Accept": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as answer:
                    if answer.status in ok:
                        return await answer.json()
                    text = await answer.text()
                    if answer.status not in (429, 500, 502, 503, 504) or attempt >= attempts:
                        raise BenchError(f"{method} {path}: {answer.status} {text[:300]}")
            except (aiohttp.ClientError, TimeoutError) as error:
                if attempt >= attempts:
                    raise BenchError(f"{method} {path}: {error!r}") from error
            await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    async def list_all(self, path: str, limit: int = 500) -> tuple[list[dict[str, Any]], str]:
        """Every item of a collection, by pages; and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = f"?limit={limit}" + (f"&continue={token}" if token else "")
            page = await self.call("GET", path + query)
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items, str(page["metadata"]["resourceVersion"])


async def install_crd(api: Api) -> None:
    document = yaml.safe_load(CRD.read_text())
    await api.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", document)
    name = document["metadata"]["name"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        crd = await api.call(
            "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        )
        conditions = (crd.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            with contextlib.suppress(BenchError):
                await api.call("GET", f"{KEYSETS_PATH}/jwkskeysets?limit=1", attempts=1)
                return
        await asyncio.sleep(0.3)
    raise BenchError(f"the CRD {name} was not established in 60 s")


def keyset_names(count: int, namespaces: int) -> list[tuple[str, str]]:
    """(namespace, name) of every keyset: round-robin over the namespaces."""
    return [(f"scale-{index % namespaces:02d}", f"ks-{index:05d}") for index in range(count)]


async def create_keysets(
    api: Api, keysets: list[tuple[str, str]], algorithm: str, in_flight: int
) -> None:
    for namespace in sorted({ns for ns, _ in keysets}):
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        await api.call("POST", "/api/v1/namespaces", body)
    gate = asyncio.Semaphore(in_flight)

    async def create(namespace: str, name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "JwksKeySet",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"algorithm": algorithm},
        }
        async with gate:
            await api.call(
                "POST", f"{KEYSETS_PATH}/namespaces/{namespace}/jwkskeysets", body, ok=(201, 409)
            )

    await asyncio.gather(*(create(ns, name) for ns, name in keysets))


# --- watching the keysets (admin connection) ----------------------------------------------


@dataclass
class Seen:
    """What the harness knows of one keyset from its watch."""

    generation: int = 0
    ready_generation: int | None = None
    active_kid: str | None = None
    ready_at: float | None = None
    """Wall-clock time the watch first showed it Ready for its current generation."""

    @property
    def ready(self) -> bool:
        return self.ready_generation == self.generation


@dataclass
class KeysetWatch:
    """Every keyset's readiness and active kid, kept current by one cluster-wide watch."""

    api: Api
    seen: dict[tuple[str, str], Seen] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    error: BaseException | None = None

    def _update(self, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        entry = self.seen.setdefault((meta["namespace"], meta["name"]), Seen())
        entry.generation = int(meta.get("generation") or 0)
        status = obj.get("status") or {}
        entry.active_kid = status.get("activeKid")
        entry.ready_generation = None
        for condition in status.get("conditions") or ():
            if condition.get("type") == "Ready" and condition.get("status") == "True":
                entry.ready_generation = int(condition.get("observedGeneration") or 0)
        if entry.ready and entry.ready_at is None:
            entry.ready_at = now

    async def start(self) -> None:
        version = await self._relist()
        self._task = asyncio.create_task(self._run(version))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _relist(self) -> str:
        items, version = await self.api.list_all(f"{KEYSETS_PATH}/jwkskeysets")
        now = time.time()
        for item in items:
            self._update(item, now)
        return version

    async def _run(self, version: str) -> None:
        try:
            while True:
                version = await self._stream(version)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # reported by the next wait()
            self.error = error

    async def _stream(self, version: str) -> str:
        """One watch stream from ``version``; returns where the next one resumes."""
        query = f"?watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion={version}"
        url = f"{self.api.server}{KEYSETS_PATH}/jwkskeysets{query}"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=400)
        async with self.api.session.get(url, timeout=timeout) as answer:
            if answer.status == 410:
                return await self._relist()
            if answer.status != 200:
                raise BenchError(f"watch of keysets: {answer.status} {await answer.text()}")
            async for line in answer.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        return await self._relist()
                    raise BenchError(f"watch of keysets: {obj}")
                version = obj["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._update(obj, time.time())
        return version

    async def wait(
        self,
        what: str,
        done: Callable[[], bool],
        within: float,
        progress: Callable[[], str],
        alive: Callable[[], None],
    ) -> None:
        deadline = time.monotonic() + within
        while not done():
            if self.error is not None:
                raise BenchError(f"the harness's watch failed: {self.error!r}")
            alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: not reached after {within:.0f} s ({progress()})")
            await asyncio.sleep(0.2)


# --- the processes: proxy and operator ---------------------------------------------------


def child_env(extra_path: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KUBERNETES_") and k.lower() not in ("http_proxy", "https_proxy")
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    if extra_path is not None:
        env["PYTHONPATH"] = extra_path
    return env


@dataclass
class Proxy:
    process: subprocess.Popen[str]
    port: int
    log: RequestLog

    @classmethod
    def start(cls, plane: controlplane.ControlPlane, workdir: Path, identity: str) -> Proxy:
        """The proxy, presenting the admin's certificate or the operator's token upstream."""
        log_path = workdir / "requests.jsonl"
        if identity == "admin":
            credentials = [
                "--cert",
                str(plane.directory / "admin.crt"),
                "--key",
                str(plane.directory / "admin.key"),
            ]
        else:
            credentials = ["--token-file", str(operator_token(plane, workdir))]
        argv = [
            sys.executable,
            "-m",
            "tests.controlplane.apiproxy",
            "--upstream",
            plane.server,
            "--ca",
            str(plane.ca_file),
            *credentials,
            "--log",
            str(log_path),
        ]
        errors = (workdir / "proxy.err").open("w")
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            text=True,
            env=child_env(str(REPO)),
            start_new_session=True,
        )
        assert process.stdout is not None
        first = process.stdout.readline()
        if not first.startswith("listening on "):
            process.kill()
            raise BenchError(f"the proxy did not start: {first!r}, see {workdir / 'proxy.err'}")
        return cls(process, int(first.split()[-1]), RequestLog(log_path))

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig naming the proxy, with no credentials (the proxy has the admin's)."""
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(document))
        return path


def operator_token(plane: controlplane.ControlPlane, workdir: Path) -> Path:
    """A bound token of a ServiceAccount bound to cluster-admin: the operator's identity.

    Authorization is not what is measured (the chart's RBAC is tested elsewhere), but the
    identity is: API Priority and Fairness exempts the admin (system:masters) and puts a
    ServiceAccount in the ``service-accounts`` flow schema, where a flood meets 429s.
    """
    plane.kubectl("create", "namespace", "jwks-operator")
    plane.kubectl("-n", "jwks-operator", "create", "serviceaccount", "operator")
    plane.kubectl(
        "create",
        "clusterrolebinding",
        "jwks-operator-bench",
        "--clusterrole=cluster-admin",
        "--serviceaccount=jwks-operator:operator",
    )
    kubeconfig = plane.service_account_kubeconfig(
        "jwks-operator", "operator", workdir / "operator-sa.kubeconfig", duration="12h"
    )
    return kubeconfig.with_suffix(".token")


def stop_process(process: subprocess.Popen[Any], timeout: float = 30.0) -> float | None:
    """SIGTERM, then SIGKILL after ``timeout``; seconds it took to exit (None if killed)."""
    if process.poll() is not None:
        return 0.0
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
        return round(time.monotonic() - started, 2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_figures(pid: int) -> dict[str, float]:
    """VmHWM, VmRSS (MiB) and utime + stime (s) of a live process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    memory = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            memory[key] = round(int(value.split()[0]) / 1024, 1)
    cpu = cpu_seconds(pid)
    return {"hwm_mib": memory["VmHWM"], "rss_mib": memory["VmRSS"], "cpu_s": round(cpu, 2)}


@dataclass
class Operator:
    """One ``jwks-operator run`` process at a time, through the proxy."""

    kubeconfig: Path
    tree: Path
    extra: list[str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    count: int = 0

    def start(self) -> float:
        self.count += 1
        log = (self.workdir / f"operator-{self.count}.log").open("wb")
        argv = [
            sys.executable,
            "-m",
            "jwks_operator",
            "run",
            "--all-namespaces",
            *self.extra,
            "--kubeconfig",
            str(self.kubeconfig),
        ]
        started = time.time()
        self.process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(str(self.tree / "operator")),
            start_new_session=True,
        )
        return started

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = (self.workdir / f"operator-{self.count}.log").read_text(errors="replace")
            raise BenchError(f"the operator exited with {self.process.returncode}:\n{tail[-3000:]}")

    def stop(self) -> float | None:
        if self.process is None:
            return 0.0
        return stop_process(self.process)


def source_of(tree: Path) -> str:
    """Where ``jwks_operator`` is imported from with that tree on PYTHONPATH (a check)."""
    out = subprocess.run(
        [sys.executable, "-c", "import jwks_operator as m; print(m.__file__, m.__version__)"],
        capture_output=True,
        text=True,
        env=child_env(str(tree / "operator")),
        check=True,
    )
    return out.stdout.strip()


# --- one measured run ----------------------------------------------------------------------


async def wait_idle(
    log: RequestLog, since: float, operator: Operator, within: float
) -> tuple[float, list[Request]]:
    """Until no API call for QUIET s, once the operator has opened its keyset watch.

    Returns (wall-clock time of the last call, the records since ``since`` up to it).
    """
    deadline = time.monotonic() + within
    while True:
        operator.alive()
        records = log.between(since)
        calls = [r.at for r in records if not r.is_watch]
        watching = any(r.is_watch and r.resource == "jwkskeysets" for r in records)
        last = max(calls, default=since)
        if watching and time.time() - last >= QUIET:
            return last, [r for r in records if r.at <= last or r.is_watch]
        if time.monotonic() > deadline:
            raise BenchError(
                f"the operator was not idle after {within:.0f} s "
                f"({len(calls)} calls, the last {time.time() - last:.1f} s ago)"
            )
        await asyncio.sleep(0.5)


async def read_keys(api: Api, namespaces: list[str]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every keyset's ``keys.json`` entries (from its Secret ``<name>-signing``)."""
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for namespace in namespaces:
        items, _ = await api.list_all(f"/api/v1/namespaces/{namespace}/secrets", limit=250)
        for secret in items:
            name = secret["metadata"]["name"]
            raw = (secret.get("data") or {}).get("keys.json")
            if not name.endswith("-signing") or raw is None:
                continue
            keys = json.loads(base64.b64decode(raw))["keys"]
            found[(namespace, name.removesuffix("-signing"))] = keys
    return found


def when(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Rig:
    """Everything one measured run drives: the harness's API and watch, proxy, operator."""

    api: Api
    watch: KeysetWatch
    proxy: Proxy
    operator: Operator
    names: list[tuple[str, str]]
    args: argparse.Namespace
    warm_restart_s: float = 0.0
    """How long the warm restart's reconciliation of every keyset took: the burst's spec
    changes cost about as much, so they must be settled before the due time."""


async def rotation_burst(rig: Rig) -> dict[str, Any]:
    api, watch, operator, args = rig.api, rig.watch, rig.operator, rig.args
    log = rig.proxy.log
    chosen = rig.names[: args.burst]
    namespaces = sorted({ns for ns, _ in chosen})
    before = await read_keys(api, namespaces)
    margin = args.burst_margin or max(
        30 + 0.03 * len(chosen), 30 + 2 * rig.warm_restart_s * len(chosen) / len(rig.names)
    )
    due = time.time() + margin
    old_kid: dict[tuple[str, str], str] = {}
    intervals: dict[tuple[str, str], float] = {}
    generations: dict[tuple[str, str], int] = {}
    gate = asyncio.Semaphore(args.in_flight)
    patch_started = time.time()

    async def patch(key: tuple[str, str]) -> None:
        (active,) = [k for k in before[key] if k["state"] == "active"]
        activated = when(active["activatedAt"])
        assert activated is not None
        interval_ms = round((due - activated) * 1000)
        intervals[key] = interval_ms / 1000
        old_kid[key] = active["kid"]
        body = {
            "spec": {
                "rotation": {
                    "interval": f"{interval_ms}ms",
                    "prePublish": f"{PRE_PUBLISH_S}s",
                    "retireAfter": RETIRE_AFTER,
                }
            }
        }
        namespace, name = key
        async with gate:
            patched = await api.call(
                "PATCH",
                f"{KEYSETS_PATH}/namespaces/{namespace}/jwkskeysets/{name}",
                body,
                content_type="application/merge-patch+json",
            )
        generations[key] = int(patched["metadata"]["generation"])

    await asyncio.gather(*(patch(key) for key in chosen))
    patched_s = time.time() - patch_started

    def reconciled(key: tuple[str, str]) -> bool:
        """Ready for the patched generation (not merely: the watch has not seen the patch)."""
        seen = watch.seen[key]
        return seen.ready and seen.generation >= generations[key]

    def settled() -> bool:
        return all(reconciled(key) for key in chosen)

    def unsettled() -> str:
        return f"{sum(not reconciled(key) for key in chosen)} not yet reconciled"

    await watch.wait(
        "burst: spec changes reconciled", settled, margin + 120, unsettled, operator.alive
    )
    settled_before_due = round(due - time.time(), 1)

    def rotated() -> int:
        return sum(watch.seen[key].active_kid not in (None, old_kid[key]) for key in chosen)

    timeout = max(0.0, due - time.time()) + 120 + 0.2 * len(chosen)
    error = None
    try:
        await watch.wait(
            "burst: every keyset rotated",
            lambda: rotated() == len(chosen),
            timeout,
            lambda: f"{rotated()} of {len(chosen)} rotated",
            operator.alive,
        )
    except BenchError as failed:
        error = str(failed)
    finished = time.time()
    after = await read_keys(api, namespaces)
    late: list[float] = []
    for key in chosen:
        keys = sorted(
            (k for k in after.get(key, []) if k.get("activatedAt")),
            key=lambda k: when(k["activatedAt"]) or 0.0,
        )
        kids = [k["kid"] for k in keys]
        if old_kid[key] not in kids or kids.index(old_kid[key]) + 1 >= len(kids):
            continue
        previous = keys[kids.index(old_kid[key])]
        promoted = keys[kids.index(old_kid[key]) + 1]
        activated_before, published, activated = (
            when(previous["activatedAt"]),
            when(promoted["publishedAt"]),
            when(promoted["activatedAt"]),
        )
        assert activated_before is not None and published is not None and activated is not None
        key_due = max(activated_before + intervals[key], published + PRE_PUBLISH_S)
        late.append(activated - key_due)
    late.sort()
    traffic = tally(log.between(due - 1, finished), keysets=len(chosen))
    return {
        "keysets": len(chosen),
        "patched_s": round(patched_s, 1),
        "margin_s": round(margin, 1),
        "settled_s_before_due": settled_before_due,
        "clean": settled_before_due > 0,
        "rotated": len(late),
        "lost": len(chosen) - len(late),
        "late_median_s": round(statistics.median(late), 3) if late else None,
        "late_p99_s": round(percentile(late, 0.99), 3) if late else None,
        "late_max_s": round(late[-1], 3) if late else None,
        "all_rotated_after_due_s": round(finished - due, 1),
        "requests": traffic,
        "error": error,
    }


async def proxy_overhead(api: Api, proxy: Proxy, calls: int = 200) -> dict[str, float]:
    """Median of ``calls`` sequential GETs of one small object, straight and through the
    proxy: what the proxy adds to each of the operator's round trips (while idle)."""
    path = "/api/v1/namespaces/default"

    async def timed(session: aiohttp.ClientSession, base: str) -> float:
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            async with session.get(base + path) as answer:
                await answer.read()
                if answer.status != 200:
                    raise BenchError(f"GET {base}{path}: {answer.status}")
            samples.append(time.perf_counter() - started)
        return round(statistics.median(samples) * 1000, 2)

    async with aiohttp.ClientSession() as plain:
        proxied = await timed(plain, f"http://127.0.0.1:{proxy.port}")
    return {"direct_ms": await timed(api.session, api.server), "proxied_ms": proxied}


def etcd_disk(etcd_url: str) -> dict[str, float | None]:
    """etcd's mean WAL fsync and backend commit times: what every API write waits for."""
    try:
        with urllib.request.urlopen(f"{etcd_url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(("etcd_disk_wal_fsync_duration_seconds_", "etcd_disk_backend_commit")):
            with contextlib.suppress(ValueError):
                values[name] = float(value)

    def mean_ms(metric: str) -> float | None:
        count = values.get(f"{metric}_count")
        return round(values[f"{metric}_sum"] / count * 1000, 2) if count else None

    return {
        "wal_fsync_mean_ms": mean_ms("etcd_disk_wal_fsync_duration_seconds"),
        "backend_commit_mean_ms": mean_ms("etcd_disk_backend_commit_duration_seconds"),
    }


async def measure(
    plane: controlplane.ControlPlane,
    proxy: Proxy,
    operator: Operator,
    args: argparse.Namespace,
    result: dict[str, Any],
) -> None:
    """Fill ``result`` phase by phase (what was measured survives a later failure)."""
    keysets, algorithm = result["keysets"], result["algorithm"]
    result["load_start"] = load()
    connector = aiohttp.TCPConnector(ssl=controlplane.admin_ssl_context(plane), limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        api = Api(plane.server, session)
        await install_crd(api)
        result["proxy_overhead"] = await proxy_overhead(api, proxy)
        print(f"  one GET straight / through the proxy: {result['proxy_overhead']}", flush=True)
        names = keyset_names(keysets, args.namespaces)
        started = time.monotonic()
        await create_keysets(api, names, algorithm, args.in_flight)
        result["create_s"] = round(time.monotonic() - started, 1)
        print(f"  created {keysets} keysets in {result['create_s']} s", flush=True)
        watch = KeysetWatch(api)
        await watch.start()
        try:
            await phases(Rig(api, watch, proxy, operator, names, args), result)
        finally:
            await watch.stop()
            result["load_end"] = load()
            result["etcd"] = etcd_disk(plane.etcd_url)


@dataclass
class Neighbours:
    """CPU of the processes that share the cores with the operator: what its figures mean."""

    pids: dict[str, int]
    last: dict[str, float] = field(default_factory=dict)

    def since_last(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        now["harness"] = time.process_time()
        spent = {name: round(now[name] - self.last.get(name, 0.0), 1) for name in now}
        self.last = now
        return spent


async def phases(rig: Rig, out: dict[str, Any]) -> None:
    watch, proxy, operator, names, args = rig.watch, rig.proxy, rig.operator, rig.names, rig.args
    count = len(names)
    neighbours = Neighbours({**args.plane_pids, "proxy": proxy.process.pid})
    neighbours.since_last()

    # cold start
    t0 = operator.start()
    await watch.wait(
        "cold start: every keyset Ready",
        lambda: all(watch.seen[key].ready for key in names),
        args.cold_timeout or 120 + 0.1 * count,
        lambda: f"{sum(watch.seen[key].ready for key in names)} of {count} Ready",
        operator.alive,
    )
    ready_at = max(watch.seen[key].ready_at or time.time() for key in names)
    cold_figures = proc_figures(operator.pid)
    cold_calls = proxy.log.between(t0, ready_at)
    last, _ = await wait_idle(proxy.log, t0, operator, 300 + 0.05 * count)
    out["cold"] = {
        "all_ready_s": round(ready_at - t0, 1),
        "idle_after_s": round(last - t0, 1),
        "at_ready": cold_figures,
        "at_idle": proc_figures(operator.pid),
        "requests": tally(cold_calls, keysets=count),
        "requests_to_idle": tally(proxy.log.between(t0, last + 0.001), keysets=count),
        "neighbours_cpu_s": neighbours.since_last(),
    }
    print(f"  cold start: {json.dumps(out['cold'], default=str)[:400]}", flush=True)

    # warm restart
    out["stop_s"] = operator.stop()
    t1 = operator.start()
    last, during = await wait_idle(proxy.log, t1, operator, 300 + 0.05 * count)
    out["warm"] = {
        "idle_after_s": round(last - t1, 1),
        "at_idle": proc_figures(operator.pid),
        "requests": tally(during, keysets=count),
        "neighbours_cpu_s": neighbours.since_last(),
    }
    rig.warm_restart_s = last - t1
    print(f"  warm restart: {json.dumps(out['warm'], default=str)[:400]}", flush=True)

    # idle
    neighbours.since_last()
    quiet_from = time.time()
    await asyncio.sleep(args.idle_seconds)
    operator.alive()
    idle = tally(proxy.log.between(quiet_from, time.time()))
    out["idle"] = {
        "seconds": args.idle_seconds,
        "requests": idle,
        "per_minute": round(idle["requests"] * 60 / args.idle_seconds, 1),
        "neighbours_cpu_s": neighbours.since_last(),
    }
    print(f"  idle: {idle['requests']} calls in {args.idle_seconds} s", flush=True)

    # rotation burst
    if args.burst > 0:
        try:
            out["burst"] = await rotation_burst(rig)
        except BenchError as error:  # the other phases' figures stand
            out["burst"] = {"error": str(error)}
        print(f"  burst: {json.dumps(out['burst'], default=str)[:400]}", flush=True)
        operator.alive()
        out["after_burst"] = proc_figures(operator.pid)
        out["burst"]["neighbours_cpu_s"] = neighbours.since_last()
    out["whole_run"] = tally(proxy.log.between(t0), keysets=count)
    out["final_stop_s"] = operator.stop()


def run_one(keysets: int, algorithm: str, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh control plane, proxy and operator; everything stopped on the way out."""
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="scale-bench-"))
        if not args.keep:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        print(f"{algorithm} x {keysets}: control plane in {workdir}; load {load()}", flush=True)
        plane = controlplane.start(workdir / "controlplane")
        stack.callback(plane.stop)
        args.plane_pids = {
            name: pid for name, pid in plane.pids.items() if name != "kube-controller-manager"
        }
        proxy = Proxy.start(plane, workdir, args.identity)
        stack.callback(stop_process, proxy.process, 10)
        operator = Operator(
            proxy.kubeconfig(workdir / "proxy.kubeconfig"),
            args.operator_tree,
            list(args.operator_arg),
            workdir,
        )
        stack.callback(operator.stop)
        started = time.monotonic()
        result: dict[str, Any] = {"keysets": keysets, "algorithm": algorithm}
        try:
            asyncio.run(measure(plane, proxy, operator, args, result))
        except BenchError as error:
            result["error"] = str(error)
            print(f"  FAILED: {error}", flush=True)
        result["wall_s"] = round(time.monotonic() - started, 1)
        result["workdir"] = str(workdir) if args.keep else None
        return result


# --- the table ---------------------------------------------------------------------------


def cell(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def table(results: list[dict[str, Any]]) -> str:
    header = [
        "keysets",
        "alg",
        "cold start to all Ready",
        "operator VmHWM/VmRSS MiB: cold; warm",
        "operator CPU s: cold; warm",
        "cold requests (writes) per keyset",
        "peak req/s (cold)",
        "warm restart to idle",
        "warm writes",
        "warm GETs / LISTs per keyset",
        "idle req/min (peak req/s)",
        "burst lateness median / p99 / max",
        "burst rotated / lost",
        "409s",
        "Events posted / lost",
        "429s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        if "cold" not in r:
            lines.append(f"| {r['keysets']} | {r['algorithm']} | FAILED: {r.get('error')} |")
            continue
        cold, warm, idle = r["cold"], r.get("warm", {}), r.get("idle", {})
        burst = r.get("burst") or {}
        whole = r.get("whole_run") or tally(())
        row = [
            f"{r['keysets']:,}",
            r["algorithm"],
            f"{cold['all_ready_s']} s",
            f"{cold['at_ready']['hwm_mib']}/{cold['at_ready']['rss_mib']}; "
            f"{warm.get('at_idle', {}).get('hwm_mib')}/{warm.get('at_idle', {}).get('rss_mib')}",
            f"{cold['at_ready']['cpu_s']}; {warm.get('at_idle', {}).get('cpu_s')}",
            f"{cold['requests']['requests_per_keyset']} ({cold['requests']['writes_per_keyset']})",
            str(cold["requests"]["peak_per_s"]),
            f"{warm.get('idle_after_s')} s",
            str(warm.get("requests", {}).get("writes")),
            f"{warm.get('requests', {}).get('gets_per_keyset')} / "
            f"{warm.get('requests', {}).get('lists_per_keyset')}",
            f"{cell(idle.get('per_minute'))} ({idle.get('requests', {}).get('peak_per_s')})",
            f"{cell(burst.get('late_median_s'))} / {cell(burst.get('late_p99_s'))} / "
            f"{cell(burst.get('late_max_s'), ' s')}",
            f"{cell(burst.get('rotated'))} / {cell(burst.get('lost'))}"
            + ("" if burst.get("clean", True) else " (spec changes not settled before due)"),
            str(whole["status_409"]),
            f"{whole['events_posted']} / {whole['events_lost']}",
            str(whole["status_429"]),
        ]
        lines.append("| " + " | ".join(row) + " |")
    failures = [r for r in results if r.get("error") or (r.get("burst") or {}).get("error")]
    for r in failures:
        lines.append(f"\n{r['keysets']} {r['algorithm']}: {r.get('error') or r['burst']['error']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keysets", type=int, nargs="+", default=[1000])
    parser.add_argument(
        "--algorithm", nargs="+", default=["ES256"], choices=("ES256", "RS256"), metavar="ALG"
    )
    parser.add_argument(
        "--operator-tree",
        type=Path,
        default=REPO,
        help="run the operator of this source tree (PYTHONPATH=DIR/operator); default: this one",
    )
    parser.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="passed to `jwks-operator run` (repeatable), e.g. --operator-arg=--resync=10m",
    )
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument(
        "--identity",
        choices=("serviceaccount", "admin"),
        default="serviceaccount",
        help="who the proxy is upstream: a ServiceAccount (default; API Priority and "
        "Fairness applies) or the admin (exempt)",
    )
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--in-flight", type=int, default=50, help="harness requests at once")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--burst", type=int, default=1000, help="keysets in the rotation burst")
    parser.add_argument(
        "--burst-margin",
        type=float,
        default=0.0,
        help="s from the patches to the due time (default: 30 + the larger of 0.03 s per "
        "burst keyset and twice the warm restart's time, scaled to the burst's share)",
    )
    parser.add_argument(
        "--cold-timeout", type=float, default=0.0, help="default 120 + 0.1 s/keyset"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folders (logs)")
    args = parser.parse_args()
    args.operator_tree = args.operator_tree.resolve()
    if not (args.operator_tree / "operator" / "jwks_operator").is_dir():
        parser.error(f"--operator-tree {args.operator_tree}: no operator/jwks_operator in it")

    # SIGTERM ends the run like Ctrl-C: through the finally blocks that stop every process.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    source = source_of(args.operator_tree)
    print(
        f"operator from {source}; args {args.operator_arg}; proxy upstream as "
        f"{args.identity}; {os.cpu_count()} CPUs",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    try:
        for algorithm in args.algorithm:
            for keysets in args.keysets:
                results.append(run_one(keysets, algorithm, args))
                print(f"  ({results[-1]['wall_s']} s)", flush=True)
    except KeyboardInterrupt:
        print("interrupted: every process stopped", file=sys.stderr)
        return 130
    finally:
        if args.json and results:
            document = {
                "operator": source,
                "operator_args": args.operator_arg,
                "identity": args.identity,
                "runs": results,
            }
            args.json.write_text(json.dumps(document, indent=2, default=str))
    print()
    print(table(results))
    return 1 if any(r.get("error") or (r.get("burst") or {}).get("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
