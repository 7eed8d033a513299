"""Fixtures shared by every test area: an emulated Kubernetes cluster per test.

Area-specific fixtures belong in the area's own conftest.py (tests/e2e/conftest.py, ...).
"""

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from jwks_operator.kube.client import KubeClient
from jwks_operator.kube.config import endpoint_provider
from tests.support.cluster import EmulatedCluster, emulated_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    """A fresh API emulator for this test, with a kubeconfig at ``cluster.kubeconfig``."""
    with emulated_cluster(tmp_path / "cluster") as started:
        yield started


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., EmulatedCluster]]:
    """Start clusters with options, e.g. ``make_cluster(history_size=5)``; all stopped after."""
    with ExitStack() as stack:
        count = iter(range(1_000))

        def make(**options: Any) -> EmulatedCluster:
            workdir = tmp_path / f"cluster-{next(count)}"
            return stack.enter_context(emulated_cluster(workdir, **options))

        yield make


@pytest.fixture
async def kube_client(cluster: EmulatedCluster) -> AsyncIterator[KubeClient]:
    """The project's API client, with the credentials of ``cluster``'s kubeconfig."""
    client = KubeClient(endpoint_provider(str(cluster.kubeconfig)))
    yield client
    await client.close()
