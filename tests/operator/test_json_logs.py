"""``jwks-operator run --log-format json``: every line is one JSON object with the documented
fields, lines about a keyset name it, and none holds key material."""

import json

import pytest

from tests.operator.harness import OperatorUnderTest, contains_any, manifest, private_values

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def operator_args() -> tuple[str, ...]:
    return ("--log-format", "json", "--log-level", "debug")


def test_every_line_is_a_documented_json_object(operator: OperatorUnderTest) -> None:
    operator.create(manifest("logged", algorithm="ES256"))
    operator.wait_ready("logged")
    operator.settle("logged")
    lines = [line for line in operator.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses
    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= set(record), record
        assert record["timestamp"].endswith("Z")
        assert record["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    about = [record for record in records if record.get("keyset") == "default/logged"]
    assert about, "no line names the keyset"
    reasons = {record.get("reason") for record in about}
    assert {"Bootstrapped", "NextKeyCreated"} <= reasons  # the posted Events, logged too
    bootstrapped = next(record for record in about if record.get("reason") == "Bootstrapped")
    assert bootstrapped["level"] == "WARNING"
    assert bootstrapped["message"].startswith("default/logged Bootstrapped: ")
    # A Secret or ConfigMap is named as what it is, never as a keyset.
    assert not any(record.get("keyset", "").endswith(("-signing", "-jwks")) for record in records)
    # Secret and ConfigMap events are the cache's, not Kopf handler cycles: no line each.
    assert not any(record.get("object", "").startswith("Secret") for record in records)
    assert any(record["level"] == "DEBUG" for record in records)  # --log-level debug
    assert not contains_any(
        operator.output(), private_values(operator.secret_data("logged-signing"))
    )
