"""The real-cluster suite's fixtures: one chart installation per session.

Runs only when KUBECONFIG points at a cluster and JWKS_E2E_CLUSTER=1 (an opt-in, so that a
developer's KUBECONFIG never gets an operator installed by accident); every test is skipped
with that reason otherwise. Environment knobs: JWKS_E2E_IMAGE_REPOSITORY / _IMAGE_TAG (the
image loaded into the cluster, default jwks-operator:e2e), JWKS_E2E_RELEASE / _NAMESPACE,
JWKS_E2E_KEEP=1 to leave everything installed for inspection.
"""

import os
from collections.abc import Iterator

import pytest

from tests.e2e_cluster import kube


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.cluster)
            if not kube.ENABLED:
                item.add_marker(pytest.mark.skip(reason=kube.SKIP_REASON))


@pytest.fixture(scope="session")
def installed() -> Iterator[None]:
    """The chart installed with helm, and a namespace for the keysets."""
    kube.install_chart()
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kube.KEYS_NAMESPACE}})
    yield
    if os.environ.get("JWKS_E2E_KEEP") == "1":
        return
    # Keysets first, while the operator still runs to release its finalizers.
    kube.kubectl(
        "-n", kube.KEYS_NAMESPACE, "delete", "jwkskeysets", "--all", "--wait", "--timeout=120s"
    )
    kube.kubectl("delete", "namespace", kube.KEYS_NAMESPACE, "--wait=false", check=False)
    kube.helm("uninstall", kube.RELEASE, "--namespace", kube.NAMESPACE, "--wait")
