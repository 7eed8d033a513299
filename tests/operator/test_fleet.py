"""Many keysets at once, no key material anywhere public, and least privilege.

The module's operator runs with ``--debug`` (Kopf's most verbose logging, asyncio's too)
so that the leak check covers everything the operator could ever print.
"""

import time

import pytest

from tests.operator.harness import (
    KEYSETS,
    OperatorUnderTest,
    contains_any,
    is_ready,
    manifest,
    private_values,
    rotation,
    unpermitted_calls,
)

pytestmark = pytest.mark.timeout(180)
FLEET = 50


@pytest.fixture(scope="module")
def operator_args() -> tuple[str, ...]:
    return ("--debug", "--all-namespaces")


def test_fifty_keysets_all_become_ready(operator: OperatorUnderTest) -> None:
    operator.cluster.ensure_namespace("fleet")
    for index in range(FLEET):
        algorithm = "RS256" if index % 2 else "ES256"
        operator.create(manifest(f"k{index:02d}", "fleet", algorithm=algorithm))

    def all_ready() -> bool:
        operator.alive()
        items = operator.cluster.list_objects(KEYSETS, "fleet")
        return len(items) == FLEET and all(is_ready(item) for item in items)

    operator.cluster.wait_for(all_ready, 120, interval=0.2, message="all 50 keysets Ready")
    for index in range(FLEET):
        name = f"k{index:02d}"
        assert len(operator.kids(f"{name}-jwks", "fleet")) == 2
        assert operator.settle(name, "fleet", quiet=0.0) == 1


def test_no_key_material_in_logs_configmaps_events_or_status(
    operator: OperatorUnderTest,
) -> None:
    """Several second-scale rotations of RSA and EC keysets, then every private value ever
    stored is searched for in everything the operator made public or printed."""
    for name, algorithm in (("leak-rsa", "RS256"), ("leak-ec", "ES384")):
        operator.create(manifest(name, algorithm=algorithm, rotation=rotation("2s", "1s", "1s")))
    secrets: set[str] = set()
    deadline = time.monotonic() + 9  # four rotations each
    while time.monotonic() < deadline:
        for name in ("leak-rsa", "leak-ec"):
            if operator.secret(f"{name}-signing") is not None:
                secrets |= private_values(operator.secret_data(f"{name}-signing"))
        time.sleep(0.2)
    assert len(secrets) > 20  # several keys' members and PEM lines were collected
    assert operator.reconciles("leak-rsa") >= 5

    cluster = operator.cluster
    public = {
        "operator output": operator.output(),
        "configmaps": str(cluster.list_objects("v1/configmaps")),
        "events": str(cluster.list_objects("v1/events")),
        "keysets": str(cluster.list_objects(KEYSETS)),
    }
    for where, text in public.items():
        assert not contains_any(text, secrets), f"key material in {where}"
    assert "PRIVATE KEY" not in public["operator output"]


def test_every_api_call_is_declared_in_permissions(operator: OperatorUnderTest) -> None:
    # The fixture checks this again at the end of every module; here it is a named test.
    assert operator.cluster.api_calls()
    assert unpermitted_calls(operator.cluster) == []
