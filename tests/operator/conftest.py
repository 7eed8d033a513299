"""Fixtures of the operator tests: an emulated cluster with a running ``jwks-operator run``.

One operator process is shared by the scenarios of a module where they are independent
(each uses its own keysets), because starting the CLI costs seconds; scenarios that kill
or restart it get their own. Every module has its own cluster, so ``pytest -n 2`` can run
modules side by side. When a module's operator stops, every API call it made must be
covered by ``jwks_operator.permissions`` (the chart's RBAC is checked against the same).
"""

from collections.abc import Iterator

import pytest

from tests.operator.harness import OperatorUnderTest, unpermitted_calls
from tests.support.cluster import EmulatedCluster, emulated_cluster


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedCluster]:
    with emulated_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture(scope="module")
def operator_args() -> tuple[str, ...]:
    """Extra CLI arguments of the module's operator; a module may override this fixture."""
    return ("--verbose",)


@pytest.fixture(scope="module")
def operator(
    shared_cluster: EmulatedCluster, operator_args: tuple[str, ...]
) -> Iterator[OperatorUnderTest]:
    """The real CLI watching ``default`` and ``identity``."""
    shared_cluster.ensure_namespace("identity")
    under_test = OperatorUnderTest(
        shared_cluster, namespaces=("default", "identity"), extra_args=operator_args
    )
    under_test.start()
    yield under_test
    under_test.stop()
    output = under_test.output()
    assert "Traceback" not in output, output[-6000:]
    assert not unpermitted_calls(shared_cluster), unpermitted_calls(shared_cluster)
