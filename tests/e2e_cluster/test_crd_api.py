"""The CRD's schema, defaulting, pruning and CEL rules, as the real API server enforces them.

The same corpus as tests/deploy/test_crd_semantics.py (which reproduces the API server's
pipeline offline), now sent to kube-apiserver itself with ``dryRun=All`` and strict field
validation (what ``kubectl apply`` uses): every valid spec is accepted and every invalid
one refused, exactly when ``parse_spec`` agrees. Each refusal's message is what
docs/operator.md documents ("What the API server refuses").
"""

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.deploy.test_crd_semantics import (
    DURATIONS,
    INVALID,
    VALID,
    core_accepts,
    rotation_spec,
)
from tests.e2e_cluster import kube

pytestmark = pytest.mark.usefixtures("installed")
NS = kube.KEYS_NAMESPACE
COLLECTION = f"/apis/jwks.dev/v1alpha1/namespaces/{NS}/jwkskeysets"


def dry_run(spec: Any, *, strict: bool = True, name: str = "dry") -> tuple[int, Any]:
    query = "?dryRun=All&fieldValidation=" + ("Strict" if strict else "Ignore")
    return kube.api_request(
        "POST", COLLECTION + query, kube.keyset_doc(NS, name, **{}) | {"spec": spec}
    )


# The API server's refusal of each INVALID spec (by its JSON): a fragment of its message, as
# docs/operator.md quotes them. Every invalid spec has one.
REFUSALS: dict[str, str] = {
    '{"algorithm": "HS256"}': 'spec.algorithm: Unsupported value: "HS256": supported values: "RS256", "RS384", "RS512", "PS256", "PS384", "PS',
    '{"algorithm": "none"}': 'spec.algorithm: Unsupported value: "none": supported values: "RS256", "RS384", "RS512", "PS256", "PS384", "PS5',
    '{"algorithm": "rs256"}': 'spec.algorithm: Unsupported value: "rs256": supported values: "RS256", "RS384", "RS512", "PS256", "PS384", "PS',
    '{"keySize": 1024}': 'spec.keySize: Unsupported value: 1024: supported values: "2048", "3072", "4096"',
    '{"keySize": "2048"}': 'spec.keySize: Invalid value: "string": spec.keySize in body must be of type integer: "string"',
    '{"algorithm": "ES256", "keySize": 2048}': "spec.keySize: Forbidden: keySize is only for RSA algorithms (RS256..RS512, PS256..PS512), not ES256",
    '{"algorithm": "EdDSA", "keySize": 4096}': "spec.keySize: Forbidden: keySize is only for RSA algorithms (RS256..RS512, PS256..PS512), not EdDSA",
    '{"rotation": {"interval": "30d"}}': 'spec.rotation.interval: Invalid value: "30d": spec.rotation.interval in body should match \'^(?:(?:[0-9]+(?:\\.[',
    '{"rotation": {"interval": "-5m"}}': 'spec.rotation.interval: Invalid value: "-5m": spec.rotation.interval in body should match \'^(?:(?:[0-9]+(?:\\.[',
    '{"rotation": {"interval": "5"}}': 'spec.rotation.interval: Invalid value: "5": spec.rotation.interval in body should match \'^(?:(?:[0-9]+(?:\\.[0-',
    '{"rotation": {"interval": 3600}}': 'spec.rotation.interval: Invalid value: "integer": spec.rotation.interval in body must be of type string: "inte',
    '{"rotation": {"interval": "0s"}}': "spec.rotation.prePublish: Invalid value: prePublish (2h, the default when unset) must be shorter than interval",
    '{"rotation": {"retireAfter": "0m"}}': 'spec.rotation.retireAfter: Invalid value: "0m": must be longer than zero',
    '{"rotation": {"interval": "87601h"}}': 'spec.rotation.interval: Invalid value: "87601h": must not be longer than 87600h (10 years)',
    '{"rotation": {"interval": "1h", "prePublish": "1h"}}': "spec.rotation.prePublish: Invalid value: prePublish (1h) must be shorter than interval (1h), so that the next ",
    '{"rotation": {"interval": "1h", "prePublish": "61m"}}': "spec.rotation.prePublish: Invalid value: prePublish (61m) must be shorter than interval (1h), so that the next",
    '{"rotation": {"interval": "1h"}}': "spec.rotation.prePublish: Invalid value: prePublish (2h, the default when unset) must be shorter than interval",
    '{"rotation": {"every": "2h", "interval": "1h"}}': 'strict decoding error: unknown field "spec.rotation.every"',
    '{"rotation": "720h"}': 'spec.rotation: Invalid value: "string": spec.rotation in body must be of type object: "string"',
    '{"secretName": "Bad_Name"}': 'spec.secretName: Invalid value: "Bad_Name": spec.secretName in body should match \'^[a-z0-9]([-a-z0-9]*[a-z0-9]',
    json.dumps(
        {"configMapName": "x" * 254}
    ): "spec.configMapName: Too long: may not be more than 253 bytes",
    '{"secretName": "-leading"}': 'spec.secretName: Invalid value: "-leading": spec.secretName in body should match \'^[a-z0-9]([-a-z0-9]*[a-z0-9]',
    '{"issuer": "ftp://example.com"}': 'spec.issuer: Invalid value: "ftp://example.com": spec.issuer in body should match \'^https?://[^/?#\\s]+[^?#\\s]*',
    '{"issuer": "https://example.com/?q=1"}': 'spec.issuer: Invalid value: "https://example.com/?q=1": spec.issuer in body should match \'^https?://[^/?#\\s]+[',
    '{"issuer": "https://example.com/#frag"}': 'spec.issuer: Invalid value: "https://example.com/#frag": spec.issuer in body should match \'^https?://[^/?#\\s]+',
    '{"issuer": "example.com"}': "spec.issuer: Invalid value: \"example.com\": spec.issuer in body should match '^https?://[^/?#\\s]+[^?#\\s]*$'",
    json.dumps(
        {"jwksUri": "https://" + "x" * 2048}
    ): "spec.jwksUri: Too long: may not be more than 2048 bytes",
    '{"revokedKeys": ["not a kid!"]}': 'spec.revokedKeys[0]: Invalid value: "not a kid!": spec.revokedKeys[0] in body should match \'^[A-Za-z0-9_-]{1,1',
    '{"revokedKeys": "abc"}': 'spec.revokedKeys: Invalid value: "string": spec.revokedKeys in body must be of type array: "string"',
    '{"deletionPolicy": "Orphan"}': 'spec.deletionPolicy: Unsupported value: "Orphan": supported values: "Retain", "Delete"',
    '{"rotate": "now"}': 'strict decoding error: unknown field "spec.rotate"',
    '{"verification": {"maxTokenAge": "1d"}}': 'spec.verification.maxTokenAge: Invalid value: "1d": spec.verification.maxTokenAge in body should match \'^(?:(?',
    '{"verification": {"audiences": [""]}}': 'spec.verification.audiences[0]: Invalid value: "": spec.verification.audiences[0] in body should be at least 1',
    '{"verification": {"requiredClaims": ["bad claim"]}}': 'spec.verification.requiredClaims[0]: Invalid value: "bad claim": spec.verification.requiredClaims[0] in body s',
    '{"verification": {"claimHeaders": {"email": "Bad Header"}}}': 'spec.verification.claimHeaders.email: Invalid value: "Bad Header": spec.verification.claimHeaders.email in bod',
    '{"verification": {"claimHeaders": {"bad claim!": "X-Auth-Bad"}}}': "spec.verification.claimHeaders: Invalid value: keys must be a claim name (1-64 letters, digits, '_', '.', ':' ",
    '{"verification": {"issuer": "mailto:a@b"}}': 'spec.verification.issuer: Invalid value: "mailto:a@b": spec.verification.issuer in body should match \'^https?:',
    '{"verification": {"cookie": "session"}}': 'strict decoding error: unknown field "spec.verification.cookie"',
    '{"verification": {"claimHeaders": {"sub": "Set-Cookie"}}}': "spec.verification.claimHeaders: Invalid value: a claim may not be mapped to a reserved header (framing, hop-by",
    '{"verification": {"claimHeaders": {"a": "X-A", "b": "x-a"}}}': "spec.verification.claimHeaders: Invalid value: two claims may not be mapped to the same header",
    '{"verification": {"audiences": ["api", "api"]}}': 'spec.verification.audiences[1]: Duplicate value: "api"',
    '{"verification": {"audiences": ["a\\nb"]}}': 'spec.verification.audiences[0]: Invalid value: "a\\nb": spec.verification.audiences[0] in body should match \'^[',
    '{"revokedKeys": ["k", "k"]}': 'spec.revokedKeys[1]: Duplicate value: "k"',
    json.dumps(
        {"revokedKeys": [f"k{i}" for i in range(257)]}
    ): "spec.revokedKeys: Too many: 257: must have at most 256 items",
    '"not an object"': 'spec: Invalid value: "string": spec in body must be of type object: "string"',
}


