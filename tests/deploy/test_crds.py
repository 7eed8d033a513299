"""The CRDs: generated from the core (and not stale), structurally sound, complete, and
accepted by the Kubernetes apiextensions schema."""

import importlib.util
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import cel  # type: ignore[import-untyped,unused-ignore]
import kubernetes_validate
import pytest
from kopf._cogs.structs import references

from jwks_operator.core import contract, spec, specfields
from jwks_operator.core.algorithms import ALGORITHM_NAMES, RSA_KEY_SIZES
from jwks_operator.core.durations import DURATION_PATTERN, format_duration, parse_duration
from tests.deploy.support import (
    CHART,
    CRD_DIR,
    K8S_VERSION,
    ROOT,
    apply_defaults,
    cel_errors,
    crd_schema_validator,
    iter_rules,
    keyset_crd,
    keyset_schema,
    load_yaml_documents,
)


def _generator() -> ModuleType:
    path = ROOT / "scripts" / "generate_crds.py"
    module_spec = importlib.util.spec_from_file_location("generate_crds", path)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _walk(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    for key, suffix in (("items", "[*]"), ("additionalProperties", ".*")):
        if isinstance(schema.get(key), dict):
            yield from _walk(schema[key], f"{path}{suffix}")


def test_committed_crds_are_generated_from_the_core_and_not_stale() -> None:
    """deploy/crds/ and the chart's files/crds/ are exactly what the generator writes now."""
    targets = _generator().targets()
    assert {path.parent for path in targets} == {CRD_DIR, CHART / "files" / "crds"}
    stale = [
        str(path.relative_to(ROOT))
        for path, text in targets.items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"stale: {stale}; run .venv/bin/python scripts/generate_crds.py"
    assert {p.name for p in CRD_DIR.glob("*.yaml")} == {p.name for p in targets}


def test_keyset_crd_identity() -> None:
    crd = keyset_crd()
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == "jwkskeysets.jwks.dev"
    assert crd["spec"]["group"] == contract.GROUP == "jwks.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["kind"] == contract.KIND == "JwksKeySet"
    assert names["plural"] == "jwkskeysets"
    assert names["shortNames"] == ["jwks", "keyset"]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = {
        c["name"]: c for c in keyset_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert list(columns) == ["Ready", "Algorithm", "Active Kid", "Next Rotation", "Age", "Status"]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Status"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].message'
    assert columns["Status"]["priority"] == 1
    assert columns["Age"]["type"] == "date"
    assert all("priority" not in c for name, c in columns.items() if name != "Status")


def test_schema_fields_are_exactly_the_fields_parse_spec_knows() -> None:
    props = keyset_schema()["properties"]["spec"]["properties"]
    assert set(props) == set(specfields.SPEC.fields)
    assert set(props["rotation"]["properties"]) == set(specfields.ROTATION.fields)
    assert set(props["verification"]["properties"]) == set(specfields.VERIFICATION.fields)


def test_enums_patterns_and_defaults_come_from_the_core() -> None:
    props = keyset_schema()["properties"]["spec"]["properties"]
    assert props["algorithm"]["enum"] == list(ALGORITHM_NAMES)
    assert props["algorithm"]["default"] == spec.DEFAULT_ALGORITHM
    assert props["keySize"]["enum"] == list(RSA_KEY_SIZES)
    assert "default" not in props["keySize"], "a default keySize would break every EC key set"
    rotation = props["rotation"]["properties"]
    assert rotation["interval"]["default"] == format_duration(spec.DEFAULT_INTERVAL) == "720h"
    assert rotation["prePublish"]["default"] == format_duration(spec.DEFAULT_PRE_PUBLISH) == "2h"
    assert rotation["retireAfter"]["default"] == format_duration(spec.DEFAULT_RETIRE_AFTER) == "2h"
    for field in rotation.values():
        assert field["pattern"] == DURATION_PATTERN
    for name in ("secretName", "configMapName"):
        assert props[name]["pattern"] == spec.NAME_PATTERN
        assert props[name]["maxLength"] == spec.NAME_MAX == 253
    for name in ("issuer", "jwksUri"):
        assert props[name]["format"] == "uri"
        assert props[name]["maxLength"] == 2048
    assert props["revokedKeys"]["items"]["pattern"] == spec.KID_PATTERN
    assert props["deletionPolicy"]["enum"] == ["Retain", "Delete"]
    assert props["deletionPolicy"]["default"] == "Retain"
    verification = props["verification"]["properties"]
    assert verification["leeway"]["default"] == "60s"
    assert parse_duration(verification["leeway"]["default"]) == spec.DEFAULT_LEEWAY
    assert verification["requiredClaims"]["items"]["pattern"] == spec.CLAIM_PATTERN
    assert verification["claimHeaders"]["additionalProperties"]["pattern"] == spec.HEADER_PATTERN


def test_every_spec_field_has_a_description_for_kubectl_explain() -> None:
    spec_schema = keyset_schema()["properties"]["spec"]
    missing = [
        path
        for path, node in _walk(spec_schema, ".spec")
        if not path.endswith(("[*]", ".*")) and not node.get("description")
    ]
    assert not missing


def test_schema_is_structural() -> None:
    """What the API server demands of a structural schema: a type on every node (apart from
    preserve-unknown nodes), never both properties and additionalProperties."""
    for path, node in _walk(keyset_schema()):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("type") == "array":
            assert "items" in node, path


def test_preserve_unknown_fields_only_for_kopf_bookkeeping() -> None:
    preserved = [
        p for p, n in _walk(keyset_schema()) if n.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert preserved == [".status.kopf"]


def test_status_schema_has_the_lifecycle_fields() -> None:
    status = keyset_schema()["properties"]["status"]["properties"]
    assert {"conditions", "activeKid", "nextKid", "nextRotationTime", "revision", "keys"} <= set(
        status
    )
    assert status["revision"]["type"] == "integer"
    condition = status["conditions"]["items"]["properties"]
    assert {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"} <= (
        set(condition)
    )
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    key = status["keys"]["items"]["properties"]
    assert {"kid", "state", "algorithm", "createdAt", "activatesAt", "retiresAt", "removesAt"} <= (
        set(key)
    )
    assert not {"d", "p", "q", "dp", "dq", "qi", "k", "privateKey", "pem"} & set(key)


def test_defaults_are_valid_under_their_own_schema() -> None:
    """The API server rejects a CRD whose defaults fail their schema; check ours by defaulting
    an empty spec and validating the result (schema and CEL)."""
    schema = keyset_schema()
    defaulted = apply_defaults(schema, {"spec": {}})
    assert defaulted["spec"]["rotation"] == {
        "interval": "720h",
        "prePublish": "2h",
        "retireAfter": "2h",
    }
    assert list(crd_schema_validator(schema).iter_errors(defaulted)) == []
    assert cel_errors(schema, defaulted) == []
    with_verification = apply_defaults(schema, {"spec": {"verification": {}}})
    assert with_verification["spec"]["verification"] == {"leeway": "60s"}
    assert cel_errors(schema, with_verification) == []


def test_every_cel_rule_compiles_and_has_a_message() -> None:
    rules = list(iter_rules(keyset_schema()))
    paths = {path for path, _ in rules}
    assert {
        ".spec",
        ".spec.rotation",
        ".spec.rotation.interval",
        ".spec.verification.claimHeaders",
    } <= paths
    for path, rule in rules:
        cel.compile(rule["rule"])
        assert rule["message"], path


@pytest.mark.parametrize(
    "name", ["jwkskeysets.jwks.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"]
)
def test_crd_passes_the_apiextensions_schema(name: str) -> None:
    (crd,) = load_yaml_documents(CRD_DIR / f"{name}.yaml")
    kubernetes_validate.validate(crd, K8S_VERSION, strict=True)
    kubernetes_validate.validate(crd, "1.28.0", strict=True)


@pytest.mark.parametrize(
    ("selector", "scope"),
    [
        (references.NAMESPACED_PEERINGS_K, "Namespaced"),
        (references.CLUSTER_PEERINGS_K, "Cluster"),
    ],
)
def test_peering_crds_are_the_ones_kopf_looks_for(selector: Any, scope: str) -> None:
    (crd,) = load_yaml_documents(CRD_DIR / f"{selector.any_name}.{selector.group}.yaml")
    assert crd["spec"]["group"] == selector.group == "kopf.dev"
    assert crd["spec"]["names"]["plural"] == selector.any_name
    assert crd["spec"]["scope"] == scope
    assert [v["name"] for v in crd["spec"]["versions"]] == [selector.version]
