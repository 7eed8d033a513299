"""The verifier's rules, one failure reason at a time, on tokens it should otherwise accept."""

import json
from datetime import timedelta
from typing import Any

import pytest

from jwks_operator.core.algorithms import ALGORITHM_NAMES
from jwks_operator.core.guard import UnsafeJwksError
from jwks_operator.verification import (
    Accepted,
    PolicyError,
    PolicyOverrides,
    Reason,
    Refused,
    TokenVerifier,
    build_verifier,
)
from tests.verification.helpers import (
    AUDIENCE,
    ISSUER,
    NOW,
    NOW_TS,
    claims,
    jwks,
    material,
    policy_json,
    token,
)


def verifier_for(algorithm: str = "ES256", **policy: Any) -> TokenVerifier:
    return build_verifier(jwks(material(algorithm)), policy_json(algorithm, **policy))


def refused(verdict: object, reason: Reason) -> Refused:
    assert isinstance(verdict, Refused), verdict
    assert verdict.reason == reason, verdict
    return verdict


@pytest.mark.parametrize("algorithm", ALGORITHM_NAMES)
def test_a_valid_token_of_each_algorithm_is_accepted(algorithm: str) -> None:
    key = material(algorithm)
    verdict = verifier_for(algorithm).verify(token(key), NOW)
    assert isinstance(verdict, Accepted)
    assert verdict.kid == key.kid
    assert verdict.claims["sub"] == "alice"
    assert dict(verdict.headers) == {
        "X-Auth-Subject": "alice",
        "X-Auth-Issuer": ISSUER,
        "X-Auth-Kid": key.kid,
    }


def test_a_tampered_payload_fails_the_signature() -> None:
    good = token(material("ES256"))
    head, _, signature = good.split(".")
    forged_payload = token(material("ES256"), claims(sub="admin")).split(".")[1]
    verdict = verifier_for().verify(f"{head}.{forged_payload}.{signature}", NOW)
    refused(verdict, Reason.BAD_SIGNATURE)


def test_a_token_signed_by_another_key_under_our_kid_fails_the_signature() -> None:
    ours, theirs = material("ES256"), material("ES256", 1)
    forged = token(theirs, kid=ours.kid)
    refused(verifier_for().verify(forged, NOW), Reason.BAD_SIGNATURE)


def test_every_key_of_the_set_verifies_and_an_unknown_kid_is_refused() -> None:
    first, second, stranger = (material("EdDSA", i) for i in range(3))
    verifier = build_verifier(jwks(first, second), policy_json("EdDSA"))
    assert isinstance(verifier.verify(token(first), NOW), Accepted)
    assert isinstance(verifier.verify(token(second), NOW), Accepted)
    verdict = refused(verifier.verify(token(stranger), NOW), Reason.UNKNOWN_KID)
    assert stranger.kid in verdict.description


def test_a_key_leaving_the_set_stops_verifying_with_the_next_build() -> None:
    """Revocation: the verifier is rebuilt from the new JWKS; nothing else caches keys."""
    active, revoked = material("EdDSA", 0), material("EdDSA", 1)
    before = build_verifier(jwks(active, revoked), policy_json("EdDSA"))
    after = build_verifier(jwks(active), policy_json("EdDSA"))
    assert isinstance(before.verify(token(revoked), NOW), Accepted)
    refused(after.verify(token(revoked), NOW), Reason.UNKNOWN_KID)
    assert isinstance(after.verify(token(active), NOW), Accepted)


# -- time ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": None}, Reason.MISSING_CLAIM),
        ({"exp": NOW_TS - 61}, Reason.EXPIRED),
        ({"exp": NOW_TS - 60}, Reason.EXPIRED),
        ({"exp": "2030-01-01"}, Reason.INVALID_CLAIM),
        ({"exp": True}, Reason.INVALID_CLAIM),
        ({"nbf": NOW_TS + 61}, Reason.NOT_YET_VALID),
        ({"nbf": "soon"}, Reason.INVALID_CLAIM),
        ({"iat": NOW_TS + 61}, Reason.NOT_YET_VALID),
        ({"iat": [1]}, Reason.INVALID_CLAIM),
    ],
)
def test_time_claims_are_checked(changes: dict[str, Any], reason: Reason) -> None:
    key = material("ES256")
    refused(verifier_for().verify(token(key, claims(**changes)), NOW), reason)


@pytest.mark.parametrize(
    "changes",
    [{"exp": NOW_TS - 59}, {"nbf": NOW_TS + 59}, {"iat": NOW_TS + 59}, {"exp": NOW_TS + 0.5}],
)
def test_leeway_forgives_small_clock_skew(changes: dict[str, Any]) -> None:
    verdict = verifier_for().verify(token(material("ES256"), claims(**changes)), NOW)
    assert isinstance(verdict, Accepted)


