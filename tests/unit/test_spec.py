from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwks_operator.core.spec import KeySetSpec, SpecError, parse_spec


def problems(spec: object, name: str = "auth") -> tuple[str, ...]:
    with pytest.raises(SpecError) as caught:
        parse_spec(name, spec)
    return caught.value.problems


def test_defaults_follow_the_design() -> None:
    spec = parse_spec("auth", {})
    assert spec == KeySetSpec(
        name="auth",
        algorithm="RS256",
        key_size=2048,
        interval=timedelta(hours=720),
        pre_publish=timedelta(hours=2),
        retire_after=timedelta(hours=2),
        secret_name="auth-signing",
        config_map_name="auth-jwks",
    )
    assert spec.deletion_policy == "Retain"
    assert spec.verification.leeway == timedelta(seconds=60)


def test_full_spec_is_parsed() -> None:
    spec = parse_spec(
        "auth",
        {
            "algorithm": "PS384",
            "keySize": 3072,
            "rotation": {"interval": "1h30m", "prePublish": "15m", "retireAfter": "90s"},
            "secretName": "s.example",
            "configMapName": "c",
            "issuer": "https://auth.example.com/identity/auth",
            "revokedKeys": ["abc_-DEF"],
            "deletionPolicy": "Delete",
            "verification": {
                "audiences": ["api"],
                "requiredClaims": ["sub"],
                "leeway": "30s",
                "maxTokenAge": "1h",
                "claimHeaders": {"email": "X-Auth-Email"},
            },
        },
    )
    assert (spec.algorithm, spec.key_size) == ("PS384", 3072)
    assert spec.interval == timedelta(minutes=90)
    assert spec.revoked_keys == frozenset({"abc_-DEF"})
    assert spec.published_jwks_uri == "https://auth.example.com/identity/auth/.well-known/jwks.json"
    assert spec.verification.issuer == spec.issuer
    assert spec.verification.claim_headers == (("email", "X-Auth-Email"),)
    assert spec.verification.max_token_age == timedelta(hours=1)


@pytest.mark.parametrize("algorithm", ["ES256", "ES384", "ES512", "EdDSA"])
def test_non_rsa_algorithms_have_no_key_size(algorithm: str) -> None:
    assert parse_spec("a", {"algorithm": algorithm}).key_size is None


def test_the_issue_example_message() -> None:
    assert problems({"rotation": {"interval": "abc"}}) == (
        'spec.rotation.interval: "abc" is not a duration like 90s, 15m or 720h',
    )


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {
            "algorithm": "HS256",
            "rotation": {"interval": "0s", "prePublish": "-1h", "retireAfter": 5},
            "secretName": "Not_Valid",
            "configMapName": "x" * 254,
            "deletionPolicy": "Orphan",
            "revokedKeys": ["ok", "bad kid!"],
            "issuer": "ftp://x",
            "rotaton": {},
        }
    )
    paths = [problem.split(":")[0] for problem in found]
    assert paths == [
        "spec.rotaton",
        "spec.algorithm",
        "spec.rotation.interval",
        "spec.rotation.prePublish",
        "spec.rotation.retireAfter",
        "spec.secretName",
        "spec.configMapName",
        "spec.issuer",
        "spec.revokedKeys[1]",
        "spec.deletionPolicy",
    ]
    assert "allowed: RS256, RS384" in found[1]


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"keySize": 1024}, "spec.keySize", "allowed: 2048, 3072, 4096"),
        ({"keySize": "2048"}, "spec.keySize", "not allowed"),
        ({"keySize": True}, "spec.keySize", "not allowed"),
        ({"algorithm": "ES256", "keySize": 2048}, "spec.keySize", "only for RSA"),
        (
            {"rotation": {"interval": "1h", "prePublish": "1h"}},
            "spec.rotation.prePublish",
            "shorter",
        ),
        (
            {"rotation": {"interval": "1h", "prePublish": "2h"}},
            "spec.rotation.prePublish",
            "shorter",
        ),
        ({"rotation": "1h"}, "spec.rotation", "must be an object"),
        ({"issuer": "https://x/?a=1"}, "spec.issuer", "query or fragment"),
        (
            {"verification": {"claimHeaders": {"sub": "Bad Header"}}},
            "spec.verification.claimHeaders.sub",
            "header",
        ),
        ({"verification": {"audiences": "api"}}, "spec.verification.audiences", "list"),
        (
            {"verification": {"claimHeaders": {"sub": "Set-Cookie"}}},
            "spec.verification.claimHeaders.sub",
            "reserved",
        ),
        (
            {"verification": {"claimHeaders": {"sub": "x-auth-kid"}}},
            "spec.verification.claimHeaders.sub",
            "reserved",
        ),
        (
            {"verification": {"claimHeaders": {"a": "X-A", "b": "x-a"}}},
            "spec.verification.claimHeaders.b",
            "already mapped",
        ),
    ],
)
def test_each_invalid_field_is_named(spec: dict[str, Any], path: str, fragment: str) -> None:
    found = problems(spec)
    assert len(found) == 1, found
    assert found[0].startswith(path + ":")
    assert fragment in found[0]


def test_spec_must_be_an_object() -> None:
    assert problems([1, 2]) == ("spec: must be an object, not a list",)


def test_invalid_resource_name_is_reported() -> None:
    assert problems({}, name="Bad_Name")[0].startswith("metadata.name:")


def test_derived_names_must_fit_kubernetes_limits() -> None:
    found = problems({}, name="a" * 250)
    assert [p.split(":")[0] for p in found] == ["spec.secretName", "spec.configMapName"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(
        ["RS256", "ES256", "EdDSA", "2048", "20s", "1h", "0s", "a-b", "https://x.example"]
    ),
    st.sampled_from([2048, 3072, 1024]),
)
spec_like = st.dictionaries(
    st.sampled_from(
        [
            "algorithm",
            "keySize",
            "rotation",
            "secretName",
            "configMapName",
            "issuer",
            "jwksUri",
            "revokedKeys",
            "deletionPolicy",
            "verification",
            "extra",
        ]
    ),
    st.one_of(
        field_values,
        st.dictionaries(
            st.sampled_from(
                ["interval", "prePublish", "retireAfter", "leeway", "audiences", "claimHeaders"]
            ),
            field_values,
            max_size=3,
        ),
    ),
    max_size=6,
)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(json_values, spec_like), st.one_of(st.just("auth"), st.text(max_size=20)))
def test_fuzzing_gives_a_spec_or_a_spec_error(raw: object, name: str) -> None:
    try:
        spec = parse_spec(name, raw)
    except SpecError as error:
        assert error.problems
        assert all(isinstance(problem, str) and ": " in problem for problem in error.problems)
    else:
        assert spec.pre_publish < spec.interval
        assert spec.interval > timedelta(0)
        assert spec.retire_after > timedelta(0)


def test_the_published_policy_reads_back_to_the_same_value() -> None:
    """verification.json is spec.verification in its own form: what the operator writes, the
    server parses with the same parser and gets the same policy (defaults included)."""
    from jwks_operator.core.spec import parse_verification, verification_section

    for section in (
        {},
        {"leeway": "0s", "maxTokenAge": "1h30m", "audiences": ["a", "b"]},
        {"issuer": "https://i.example", "requiredClaims": ["sub"], "claimHeaders": {"e": "X-E"}},
    ):
        policy = parse_spec("auth", {"verification": section}).verification
        assert parse_verification(verification_section(policy)) == policy
    with pytest.raises(SpecError, match="more than 32"):
        parse_verification({"audiences": [f"a{i}" for i in range(33)]})
