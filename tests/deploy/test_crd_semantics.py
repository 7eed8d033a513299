"""The CRD's schema and CEL rules judge specs the way the core's parse_spec does.

A real API server cannot run here, so its pipeline is reproduced with real libraries:
strict field validation, structural defaulting, the openAPIV3Schema through ``jsonschema``,
then every ``x-kubernetes-validations`` rule through a CEL implementation
(``common-expression-language``). The same specs go through ``parse_spec``; the two must
agree, so a cluster never accepts what the operator then refuses (or the reverse).
"""

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwks_operator.core.spec import SpecError, parse_spec
from tests.deploy.support import (
    EXAMPLES,
    api_server_verdict,
    apply_defaults,
    cel_errors,
    keyset,
    keyset_schema,
    load_yaml_documents,
)

EXAMPLE_FILES = sorted(EXAMPLES.glob("keyset-*.yaml"))


def rotation_spec(
    interval: str | None, pre_publish: str | None, retire_after: str | None
) -> dict[str, Any]:
    """A spec with only the rotation durations that are given (None: left to the default)."""
    given = (("interval", interval), ("prePublish", pre_publish), ("retireAfter", retire_after))
    return {"rotation": {key: value for key, value in given if value is not None}}


def core_accepts(spec: Any, name: str = "auth") -> bool:
    try:
        parse_spec(name, spec)
    except SpecError:
        return False
    return True


def test_the_three_examples_exist() -> None:
    assert {p.name for p in EXAMPLE_FILES} >= {
        "keyset-minimal.yaml",
        "keyset-oidc.yaml",
        "keyset-es256-short.yaml",
    }


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_is_valid_for_the_api_server_and_the_core(path: Path) -> None:
    (obj,) = load_yaml_documents(path)
    assert obj["apiVersion"] == "jwks.dev/v1alpha1"
    assert obj["kind"] == "JwksKeySet"
    assert api_server_verdict(obj) == []
    parse_spec(obj["metadata"]["name"], obj["spec"])


def test_short_example_really_rotates_in_seconds() -> None:
    (obj,) = load_yaml_documents(EXAMPLES / "keyset-es256-short.yaml")
    parsed = parse_spec(obj["metadata"]["name"], obj["spec"])
    assert parsed.algorithm == "ES256"
    assert (parsed.interval.total_seconds(), parsed.pre_publish.total_seconds()) == (60, 20)
    assert parsed.retire_after.total_seconds() == 30


def test_oidc_example_publishes_discovery() -> None:
    (obj,) = load_yaml_documents(EXAMPLES / "keyset-oidc.yaml")
    parsed = parse_spec(obj["metadata"]["name"], obj["spec"])
    assert parsed.issuer and parsed.published_jwks_uri
    assert parsed.published_jwks_uri.endswith("/identity/login/.well-known/jwks.json")


VALID = [
    {},
    {"verification": {"leeway": "0s"}},  # no clock skew tolerated
    {"algorithm": "ES256"},
    {"algorithm": "EdDSA", "deletionPolicy": "Delete"},
    {"algorithm": "PS512", "keySize": 4096},
    {"keySize": 3072},  # algorithm defaults to RS256
    {"rotation": {"interval": "1h30m", "prePublish": "15m", "retireAfter": "1.5h"}},
    {"rotation": {"interval": "60s", "prePublish": "20s", "retireAfter": "30s"}},
    {"rotation": {"interval": "87600h", "prePublish": "2h"}},
    {"rotation": {"interval": "3h"}},  # prePublish defaults to 2h < 3h
    {"rotation": {"prePublish": "1500ms"}},
    {"secretName": "a.b-c", "configMapName": "x" * 253},
    {"issuer": "https://auth.example.com/identity/auth", "jwksUri": "http://jwks.local/x.json"},
    {"revokedKeys": ["NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", "a_b-C"]},
    {
        "verification": {
            "issuer": "https://issuer.example.com",
            "audiences": ["api", "urn:example:aud"],
            "requiredClaims": ["sub", "exp", "https:claim.x"],
            "leeway": "0.5s",
            "maxTokenAge": "24h",
            "claimHeaders": {"email": "X-Auth-Email", "org_id": "X-Org"},
        }
    },
]