def test_the_leeway_comes_from_the_policy() -> None:
    late = token(material("ES256"), claims(exp=NOW_TS - 5))
    refused(verifier_for(leeway="0s").verify(late, NOW), Reason.EXPIRED)
    assert isinstance(verifier_for(leeway="10s").verify(late, NOW), Accepted)


def test_maximum_token_age_needs_iat_and_refuses_older_tokens() -> None:
    key = material("ES256")
    verifier = verifier_for(maxTokenAge="300s", leeway="0s")
    assert isinstance(verifier.verify(token(key, claims(iat=NOW_TS - 300)), NOW), Accepted)
    refused(verifier.verify(token(key, claims(iat=NOW_TS - 301)), NOW), Reason.TOKEN_TOO_OLD)
    refused(verifier.verify(token(key, claims(iat=None)), NOW), Reason.MISSING_CLAIM)


def test_a_token_accepted_now_is_refused_later() -> None:
    signed = token(material("ES256"))
    verifier = verifier_for()
    assert isinstance(verifier.verify(signed, NOW), Accepted)
    refused(verifier.verify(signed, NOW + timedelta(seconds=361)), Reason.EXPIRED)


# -- issuer, audience, required claims ----------------------------------------------------


def test_issuer_must_match_exactly() -> None:
    key = material("ES256")
    verifier = verifier_for()
    refused(verifier.verify(token(key, claims(iss=ISSUER + "/")), NOW), Reason.WRONG_ISSUER)
    verdict = refused(verifier.verify(token(key, claims(iss=None)), NOW), Reason.WRONG_ISSUER)
    assert "no iss" in verdict.description


def test_without_a_policy_issuer_any_issuer_is_accepted() -> None:
    signed = token(material("ES256"), claims(iss="https://elsewhere.example"))
    assert isinstance(verifier_for(issuer=None).verify(signed, NOW), Accepted)


@pytest.mark.parametrize(
    ("aud", "expected"),
    [
        ("api", None),
        (["other", "api"], None),
        ("other", Reason.WRONG_AUDIENCE),
        ([], Reason.WRONG_AUDIENCE),
        (None, Reason.WRONG_AUDIENCE),
        (["api", 7], Reason.INVALID_CLAIM),
        ({"api": True}, Reason.INVALID_CLAIM),
    ],
)
def test_audience_is_any_of_the_expected(aud: Any, expected: Reason | None) -> None:
    verifier = verifier_for(audiences=["api", "admin"])
    verdict = verifier.verify(token(material("ES256"), claims(aud=aud)), NOW)
    if expected is None:
        assert isinstance(verdict, Accepted)
    else:
        refused(verdict, expected)


def test_without_policy_audiences_the_audience_is_not_checked() -> None:
    signed = token(material("ES256"), claims(aud="anything"))
    assert isinstance(verifier_for(audiences=[]).verify(signed, NOW), Accepted)


def test_required_claims_must_be_present_and_not_null() -> None:
    key = material("ES256")
    verifier = verifier_for(requiredClaims=["tenant", "scope"])
    assert isinstance(verifier.verify(token(key, claims(tenant="t", scope="r")), NOW), Accepted)
    verdict = refused(verifier.verify(token(key, claims(tenant="t")), NOW), Reason.MISSING_CLAIM)
    assert "scope" in verdict.description
    raw = claims(tenant="t")
    raw["scope"] = None
    refused(verifier.verify(token(key, raw), NOW), Reason.MISSING_CLAIM)


# -- overrides ----------------------------------------------------------------------------


def test_overrides_replace_audience_and_issuer_and_add_required_claims() -> None:
    key = material("ES256")
    verifier = verifier_for(requiredClaims=["sub"])
    signed = token(key, claims(aud="billing", iss="https://other.example"))
    refused(verifier.verify(signed, NOW), Reason.WRONG_ISSUER)
    overrides = PolicyOverrides(audiences=("billing",), issuer="https://other.example")
    assert isinstance(verifier.verify(signed, NOW, overrides), Accepted)
    stricter = PolicyOverrides(
        audiences=("billing",), issuer="https://other.example", require=("tenant",)
    )
    refused(verifier.verify(signed, NOW, stricter), Reason.MISSING_CLAIM)
    no_sub = token(key, claims(sub=None, aud="billing", iss="https://other.example"))
    refused(verifier.verify(no_sub, NOW, overrides), Reason.MISSING_CLAIM)


