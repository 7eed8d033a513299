"""An emulated cluster for one test: the API emulator in its own thread, plus sync helpers.

Why its own thread and event loop: sync tests, asyncio tests, Kopf running in a thread,
and subprocesses such as ``jwks-operator run`` must all reach it at once, and a sync
client called from the emulator's loop would deadlock it. Subprocesses connect through
a kubeconfig file, the way a user's operator would.

The helpers speak HTTP with the ``HARNESS_USER_AGENT``, so the test's own calls stay out
of ``api_calls()`` (RBAC checks) and are never hit by ``fail_next()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiohttp.web
import kmock
import yaml

from tests.support.emulator import (
    HARNESS_USER_AGENT,
    ApiCall,
    ApiEmulator,
    RequestRecord,
    build_emulator,
)

T = TypeVar("T")
JsonObj = dict[str, Any]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SOURCE_ROOT: Final = REPO_ROOT / "operator"
DUMMY_TOKEN: Final = "emulator-token"
PATCH_TYPES: Final = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


class ApiStatusError(Exception):
    """The API answered with an error ``Status``."""

    def __init__(self, code: int, status: Mapping[str, Any]) -> None:
        self.code = code
        self.reason = str(status.get("reason", ""))
        self.message = str(status.get("message", ""))
        self.status = dict(status)
        super().__init__(f"{code} {self.reason}: {self.message}")


class CliProcess:
    """A subprocess whose output goes to a file, for assertions after or during its run."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path, argv: Sequence[str]):
        self.popen = popen
        self.log_path = log_path
        self.argv = list(argv)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_output(self, pattern: str | re.Pattern[str], timeout: float = 15.0) -> str:
        """Wait until the output contains ``pattern`` (text or regex); fail with the output."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        while True:
            text = self.output()
            if regex.search(text):
                return text
            if not self.running:
                raise AssertionError(
                    f"{self.argv} exited ({self.returncode}) before printing {regex.pattern!r}:"
                    f"\n{text[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {regex.pattern!r} in {timeout}s:\n{text[-4000:]}")
            time.sleep(0.05)

    def wait(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout)

    def send_signal(self, sig: int) -> None:
        if self.running:
            self.popen.send_signal(sig)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it is still alive after ``timeout``; the exit code."""
        self.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        self.send_signal(signal.SIGKILL)
        return self.popen.wait(10)