INVALID = [
    {"algorithm": "HS256"},
    {"algorithm": "none"},
    {"algorithm": "rs256"},
    {"keySize": 1024},
    {"keySize": "2048"},
    {"algorithm": "ES256", "keySize": 2048},  # CEL: keySize only with RSA
    {"algorithm": "EdDSA", "keySize": 4096},
    {"rotation": {"interval": "30d"}},
    {"rotation": {"interval": "-5m"}},
    {"rotation": {"interval": "5"}},
    {"rotation": {"interval": 3600}},
    {"rotation": {"interval": "0s"}},  # CEL: longer than zero
    {"rotation": {"retireAfter": "0m"}},
    {"rotation": {"interval": "87601h"}},  # CEL: at most 10 years
    {"rotation": {"interval": "1h", "prePublish": "1h"}},  # CEL: prePublish < interval
    {"rotation": {"interval": "1h", "prePublish": "61m"}},
    {"rotation": {"interval": "1h"}},  # prePublish defaults to 2h: CEL after defaulting
    {"rotation": {"interval": "1h", "every": "2h"}},
    {"rotation": "720h"},
    {"secretName": "Bad_Name"},
    {"configMapName": "x" * 254},
    {"secretName": "-leading"},
    {"issuer": "ftp://example.com"},
    {"issuer": "https://example.com/?q=1"},
    {"issuer": "https://example.com/#frag"},
    {"issuer": "example.com"},
    {"jwksUri": "https://" + "x" * 2048},
    {"revokedKeys": ["not a kid!"]},
    {"revokedKeys": "abc"},
    {"deletionPolicy": "Orphan"},
    {"rotate": "now"},
    {"verification": {"maxTokenAge": "1d"}},
    {"verification": {"audiences": [""]}},
    {"verification": {"requiredClaims": ["bad claim"]}},
    {"verification": {"claimHeaders": {"email": "Bad Header"}}},
    {"verification": {"claimHeaders": {"bad claim!": "X-Auth-Bad"}}},  # CEL on the map keys
    {"verification": {"issuer": "mailto:a@b"}},
    {"verification": {"cookie": "session"}},
    {"verification": {"claimHeaders": {"sub": "Set-Cookie"}}},  # CEL: reserved header
    {"verification": {"claimHeaders": {"a": "X-A", "b": "x-a"}}},  # CEL: one header twice
    {"verification": {"audiences": ["api", "api"]}},  # list-type set
    {"verification": {"audiences": ["a\nb"]}},
    {"revokedKeys": ["k"] * 2},
    {"revokedKeys": [f"k{i}" for i in range(257)]},
    "not an object",
]


@pytest.mark.parametrize("spec", VALID, ids=[str(i) for i in range(len(VALID))])
def test_valid_spec_is_accepted_by_both(spec: Any) -> None:
    assert api_server_verdict(keyset(spec)) == []
    assert core_accepts(spec)