def test_overrides_retune_leeway_and_maximum_age() -> None:
    key = material("ES256")
    verifier = verifier_for()
    old = token(key, claims(iat=NOW_TS - 600, exp=NOW_TS - 30))
    assert isinstance(verifier.verify(old, NOW), Accepted)
    refused(verifier.verify(old, NOW, PolicyOverrides(leeway_seconds=0)), Reason.EXPIRED)
    refused(verifier.verify(old, NOW, PolicyOverrides(max_age_seconds=60)), Reason.TOKEN_TOO_OLD)


# -- claim headers ------------------------------------------------------------------------


def test_mapped_claims_become_headers_and_absent_ones_are_sent_empty() -> None:
    verifier = verifier_for(
        claimHeaders={"email": "X-Auth-Email", "groups": "X-Auth-Groups", "tenant": "X-Tenant"}
    )
    signed = token(material("ES256"), claims(email="a@example.com", groups=["x", "y"]))
    verdict = verifier.verify(signed, NOW)
    assert isinstance(verdict, Accepted)
    assert dict(verdict.headers) == {
        "X-Auth-Subject": "alice",
        "X-Auth-Issuer": ISSUER,
        "X-Auth-Kid": material("ES256").kid,
        "X-Auth-Email": "a@example.com",
        "X-Auth-Groups": '["x","y"]',
        "X-Tenant": "",
    }


# -- building -----------------------------------------------------------------------------


def test_policy_documents_are_validated() -> None:
    keys = jwks(material("ES256"))
    for bad, words in [
        ("not json", "not valid JSON"),
        ("[]", "JSON object"),
        (policy_json("HS256"), "not supported"),
        (policy_json("none"), "not supported"),
        (policy_json("ES256", audiences="api"), "audiences"),
        (policy_json("ES256", audiences=[""]), "audiences"),
        (policy_json("ES256", requiredClaims=["a b"]), "requiredClaims"),
        (policy_json("ES256", leeway="-1s"), "leeway"),
        (policy_json("ES256", leeway=60), "leeway"),
        (policy_json("ES256", maxTokenAge="0s"), "maxTokenAge"),
        (policy_json("ES256", audiences=[f"a{i}" for i in range(33)]), "more than 32"),
        (policy_json("ES256", audiences=["a" * 513]), "longer than 512"),
        (policy_json("ES256", audiences=["api", "api"]), "listed twice"),
        (policy_json("ES256", claimHeaders=["sub"]), "claimHeaders"),
        (policy_json("ES256", claimHeaders={"sub": "X Bad"}), "header name"),
        (policy_json("ES256", issuer=5), "issuer"),
    ]:
        with pytest.raises(PolicyError, match=words):
            build_verifier(keys, bad)


@pytest.mark.parametrize(
    "header",
    [
        "Content-Length",
        "transfer-encoding",
        "Set-Cookie",
        "X-Auth-Subject",
        "WWW-Authenticate",
        "Connection",
        "Host",
    ],
)
def test_claims_cannot_be_mapped_to_framing_auth_or_identity_headers(header: str) -> None:
    with pytest.raises(PolicyError, match="reserved"):
        build_verifier(jwks(material("ES256")), policy_json("ES256", claimHeaders={"x": header}))


def test_one_header_cannot_carry_two_claims() -> None:
    mapping = {"a": "X-Claim", "b": "x-claim"}
    with pytest.raises(PolicyError, match="already mapped"):
        build_verifier(jwks(material("ES256")), policy_json("ES256", claimHeaders=mapping))


def test_unknown_policy_fields_are_ignored_for_forward_compatibility() -> None:
    document = json.loads(policy_json("ES256"))
    document["futureField"] = {"x": 1}
    verifier = build_verifier(jwks(material("ES256")), json.dumps(document))
    assert isinstance(verifier.verify(token(material("ES256")), NOW), Accepted)


def test_without_verification_json_the_first_keys_algorithm_and_defaults_apply() -> None:
    key = material("PS256")
    verifier = build_verifier(jwks(key), None)
    assert verifier.policy.algorithm == "PS256"
    assert verifier.policy.issuer is None and verifier.policy.audiences == ()
    assert verifier.policy.leeway_seconds == 60
    assert isinstance(verifier.verify(token(key, claims(aud="x", iss="y")), NOW), Accepted)
    with pytest.raises(PolicyError):
        build_verifier({"keys": []}, None)


def test_an_unsafe_jwks_is_refused_by_the_shared_guard() -> None:
    private = dict(material("ES256").private_jwk)
    with pytest.raises(UnsafeJwksError, match="private"):
        build_verifier({"keys": [private]}, policy_json("ES256"))
    with pytest.raises(UnsafeJwksError, match="oct"):
        build_verifier({"keys": [{"kty": "oct", "kid": "h"}]}, None)