@pytest.mark.parametrize("spec", VALID, ids=[str(i) for i in range(len(VALID))])
def test_valid_spec_is_accepted_by_the_api_server(spec: Any) -> None:
    status, body = dry_run(spec)
    assert status == 201, body.get("message")
    assert core_accepts(spec)


@pytest.mark.parametrize("spec", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_spec_is_refused_by_the_api_server_with_its_message(spec: Any) -> None:
    status, body = dry_run(spec)
    assert status in (400, 422), (status, body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert not core_accepts(spec)
    assert REFUSALS[json.dumps(spec, sort_keys=True)] in body["message"], body["message"]


def test_defaults_are_filled_and_unknown_fields_pruned_without_strict_validation() -> None:
    status, body = dry_run(
        {"rotation": {"interval": "3h", "every": "1h"}, "bogus": 1}, strict=False
    )
    assert status == 201, body
    assert body["spec"] == {
        "algorithm": "RS256",
        "deletionPolicy": "Retain",
        "rotation": {"interval": "3h", "prePublish": "2h", "retireAfter": "2h"},
    }


def test_status_is_ignored_on_the_main_resource_and_written_only_through_the_subresource() -> None:
    doc = kube.keyset_doc(NS, "status-split", algorithm="ES256") | {"status": {"activeKid": "x"}}
    status, body = kube.api_request("POST", COLLECTION + "?dryRun=All", doc)
    assert status == 201, body
    assert "status" not in body or body["status"].get("activeKid") != "x"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    interval=st.none() | DURATIONS,
    pre_publish=st.none() | DURATIONS,
    retire_after=st.none() | DURATIONS,
)
def test_durations_are_judged_alike_by_the_api_server_and_the_core(
    interval: str | None, pre_publish: str | None, retire_after: str | None
) -> None:
    spec = rotation_spec(interval, pre_publish, retire_after)
    status, body = dry_run(spec)
    assert (status == 201) == core_accepts(spec), (spec, body.get("message"))