@pytest.mark.parametrize("spec", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_spec_is_refused_by_both(spec: Any) -> None:
    assert api_server_verdict(keyset(spec)) != []
    assert not core_accepts(spec)


def _rule_messages(spec: dict[str, Any]) -> list[str]:
    schema = keyset_schema()
    return cel_errors(schema, apply_defaults(schema, keyset(spec)))


def test_cel_keysize_rule_names_the_problem() -> None:
    (problem,) = _rule_messages({"algorithm": "ES384", "keySize": 3072})
    assert problem.startswith(".spec: keySize is only for RSA algorithms")
    for algorithm in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        assert _rule_messages({"algorithm": algorithm, "keySize": 3072}) == []


def test_cel_prepublish_rule_compares_durations_not_strings() -> None:
    # As strings "90m" < "2h" would be false and "9s" < "10s" false: durations it must be.
    assert _rule_messages({"rotation": {"interval": "2h", "prePublish": "90m"}}) == []
    assert _rule_messages({"rotation": {"interval": "10s", "prePublish": "9s"}}) == []
    (problem,) = _rule_messages({"rotation": {"interval": "90m", "prePublish": "2h"}})
    assert problem.startswith(".spec.rotation: prePublish (2h, the default when unset) must be")


def test_cross_field_messages_name_the_values_in_force() -> None:
    """Issue 16: ``interval: 1h`` alone fails on the default prePublish; both the CRD's
    messageExpression and parse_spec say which values are in force, defaults included."""
    (cel_message,) = _rule_messages({"rotation": {"interval": "1h"}})
    assert cel_message.startswith(
        ".spec.rotation: prePublish (2h, the default when unset) must be shorter than interval (1h)"
    )
    (cel_message,) = _rule_messages({"rotation": {"interval": "30m", "prePublish": "45m"}})
    assert "prePublish (45m) must be shorter than interval (30m)" in cel_message
    with pytest.raises(SpecError) as caught:
        parse_spec("auth", {"rotation": {"interval": "1h"}})
    assert caught.value.problems == (
        "spec.rotation.prePublish: prePublish (default 2h) must be shorter than interval "
        "(1h), so that the next key is published before the active one's time is up",
    )
    with pytest.raises(SpecError) as caught:
        parse_spec("auth", {"rotation": {"prePublish": "800h"}})
    assert "prePublish (800h) must be shorter than interval (default 720h)" in str(caught.value)
    (cel_message,) = _rule_messages({"algorithm": "ES256", "keySize": 2048})
    assert cel_message.endswith("PS256..PS512), not ES256")


def test_cel_duration_range_rules() -> None:
    (zero,) = _rule_messages({"rotation": {"retireAfter": "0s"}})
    assert zero == ".spec.rotation.retireAfter: must be longer than zero"
    (long,) = _rule_messages({"rotation": {"interval": "87600h1s"}})
    assert long.startswith(".spec.rotation.interval: must not be longer than 87600h")


def test_cel_claim_header_keys_rule() -> None:
    assert _rule_messages({"verification": {"claimHeaders": {"a.b:c-d_e": "X-A"}}}) == []
    (problem,) = _rule_messages({"verification": {"claimHeaders": {"a b": "X-A"}}})
    assert problem.startswith(".spec.verification.claimHeaders: keys must be a claim name")


_NUMBER = st.one_of(
    st.integers(0, 200_000).map(str),
    st.tuples(st.integers(0, 9999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]:03d}"),
)
_PART = st.tuples(_NUMBER, st.sampled_from(["ms", "s", "m", "h"])).map("".join)
DURATIONS = st.one_of(
    st.lists(_PART, min_size=1, max_size=3).map("".join),
    st.sampled_from(["", "1d", "-1h", "1 h", "1H", "h", "1.h", ".5h", "1e3s", "1s1d"]),
)


def test_non_ascii_digits_are_judged_alike() -> None:
    """Regression: Python's \\d matches any Unicode digit; the API server's RE2 does not."""
    spec = {"rotation": {"retireAfter": "\u0661s"}}  # ARABIC-INDIC DIGIT ONE
    assert api_server_verdict(keyset(spec)) != []
    assert not core_accepts(spec)


@settings(max_examples=150, deadline=None)
@given(
    interval=st.none() | DURATIONS,
    pre_publish=st.none() | DURATIONS,
    retire_after=st.none() | DURATIONS,
)
def test_durations_are_judged_alike_by_the_crd_and_the_core(
    interval: str | None, pre_publish: str | None, retire_after: str | None
) -> None:
    """Any duration text, in any combination: the CRD (pattern, CEL range and ordering rules,
    defaults) accepts it exactly when parse_spec does. Fractions stop at the millisecond:
    below a microsecond Python's timedelta and CEL both round to zero where Go would not."""
    spec = rotation_spec(interval, pre_publish, retire_after)
    assert (api_server_verdict(keyset(spec)) == []) == core_accepts(spec), spec