def test_an_empty_key_set_refuses_every_token_as_unknown() -> None:
    verifier = build_verifier({"keys": []}, policy_json("ES256"))
    refused(verifier.verify(token(material("ES256")), NOW), Reason.UNKNOWN_KID)
    assert AUDIENCE in verifier.policy.audiences


# -- the accepted-token cache -------------------------------------------------------------


def test_a_repeated_token_is_answered_from_the_cache_within_its_validity() -> None:
    key = material("ES256")
    verifier = verifier_for(maxTokenAge="600s", leeway="0s")
    signed = token(key, claims(iat=NOW_TS - 10, exp=NOW_TS + 300, nbf=NOW_TS - 10))
    first = verifier.verify(signed, NOW)
    assert isinstance(first, Accepted)
    assert verifier.verify(signed, NOW + timedelta(seconds=5)) is first
    # Outside the window the cached answer is not used: the full check says why.
    refused(verifier.verify(signed, NOW + timedelta(seconds=300)), Reason.EXPIRED)
    refused(verifier.verify(signed, NOW - timedelta(seconds=11)), Reason.NOT_YET_VALID)
    assert verifier.verify(signed, NOW + timedelta(seconds=299)) is first


def test_the_maximum_age_bounds_the_cached_answer_too() -> None:
    key = material("ES256")
    verifier = verifier_for(maxTokenAge="60s", leeway="0s")
    signed = token(key, claims(iat=NOW_TS - 10, exp=NOW_TS + 3600))
    assert isinstance(verifier.verify(signed, NOW), Accepted)
    assert isinstance(verifier.verify(signed, NOW + timedelta(seconds=50)), Accepted)
    refused(verifier.verify(signed, NOW + timedelta(seconds=51)), Reason.TOKEN_TOO_OLD)


def test_overrides_are_part_of_the_cached_answer() -> None:
    key = material("ES256")
    verifier = verifier_for()
    signed = token(key, claims(aud="billing"))
    assert isinstance(
        verifier.verify(signed, NOW, PolicyOverrides(audiences=("billing",))), Accepted
    )
    refused(verifier.verify(signed, NOW), Reason.WRONG_AUDIENCE)
    strict = PolicyOverrides(audiences=("billing",), require=("tenant",))
    refused(verifier.verify(signed, NOW, strict), Reason.MISSING_CLAIM)


def test_the_cache_is_bounded_and_holds_no_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    from jwks_operator.verification import verifier as module

    monkeypatch.setattr(module, "CACHE_SIZE", 8)
    key = material("EdDSA")
    verifier = build_verifier(jwks(key), policy_json("EdDSA"))
    signed = [token(key, claims(jti=str(i))) for i in range(20)]
    for _ in range(2):
        for one in signed:
            assert isinstance(verifier.verify(one, NOW), Accepted)
            assert verifier._remembered <= 8
    size = verifier._remembered
    for i in range(50):
        refused(
            verifier.verify(token(key, claims(jti=str(i), exp=NOW_TS - 999)), NOW), Reason.EXPIRED
        )
    assert verifier._remembered == size


def test_accepted_claims_are_read_only() -> None:
    verdict = verifier_for().verify(token(material("ES256")), NOW)
    assert isinstance(verdict, Accepted)
    with pytest.raises(TypeError):
        verdict.claims["sub"] = "admin"  # type: ignore[index]


def test_header_and_policy_memos_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from jwks_operator.verification import verifier as module

    monkeypatch.setattr(module, "MEMO_SIZE", 4)
    key = material("EdDSA")
    verifier = build_verifier(jwks(key), policy_json("EdDSA"))
    for i in range(10):
        signed = token(key, claims(aud=f"a{i}"), x=i)  # a distinct header each time
        overrides = PolicyOverrides(audiences=(f"a{i}",))
        assert isinstance(verifier.verify(signed, NOW, overrides), Accepted)
        assert len(verifier._headers) <= 4 and len(verifier._scopes) <= 4
    # A refused header is never remembered as if it had selected a key.
    before = dict(verifier._headers)
    refused(verifier.verify(token(key, alg="EdDSA", kid="nope"), NOW), Reason.UNKNOWN_KID)
    assert verifier._headers == before


def test_identity_headers_are_reserved_in_the_spec_too() -> None:
    """The spec refuses mapping a claim onto a header /verify sets itself."""
    from jwks_operator.core.spec import RESERVED_CLAIM_HEADERS
    from jwks_operator.verification.identity import ISSUER_HEADER, KID_HEADER, SUBJECT_HEADER

    assert {
        h.lower() for h in (SUBJECT_HEADER, ISSUER_HEADER, KID_HEADER)
    } <= RESERVED_CLAIM_HEADERS
