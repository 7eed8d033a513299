"""The chart's workloads as local processes, authenticated as the chart's ServiceAccounts.

The control plane has no kubelet, so the operator and server pods the chart creates never
run. Instead each workload runs here with exactly the arguments of the installed
Deployment/StatefulSet (read back from the API server, so what is tested is what helm
rendered), only the listen address moved to loopback, and a kubeconfig holding a bound
ServiceAccount token from the TokenRequest API: what the kubelet would project into the
pod. The API server's authorizer judges every call against the chart's RBAC.

A 403 anywhere in a workload's log means the chart grants less than the code needs (or the
code asks for more than it should): ``forbidden_lines`` finds them, and the suite fails on
any at the end of each test.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from tests.controlplane.cluster import ControlPlane
from tests.e2e_cluster import kube
from tests.support.cluster import SOURCE_ROOT, CliProcess

FORBIDDEN: Final = re.compile(r"(?<![\d,.:])403\b|Forbidden|forbidden")
"""A 403 (not the milliseconds of a timestamp like ``21:20:06,403``)."""
TERMINATING: Final = "because it is being terminated"
TIMESTAMP: Final = re.compile(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)")


def _when(line: str) -> float | None:
    """The wall-clock time a log line was written (its first timestamp, local time)."""
    found = TIMESTAMP.search(line)
    if not found:
        return None
    return datetime.datetime.strptime(" ".join(found.groups()), "%Y-%m-%d %H:%M:%S").timestamp()


class LocalWorkloads:
    """Start, stop and inspect the operator and server processes of one chart release."""

    def __init__(self, plane: ControlPlane, workdir: Path) -> None:
        self.plane = plane
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.processes: list[CliProcess] = []
        self._count = 0

    # -- what the chart installed ------------------------------------------------------

    def _workload(self, name: str) -> dict[str, Any]:
        for kind in ("deployment", "statefulset"):
            out = kube.kubectl(
                "-n", kube.NAMESPACE, "get", kind, name, "--ignore-not-found", "-o", "json"
            )
            if out.strip():
                return dict(json.loads(out))
        raise AssertionError(f"the chart installed no workload named {name}")

    def container_args(self, name: str) -> tuple[list[str], str]:
        """(container args, ServiceAccount name) of an installed Deployment or StatefulSet."""
        workload = self._workload(name)
        pod = workload["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] in ("operator", "server")]
        return list(container.get("args", [])), str(pod["serviceAccountName"])

    def kubeconfig_for(self, account: str) -> Path:
        self._count += 1
        path = self.workdir / f"{account}-{self._count}.kubeconfig"
        return self.plane.service_account_kubeconfig(kube.NAMESPACE, account, path)

    # -- processes ---------------------------------------------------------------------

    def _start(self, label: str, argv: list[str], kubeconfig: Path) -> CliProcess:
        self._count += 1
        log = self.workdir / f"{label}-{self._count}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = str(kubeconfig)
        env["PYTHONPATH"] = str(SOURCE_ROOT)
        env.pop("HTTPS_PROXY", None)
        env.pop("https_proxy", None)
        command = [sys.executable, "-m", "jwks_operator", *argv, "--kubeconfig", str(kubeconfig)]
        with log.open("wb") as out:
            popen = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        process = CliProcess(popen, log, command)
        self.processes.append(process)
        return process

    def start_operator(
        self, priority: int = 0, extra: tuple[str, ...] = (), workload: str = kube.OPERATOR
    ) -> CliProcess:
        """The operator with the installed workload's args; ``$(POD_INDEX)`` -> priority.

        ``workload``: the operator of another release in ``kube.NAMESPACE`` (a shard)."""
        args, account = self.container_args(workload)
        argv: list[str] = []
        for arg in args:
            if arg.startswith("http://0.0.0.0:"):
                arg = f"http://127.0.0.1:{kube.free_port()}/healthz"
            argv.append(arg.replace("$(POD_INDEX)", str(priority)))
        return self._start("operator", [*argv, *extra], self.kubeconfig_for(account))

    def start_server(self, extra: tuple[str, ...] = ()) -> tuple[CliProcess, str]:
        """The server with the installed Deployment's args on a loopback port; its base URL."""
        args, account = self.container_args(kube.SERVER)
        port = kube.free_port()
        argv = list(args)
        argv[argv.index("--host") + 1] = "127.0.0.1"
        argv[argv.index("--port") + 1] = str(port)
        if "--metrics-port" in argv:
            argv[argv.index("--metrics-port") + 1] = str(kube.free_port())
        process = self._start("server", [*argv, *extra], self.kubeconfig_for(account))
        return process, f"http://127.0.0.1:{port}"

    def log_sizes(self) -> dict[Path, int]:
        """How far each workload's log has got: where a test's own lines start."""
        return {p.log_path: len(p.output()) for p in self.processes}

    def forbidden_lines(self, since: dict[Path, int] | None = None) -> list[str]:
        """Every log line (after ``since``) of every workload that reports a 403.

        Except two kinds that are no missing permission:
        - during a control-plane outage the fault tests caused (``plane.outages``): a
          kube-apiserver that is starting denies requests until its RBAC cache has synced,
          and a client that retries them is right to;
        - the NamespaceLifecycle plugin's refusal to create anything in a namespace that is
          being deleted ("... because it is being terminated").
        A 403 that outlives an outage is reported like any other.
        """
        found = []
        for process in self.processes:
            text = process.output()[(since or {}).get(process.log_path, 0) :]
            for line in text.splitlines():
                if not FORBIDDEN.search(line) or TERMINATING in line:
                    continue
                when = _when(line)
                if when is not None and any(
                    start - 1 <= when <= end for start, end in self.plane.outages
                ):
                    continue
                found.append(f"{process.log_path.name}: {line[:300]}")
        return found

    def stop_all(self) -> None:
        for process in self.processes:
            if process.running:
                process.terminate(timeout=10)