class EmulatedCluster:
    """The API emulator on 127.0.0.1:<free port>, a kubeconfig for it, and helpers.

    Resources are named as ``"configmaps"``, ``"jwkskeysets"``, a kind (``"JwksKeySet"``),
    a short name, or fully (``"v1/secrets"``, ``"jwks.dev/v1alpha1/jwkskeysets"``).
    Namespaced calls default to the ``default`` namespace; ``list()`` without a namespace
    lists all namespaces (``list_objects``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        token: str = DUMMY_TOKEN,
        **options: Any,
    ) -> None:
        self.workdir = workdir
        self.token = token
        self._options = options
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emulator: ApiEmulator | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._port = 0
        self._processes: list[CliProcess] = []
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="api-emulator", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._failure is not None:
            raise RuntimeError("the API emulator did not start") from self._failure
        if not self._ready.is_set():
            raise RuntimeError("the API emulator did not start in 30s")
        self._write_kubeconfig()
        return self

    def stop(self) -> None:
        for process in self._processes:
            if process.running:
                process.terminate(timeout=5)
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(15)
        self._loop = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        emulator = build_emulator(token=self.token, **self._options)
        self._emulator = emulator
        self._stopping = asyncio.Event()
        async with emulator:
            server = aiohttp.web.Server(emulator, handler_cancellation=True, access_log=None)
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._port = int(runner.addresses[0][1])
            self._ready.set()
            try:
                await self._stopping.wait()
            finally:
                emulator.drop_watches()
                await runner.cleanup()

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "emulator",
                    "cluster": {"server": self.url, "insecure-skip-tls-verify": True},
                }
            ],
            "users": [{"name": "tester", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "emulator",
                    "context": {"cluster": "emulator", "user": "tester", "namespace": "default"},
                }
            ],
            "current-context": "emulator",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig.yaml"

    @property
    def emulator(self) -> ApiEmulator:
        """The emulator object: touch it only inside ``call()`` (it lives in another loop)."""
        assert self._emulator is not None, "the cluster is not started"
        return self._emulator

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` in the emulator's loop thread and return its result."""
        assert self._loop is not None, "the cluster is not running"

        async def invoke() -> T:
            return fn()

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            invoke(), self._loop
        )
        return future.result(timeout)

    # ------------------------------------------------------------------ test controls

    def drop_watches(self, *, abort: bool = False) -> int:
        """End all open watch streams (or abort their connections); how many there were."""
        return self.call(lambda: self.emulator.drop_watches(abort=abort))

    def compact(self) -> None:
        """Forget the event history: a watch from an older resourceVersion gets 410 Gone."""
        self.call(self.emulator.compact)

    def fail_next(
        self,
        code: int = 500,
        count: int = 1,
        *,
        verb: str | None = None,
        plural: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> None:
        """Fail the next ``count`` requests that match, e.g. ``fail_next(403, verb="list",
        plural="secrets")``; the test harness's own requests are never failed."""
        self.call(
            lambda: self.emulator.fail_next(
                code,
                count,
                verb=verb,
                plural=plural,
                namespace=namespace,
                name=name,
                subresource=subresource,
            )
        )

    def api_calls(self) -> set[ApiCall]:
        return self.call(lambda: self.emulator.api_calls)

    def request_log(self) -> list[RequestRecord]:
        return self.call(lambda: self.emulator.request_log)

    def internal_errors(self) -> list[str]:
        return self.call(lambda: list(self.emulator.internal_errors))

    def watch_count(self) -> int:
        return self.call(lambda: self.emulator.watch_count)

    def resource_version(self) -> int:
        return self.call(lambda: self.emulator.resource_version)

    # ------------------------------------------------------------------ HTTP helpers

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """One API call as the harness; the decoded JSON answer, or ``ApiStatusError``."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "User-Agent": HARNESS_USER_AGENT,
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
        }
        if data is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                status = json.loads(raw)
            except ValueError:
                status = {"message": raw.decode(errors="replace")}
            raise ApiStatusError(exc.code, status) from None
        return json.loads(payload) if payload else None

    def resolve(self, spec: str | kmock.resource) -> tuple[kmock.resource, bool]:
        """The resource for a name (plural, kind, short name, or group/version/plural)."""

        def lookup() -> tuple[kmock.resource, bool]:
            resources = self.emulator.resources
            if isinstance(spec, kmock.resource):
                return spec, bool(resources[spec].namespaced)
            if "/" in spec:
                parsed = kmock.resource(spec)
                if parsed in resources:
                    return parsed, bool(resources[parsed].namespaced)
            found = []
            for res in resources:
                info = resources[res]
                names = {res.plural, (info.kind or "").lower(), (info.singular or "")}
                if spec.lower() in names | set(info.shortnames):
                    found.append((res, bool(info.namespaced)))
            found.sort(key=lambda item: (item[0].group != "", item[0].group or ""))
            if not found:
                raise KeyError(f"no resource called {spec!r}")
            return found[0]

        return self.call(lookup)

    def path(
        self,
        spec: str | kmock.resource,
        name: str | None = None,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        all_namespaces: bool = False,
    ) -> str:
        res, namespaced = self.resolve(spec)
        parts = ["api", "v1"] if not res.group else ["apis", res.group, str(res.version)]
        if namespaced and not all_namespaces:
            parts += ["namespaces", namespace or "default"]
        parts.append(str(res.plural))
        if name is not None:
            parts.append(name)
        if subresource is not None:
            parts.append(subresource)
        return "/" + "/".join(parts)

    def create(self, body: Mapping[str, Any], namespace: str | None = None) -> JsonObj:
        """Create from a manifest-like body (apiVersion + kind pick the resource)."""
        api_version, kind = str(body["apiVersion"]), str(body["kind"])
        spec = f"{api_version}/{self._plural_of(api_version, kind)}"
        namespace = namespace or body.get("metadata", {}).get("namespace")
        result: JsonObj = self.request("POST", self.path(spec, namespace=namespace), dict(body))
        return result

    def _plural_of(self, api_version: str, kind: str) -> str:
        group, _, version = api_version.rpartition("/")

        def lookup() -> str:
            resources = self.emulator.resources
            for res in resources:
                if (res.group, res.version) == (group, version) and resources[res].kind == kind:
                    return str(res.plural)
            raise KeyError(f"no resource of kind {kind} in {api_version}")

        return self.call(lookup)

    def get(self, spec: str | kmock.resource, name: str, namespace: str | None = None) -> JsonObj:
        result: JsonObj = self.request("GET", self.path(spec, name, namespace))
        return result

    def find(
        self, spec: str | kmock.resource, name: str, namespace: str | None = None
    ) -> JsonObj | None:
        try:
            return self.get(spec, name, namespace)
        except ApiStatusError as exc:
            if exc.code == 404:
                return None
            raise

    def list_objects(
        self,
        spec: str | kmock.resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JsonObj]:
        query = {}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        path = self.path(spec, namespace=namespace, all_namespaces=namespace is None)
        items: list[JsonObj] = self.request("GET", path, query=query)["items"]
        return items

    def patch(
        self,
        spec: str | kmock.resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: str = "merge",
    ) -> JsonObj:
        """Patch with ``patch_type`` ``merge`` (default), ``json`` or ``strategic``."""
        path = self.path(spec, name, namespace, subresource=subresource)
        result: JsonObj = self.request("PATCH", path, patch, content_type=PATCH_TYPES[patch_type])
        return result

    def replace(
        self,
        spec: str | kmock.resource,
        name: str,
        body: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> JsonObj:
        path = self.path(spec, name, namespace, subresource=subresource)
        result: JsonObj = self.request("PUT", path, dict(body))
        return result

    def delete(
        self,
        spec: str | kmock.resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
    ) -> JsonObj | None:
        """Delete; the object as the server answered, or None if it was already absent."""
        options = {"propagationPolicy": propagation_policy} if propagation_policy else None
        try:
            result: JsonObj = self.request("DELETE", self.path(spec, name, namespace), options)
        except ApiStatusError as exc:
            if exc.code == 404:
                return None
            raise
        return result

    def watch_events(
        self,
        spec: str | kmock.resource,
        namespace: str | None = None,
        *,
        query: Mapping[str, str] | None = None,
        max_events: int | None = None,
        timeout: float = 10.0,
    ) -> list[JsonObj]:
        """Read a raw watch stream until ``max_events`` events or its end (``timeoutSeconds``
        in ``query`` ends it server-side); the events as decoded JSON."""
        path = self.path(spec, namespace=namespace, all_namespaces=namespace is None)
        params = {"watch": "true", **(query or {})}
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=timeout)
        headers = {"User-Agent": HARNESS_USER_AGENT, "Authorization": f"Bearer {self.token}"}
        events: list[JsonObj] = []
        try:
            connection.request("GET", f"{path}?{urllib.parse.urlencode(params)}", headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                raise ApiStatusError(response.status, json.loads(response.read()))
            while max_events is None or len(events) < max_events:
                line = response.readline()
                if not line:
                    break
                events.append(json.loads(line))
        finally:
            connection.close()
        return events

    def ensure_namespace(self, name: str) -> None:
        self.call(lambda: self.emulator.ensure_namespace(name))

    def events(
        self, namespace: str | None = None, *, involved_name: str | None = None
    ) -> list[JsonObj]:
        selector = f"involvedObject.name={involved_name}" if involved_name else None
        return self.list_objects("v1/events", namespace, field_selector=selector)

    # ------------------------------------------------------------------ waiting

    def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 10.0,
        *,
        interval: float = 0.02,
        message: str = "",
    ) -> T:
        """Poll ``predicate`` until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not true after {timeout}s: {message or predicate}")
            time.sleep(interval)

    def wait_for_object(
        self,
        spec: str | kmock.resource,
        name: str,
        namespace: str | None = None,
        condition: Callable[[JsonObj], object] | None = None,
        timeout: float = 10.0,
    ) -> JsonObj:
        """Wait until the object exists (and satisfies ``condition``); return it."""
        last: list[JsonObj | None] = [None]

        def probe() -> JsonObj | None:
            obj = last[0] = self.find(spec, name, namespace)
            return obj if obj is not None and (condition is None or condition(obj)) else None

        try:
            return self.wait_for(probe, timeout)
        except AssertionError:
            raise AssertionError(
                f"{spec} {namespace}/{name} not as expected in {timeout}s; last seen:"
                f" {json.dumps(last[0], indent=1)[:4000]}"
            ) from None

    def wait_for_absence(
        self,
        spec: str | kmock.resource,
        name: str,
        namespace: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.wait_for(
            lambda: self.find(spec, name, namespace) is None,
            timeout,
            message=f"{spec} {namespace}/{name} is gone",
        )

    # ------------------------------------------------------------------ processes

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a process that should use this cluster as its kubeconfig."""
        env = dict(os.environ)
        for key in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            env.pop(key, None)  # never fall back to an in-cluster config
        env["KUBECONFIG"] = str(self.kubeconfig)
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def start_process(
        self,
        argv: Sequence[str],
        *,
        name: str = "process",
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> CliProcess:
        """Start ``argv`` with this cluster's kubeconfig; stopped at the cluster's stop."""
        log_path = self.workdir / f"{name}-{len(self._processes)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(env),
                cwd=cwd or REPO_ROOT,
            )
        process = CliProcess(popen, log_path, argv)
        self._processes.append(process)
        return process

    def run_cli(self, *args: str, env: Mapping[str, str] | None = None) -> CliProcess:
        """Start ``python -m jwks_operator <args>`` against this cluster (in background)."""
        argv = [sys.executable, "-m", "jwks_operator", *args]
        return self.start_process(argv, name=args[0] if args else "cli", env=env)

    def run_cli_to_completion(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> tuple[int, str]:
        """Run ``python -m jwks_operator <args>`` to its end: (exit code, output)."""
        process = self.run_cli(*args, env=env)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(
                f"{args} did not finish in {timeout}s:\n{process.output()}"
            ) from None
        return code, process.output()


@contextlib.contextmanager
def emulated_cluster(workdir: Path, **options: Any) -> Iterator[EmulatedCluster]:
    """A started cluster that fails the test if the emulator itself had an internal error."""
    with EmulatedCluster(workdir, **options) as cluster:
        yield cluster
        errors = cluster.internal_errors()
        assert not errors, "the API emulator failed internally:\n" + "\n".join(errors)
