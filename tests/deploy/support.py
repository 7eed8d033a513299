"""Shared helpers of the manifest tests: the real helm binary, rendering, CRD schema checks.

Kept out of conftest.py so that test modules import them explicitly (and mypy sees them).
"""

import copy
import functools
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cel  # type: ignore[import-untyped,unused-ignore]
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "jwks-operator"
CRD_DIR = ROOT / "deploy" / "crds"
EXAMPLES = ROOT / "examples"
VALUES_DIR = Path(__file__).resolve().parent / "values"
KEYSET_CRD = CRD_DIR / "jwkskeysets.jwks.dev.yaml"
RELEASE = "jwks"
RELEASE_NAMESPACE = "jwks-system"
K8S_VERSION = "1.30.0"  # between the chart's minimum (1.28) and the newest schemas


@functools.cache
def helm_binary() -> Path:
    """The real helm, fetched by scripts/fetch_helm.py (idempotent; cached in .cache/tools)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_helm.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/fetch_helm.py failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, check=False, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def values_file(name: str) -> Path:
    return VALUES_DIR / f"{name}.yaml"


@functools.cache
def render(values: str | None) -> tuple[dict[str, Any], ...]:
    """``helm template`` with tests/deploy/values/<values>.yaml; every document, parsed."""
    args = ["template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE]
    if values:
        args += ["--values", str(values_file(values))]
    text = helm(*args).stdout
    return tuple(doc for doc in yaml.safe_load_all(text) if doc)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> list[Any]:
    return [
        doc
        for doc in docs
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> Any:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@functools.cache
def keyset_crd() -> dict[str, Any]:
    (crd,) = load_yaml_documents(KEYSET_CRD)
    return dict(crd)


def keyset_schema() -> dict[str, Any]:
    schema: dict[str, Any] = keyset_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def crd_schema_validator(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A JSON Schema validator for a CRD's openAPIV3Schema (x-kubernetes-* are ignored
    as unknown keywords; CEL rules are checked separately by ``cel_errors``)."""
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: a missing property with a ``default``
    is set, then defaulting continues inside it (so ``rotation: {}`` gets its durations)."""
    if not isinstance(value, dict):
        return value
    result = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in result and "default" in sub:
            result[name] = copy.deepcopy(sub["default"])
        if name in result:
            result[name] = apply_defaults(sub, result[name])
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for name in result:
            if name not in schema.get("properties", {}):
                result[name] = apply_defaults(extra, result[name])
    return result


def iter_rules(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every x-kubernetes-validations rule with the schema path it is attached to."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule
    for name, sub in schema.get("properties", {}).items():
        yield from iter_rules(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_rules(schema["additionalProperties"], f"{path}.*")
    if isinstance(schema.get("items"), dict):
        yield from iter_rules(schema["items"], f"{path}[*]")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _cel_context(value: Any) -> Any:
    """``self`` plus the Kubernetes CEL string extension's ``lowerAscii`` (ASCII letters only,
    as in cel-go's ext.Strings), which the Python CEL implementation lacks."""
    return cel.Context(
        variables={"self": value},
        functions={"lowerAscii": lambda text: text.translate(_ASCII_LOWER)},
    )


def rule_message(rule: Mapping[str, Any], value: Any) -> str:
    """The message the API server reports: ``messageExpression`` when it evaluates to a
    string, else ``message`` (its documented fallback)."""
    expression = rule.get("messageExpression")
    if expression:
        try:
            text = cel.evaluate(expression, _cel_context(value))
        except Exception:
            text = None
        if isinstance(text, str) and text:
            return text
    return str(rule["message"])


def cel_errors(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """Evaluate every CEL rule that applies to ``value`` (bound to ``self``), as the API server
    does after defaulting; return 'path: message' for each rule that fails or errors."""
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        try:
            ok = cel.evaluate(rule["rule"], _cel_context(value))
        except Exception as error:  # an invalid duration string makes duration() raise
            errors.append(f"{path}: {rule['message']} ({error})")
            continue
        if ok is not True:
            errors.append(f"{path}: {rule_message(rule, value)}")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors += cel_errors(sub, value[name], f"{path}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}[{index}]")
    return errors


def unknown_fields(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """Fields the schema does not declare: the API server prunes them silently, or rejects
    them under fieldValidation=Strict, which is kubectl's default (--validate=strict)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(value, dict):
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [
                problem
                for index, item in enumerate(value)
                for problem in unknown_fields(schema["items"], item, f"{path}[{index}]")
            ]
        return []
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    problems = []
    for name, item in value.items():
        if name in props:
            problems += unknown_fields(props[name], item, f"{path}.{name}")
        elif isinstance(extra, dict):
            problems += unknown_fields(extra, item, f"{path}.{name}")
        elif path != ".metadata":
            problems.append(f"{path}.{name}: unknown field")
    return problems


def repeated_set_items(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """``x-kubernetes-list-type: set`` lists with a repeated value, which the API server
    refuses (``Duplicate value``) and JSON Schema, without uniqueItems, does not see."""
    problems: list[str] = []
    if isinstance(value, list):
        if schema.get("x-kubernetes-list-type") == "set":
            seen: list[Any] = []
            for index, item in enumerate(value):
                if item in seen:
                    problems.append(f"{path}[{index}]: Duplicate value")
                seen.append(item)
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                problems += repeated_set_items(schema["items"], item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += repeated_set_items(sub, value[name], f"{path}.{name}")
    return problems


def api_server_verdict(obj: Mapping[str, Any]) -> list[str]:
    """What a real API server would say about a JwksKeySet created with kubectl: strict field
    validation, defaulting, the schema, then CEL (the server skips CEL on a value that already
    failed its schema, so do we)."""
    schema = keyset_schema()
    problems = unknown_fields(schema, dict(obj))
    defaulted = apply_defaults(schema, dict(obj))
    problems += [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in crd_schema_validator(schema).iter_errors(defaulted)
    ]
    problems += repeated_set_items(schema, defaulted)
    if problems:
        return problems
    return cel_errors(schema, defaulted)


def keyset(spec: Any, name: str = "auth") -> dict[str, Any]:
    return {
        "apiVersion": "jwks.dev/v1alpha1",
        "kind": "JwksKeySet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def dockerfile_stages(text: str) -> list[list[str]]:
    """Instructions (continuations joined, comments dropped) grouped by FROM stage."""
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[str]] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        assert stages, f"instruction before FROM: {line}"
        stages[-1].append(line)
    return stages
