"""Driving the real ``jwks-operator`` CLI as a user would: processes, files, HTTP.

Shared by the standalone tests and ``bench/standalone_killloop.py``. Every process is a
real ``python -m jwks_operator`` with its own state directory and a port picked by the
kernel (``--port 0``; the port is read from the "serving" log line, which is printed only
once every keyset's first reconcile is in, so it doubles as the readiness signal).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from jwks_operator.core.contract import PRIVATE_MEMBERS
from jwks_operator.core.keys import thumbprint
from jwks_operator.core.state import KeySetState, state_from_json
from jwks_operator.store.localdir import private_path

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SOURCE_ROOT: Final = REPO_ROOT / "operator"
SERVING_RE: Final = re.compile(r"serving http://127\.0\.0\.1:(\d+)/")
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    stdin: str | None = None,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m jwks_operator ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "jwks_operator", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
        cwd=cwd or REPO_ROOT,
        check=False,
    )


def keyset_doc(
    name: str = "demo",
    namespace: str | None = "default",
    *,
    algorithm: str = "ES256",
    interval: str = "2s",
    pre_publish: str = "1s",
    retire_after: str = "1500ms",
    annotations: Mapping[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "jwks.dev/v1alpha1",
        "kind": "JwksKeySet",
        "metadata": metadata,
        "spec": {
            "algorithm": algorithm,
            "rotation": {
                "interval": interval,
                "prePublish": pre_publish,
                "retireAfter": retire_after,
            },
            **spec,
        },
    }


def write_config(path: Path, *documents: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all([dict(doc) for doc in documents], sort_keys=False))
    return path


def http_get(
    url: str, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def read_state(state_dir: Path, namespace: str = "default", name: str = "demo") -> KeySetState:
    return state_from_json(private_path(state_dir, namespace, name).read_bytes())


def private_values(state: KeySetState) -> set[str]:
    """Every secret JWK member value the state holds (to look for leaks elsewhere)."""
    return {
        str(key.material.private_jwk[member])
        for key in state.keys
        for member in PRIVATE_MEMBERS
        if member in key.material.private_jwk
    }


def check_public_jwks(jwks: Mapping[str, Any]) -> list[str]:
    """The JWKS invariants 4 and 5 of the design: public members only, kid = thumbprint."""
    keys = jwks["keys"]
    kids = [key["kid"] for key in keys]
    assert len(kids) == len(set(kids)), f"duplicate kid in {kids}"
    for key in keys:
        assert not PRIVATE_MEMBERS & set(key), f"private member in published key {key['kid']}"
        assert key["kty"] != "oct"
        assert key["kid"] == thumbprint(key), "kid is not the RFC 7638 thumbprint"
    return kids


class StandaloneProcess:
    """One ``jwks-operator standalone`` process (restartable: each start gets its own log)."""

    def __init__(
        self,
        workdir: Path,
        config: Path,
        *,
        state_dir: Path | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.state_dir = state_dir or workdir / "state"
        self.extra = list(extra)
        self.popen: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.port = 0

    @property
    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jwks_operator",
            "standalone",
            "--config",
            str(self.config),
            "--state-dir",
            str(self.state_dir),
            "--port",
            "0",
            *self.extra,
        ]

    def start(self) -> StandaloneProcess:
        log_path = self.workdir / f"standalone-{len(self.logs)}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=cli_env(),
                cwd=self.workdir,
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            match = SERVING_RE.search(self.output())
            if match:
                self.port = int(match.group(1))
                return self.port
            if not self.running:
                raise AssertionError(f"standalone exited ({self.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"standalone not ready in {timeout}s:\n{self.output()}")
            time.sleep(0.02)

    def started(self, timeout: float = 30.0) -> StandaloneProcess:
        self.start()
        self.wait_ready(timeout)
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def output(self) -> str:
        """The current run's output."""
        return self.logs[-1].read_text(errors="replace") if self.logs else ""

    def all_output(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs if path.exists())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def jwks_url(self, namespace: str = "default", name: str = "demo") -> str:
        return self.url(f"/{namespace}/{name}/.well-known/jwks.json")

    def get(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.url(path), headers)

    def jwks(self, namespace: str = "default", name: str = "demo") -> dict[str, Any]:
        status, _, body = http_get(self.jwks_url(namespace, name))
        assert status == 200, f"JWKS answered {status}: {body[:200]!r}"
        document: dict[str, Any] = json.loads(body)
        return document

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.popen is not None
            self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush; what a power cut or OOM kill does to the process."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        if self.popen is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"standalone ignored SIGTERM for {timeout}s") from None

    def wait_for_log(self, pattern: str, timeout: float = 20.0, count: int = 1) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.output()
            if len(regex.findall(text)) >= count:
                return text
            if not self.running:
                raise AssertionError(f"standalone exited ({self.returncode}):\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{count}x {pattern!r} not logged in {timeout}s:\n{text}")
            time.sleep(0.05)


def wait_until(probe: Any, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``probe()`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(interval)


def leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """Which secret values (by position, never printed) occur in ``text``."""
    return [f"secret #{index}" for index, value in enumerate(sorted(secrets)) if value in text]
