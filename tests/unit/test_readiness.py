"""The Ready chain: order decides, every reason is reachable, the docs' table is its text."""

from pathlib import Path

import pytest

from jwks_operator.core.readiness import CHAIN, Facts, decide, reasons_table, verdicts

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operator.md"


@pytest.mark.parametrize(
    ("facts", "reason", "ready"),
    [
        (Facts(summary="active key a"), "KeysPublished", True),
        (Facts(repaired="auth-jwks was edited; rebuilt"), "PublicKeysRepaired", True),
        (Facts(untrusted_configmaps=("evil",)), "UntrustedConfigMap", True),
        (Facts(failure="PATCH ...: 500"), "ReconcileFailed", False),
        (Facts(corrupt_secret="keys.json is not valid JSON"), "CorruptSecret", False),
        (Facts(conflict="Secret auth-signing already exists"), "NameConflict", False),
        (Facts(spec_error="spec.algorithm: nope"), "InvalidSpec", False),
    ],
)
def test_each_reason_is_reached(facts: Facts, reason: str, ready: bool) -> None:
    verdict = decide(facts)
    assert (verdict.reason, verdict.ready) == (reason, ready)
    assert verdict.warning == (reason != "KeysPublished")


def test_the_first_failing_check_wins() -> None:
    everything = Facts(
        spec_error="spec bad",
        conflict="taken",
        corrupt_secret="corrupt",
        failure="500",
        untrusted_configmaps=("evil",),
        repaired="rebuilt",
    )
    reasons = []
    facts = everything
    for field in ("spec_error", "conflict", "corrupt_secret", "failure"):
        reasons.append(decide(facts).reason)
        facts = Facts(**{**facts.__dict__, field: None})
    reasons.append(decide(facts).reason)
    facts = Facts(**{**facts.__dict__, "untrusted_configmaps": ()})
    reasons.append(decide(facts).reason)
    assert reasons == [check.reason for check in CHAIN][:-1]


def test_untrusted_configmaps_are_named_and_reported_once_per_change() -> None:
    verdict = decide(Facts(untrusted_configmaps=("a-evil", "b-evil"), summary="active key k"))
    assert "a-evil, b-evil" in verdict.message and "active key k" in verdict.message
    assert not verdict.each_time
    assert decide(Facts(repaired="rebuilt")).each_time
    assert decide(Facts(failure="500")).each_time


def test_the_docs_table_of_reasons_is_the_chain() -> None:
    assert reasons_table() in DOCS.read_text()


def test_a_repair_is_still_told_while_an_untrusted_configmap_is_the_condition() -> None:
    found = verdicts(Facts(untrusted_configmaps=("evil",), repaired="rebuilt"))
    assert [v.reason for v in found] == ["UntrustedConfigMap", "PublicKeysRepaired"]
    assert decide(Facts(untrusted_configmaps=("evil",), repaired="rebuilt")).reason == (
        "UntrustedConfigMap"
    )
