"""The real-cluster suite's fixtures: one control plane and one chart installation per session.

By default (``make test``) the session builds or reuses the real control plane of
``tests/controlplane`` (etcd, kube-apiserver, kube-controller-manager), installs the chart
into it with helm, and runs the operator and the server as local processes authenticated as
the chart's ServiceAccounts (see ``workloads.py``). With ``KUBECONFIG`` pointing at a real
cluster and ``JWKS_E2E_CLUSTER=1`` the suite runs there instead, with the image loaded and
the workloads as pods; the tests that need to kill or restart a control-plane process or a
workload process are then skipped with that reason (they need the local control plane).

`make test` runs this folder in its own pytest process after the rest of the suite (no
xdist), so the tests run in file order against one control plane: the chart's uninstall
test (test_chart.py) before the workloads authenticate as the release's ServiceAccounts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controlplane import cluster as controlplane
from tests.e2e_cluster import kube
from tests.e2e_cluster.workloads import LocalWorkloads

LOCAL_ONLY = (
    "needs the local control plane of tests/controlplane (kills or restarts its processes "
    "or the workload processes); not run against an external cluster"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[controlplane.ControlPlane | None]:
    """The local control plane (None when the suite runs against an external cluster)."""
    if kube.EXTERNAL:
        kube.TARGET = kube.Target(Path(os.environ["KUBECONFIG"]), pods_run=True)
        yield None
        return
    directory = tmp_path_factory.mktemp("controlplane")
    plane = controlplane.start(directory)
    assert plane.binaries is not None
    kube.KUBECTL = (
        str(plane.binaries / "kubectl") if (plane.binaries / "kubectl").exists() else None
    )
    kube.TARGET = kube.Target(
        plane.kubeconfig,
        pods_run=False,
        server=plane.server,
        ca_file=plane.ca_file,
        client_cert=(directory / "admin.crt", directory / "admin.key"),
    )
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def local_plane(control_plane: controlplane.ControlPlane | None) -> controlplane.ControlPlane:
    if control_plane is None:
        pytest.skip(LOCAL_ONLY)
    return control_plane


@pytest.fixture(scope="session")
def installed(control_plane: controlplane.ControlPlane | None) -> Iterator[None]:
    """The chart installed with helm, and a namespace for the keysets."""
    kube.install_chart()
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kube.KEYS_NAMESPACE}})
    yield
    if control_plane is not None or os.environ.get("JWKS_E2E_KEEP") == "1":
        return  # the local control plane is thrown away whole
    kube.kubectl(
        "-n", kube.KEYS_NAMESPACE, "delete", "jwkskeysets", "--all", "--wait", "--timeout=120s"
    )
    kube.kubectl("delete", "namespace", kube.KEYS_NAMESPACE, "--wait=false", check=False)
    kube.helm("uninstall", kube.RELEASE, "--namespace", kube.NAMESPACE, "--wait")


class Workloads:
    """The running operator and server of the installed chart, wherever they run."""

    def __init__(self, local: LocalWorkloads | None) -> None:
        self.local = local
        self.operator = None
        self.server = None
        self._base = ""
        if local is not None:
            self.operator = local.start_operator()
            self.server, self._base = local.start_server()
            self.server.wait_for_output("listening", timeout=60)

    @contextlib.contextmanager
    def server_url(self) -> Iterator[str]:
        """The base URL of the JWKS server: local, or through a port-forward to the Service."""
        if self.local is not None:
            yield self._base
            return
        with kube.port_forward(kube.SERVER, kube.NAMESPACE) as base:
            yield base


@pytest.fixture(scope="session")
def workloads(
    installed: None,
    control_plane: controlplane.ControlPlane | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Workloads]:
    local = None
    if control_plane is not None:
        local = LocalWorkloads(control_plane, tmp_path_factory.mktemp("workloads"))
    running = Workloads(local)
    try:
        yield running
    finally:
        if local is not None:
            local.stop_all()


@pytest.fixture(autouse=True)
def _no_forbidden_calls(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every 403 in a workload's log fails the test that was running when it appeared."""
    if "workloads" not in request.fixturenames:
        yield
        return
    running: Workloads = request.getfixturevalue("workloads")
    before = running.local.log_sizes() if running.local is not None else {}
    yield
    if running.local is not None:
        assert running.local.forbidden_lines(since=before) == []
