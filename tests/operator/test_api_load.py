"""What the operator asks of the API server once keysets are steady: nothing per keyset.

Reads come from the operator's list+watch cache (``kube.cache``), so a resync, an idle
minute and a warm restart cost no GET and no LIST per keyset, and no write. These are
counts of requests in the emulator's log, not timings (the timings at 1,000-10,000
keysets are bench/operator_scale_bench.py's).
"""

import time

import pytest

from tests.operator.harness import KEYSETS, OperatorUnderTest, is_ready, manifest
from tests.support.cluster import EmulatedCluster
from tests.support.emulator import HARNESS_USER_AGENT, RequestRecord

pytestmark = pytest.mark.timeout(180)
NAMESPACE = "quiet"
COUNT = 12
OURS = "jwks-operator"
"""Our client's User-Agent; Kopf's is ``kopf/<version>``."""


@pytest.fixture(scope="module")
def operator_args() -> tuple[str, ...]:
    return ("--all-namespaces", "--resync", "1s", "--log-level", "info")


def since(cluster: EmulatedCluster, moment: float) -> list[RequestRecord]:
    return [r for r in cluster.request_log() if r.at > moment and r.user_agent]


def by_operator(records: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.user_agent != HARNESS_USER_AGENT]


def described(records: list[RequestRecord]) -> list[str]:
    return [
        f"{r.user_agent} {r.verb} {r.resource} {r.namespace}/{r.name} {r.query}" for r in records
    ]


def all_ready(operator: OperatorUnderTest) -> bool:
    operator.alive()
    items = operator.cluster.list_objects(KEYSETS, NAMESPACE)
    return len(items) == COUNT and all(is_ready(item) for item in items)


def test_resyncs_idle_and_a_warm_restart_make_no_request_per_keyset(
    operator: OperatorUnderTest,
) -> None:
    cluster = operator.cluster
    cluster.ensure_namespace(NAMESPACE)
    for index in range(COUNT):
        operator.create(manifest(f"q{index:02d}", NAMESPACE, algorithm="ES256"))
    cluster.wait_for(lambda: all_ready(operator), 60, interval=0.2, message="keysets Ready")
    for index in range(COUNT):
        operator.settle(f"q{index:02d}", NAMESPACE, quiet=0.5)

    # Idle, with a resync every second: every keyset is reconciled again and again, from
    # memory. Not one request, by our client or by Kopf (open watches are not new ones).
    quiet_from = time.monotonic()
    before = operator.reconciles("q00", NAMESPACE)
    time.sleep(4)
    assert operator.reconciles("q00", NAMESPACE) >= before + 2  # resyncs did run
    assert described(by_operator(since(cluster, quiet_from))) == []
    cluster.list_objects(KEYSETS, NAMESPACE)
    assert since(cluster, quiet_from) != []  # the log does record requests (this one)

    # A warm restart: the cache lists each collection once; no write, no GET of an object
    # and no label-filtered LIST per keyset.
    operator.stop()
    restarted_at = time.monotonic()
    operator.start()

    def all_reconciled_again() -> bool:
        operator.alive()
        text = operator.process.output()  # the restarted process's lines only
        return all(f"[{NAMESPACE}/q{i:02d}] Reconciled (" in text for i in range(COUNT))

    cluster.wait_for(all_reconciled_again, 30, message="every keyset reconciled after restart")
    records = by_operator(since(cluster, restarted_at))
    ours = [r for r in records if r.user_agent == OURS]
    assert [
        r
        for r in records
        if r.method in ("POST", "PUT", "PATCH", "DELETE") and r.resource != "events"
    ] == [], described(records)
    assert [r for r in ours if r.verb == "get"] == [], described(ours)
    lists = [r for r in ours if r.verb == "list"]
    assert sorted(str(r.resource) for r in lists) == ["configmaps", "secrets"], described(lists)
    assert all(r.namespace is None and r.query.get("labelSelector") for r in lists)
    # Nor a log line per keyset event: Kopf's relay-handler successes are not logged.
    assert "Handler 'keyset-changes'" not in operator.output()
    assert "Reconciled (trigger: resync)" in operator.output()
