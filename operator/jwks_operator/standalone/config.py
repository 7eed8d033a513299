"""The standalone config file: JwksKeySet documents, exactly as one would ``kubectl apply``.

Using the CRD's own shape (and ``core.spec.parse_spec`` for the spec) means a keyset can
move between a laptop, a VM and a cluster without being rewritten, and a mistake reads
the same everywhere: every problem of every document is reported at once, each prefixed
with where it is (``FILE: document 2 (default/auth): spec.rotation.interval: ...``).
"""

import argparse
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from jwks_operator.core.contract import API_VERSION, KIND, ROTATE_ANNOTATION
from jwks_operator.core.spec import NAMESPACE_PATTERN, KeySetSpec, SpecError, parse_spec

DEFAULT_NAMESPACE: Final = "default"
_NAMESPACE_RE = re.compile(NAMESPACE_PATTERN)
_TOP_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_METADATA_FIELDS: Final = frozenset({"name", "namespace", "annotations", "labels"})
MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024

KeySetId = tuple[str, str]
"""(namespace, name)"""


class ConfigError(ValueError):
    """A config file that cannot be used; ``problems`` holds one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class KeySetConfig:
    namespace: str
    name: str
    spec: KeySetSpec
    rotate_request: str | None = None
    """The ``jwks.dev/rotate`` annotation: a new value promotes the next key now."""

    @property
    def id(self) -> KeySetId:
        return (self.namespace, self.name)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class StandaloneConfig:
    keysets: Mapping[KeySetId, KeySetConfig]


def parse_keyset_ref(text: str) -> KeySetId:
    """``NAMESPACE/NAME`` (or ``NAME`` for the default namespace), as an argparse type."""
    namespace, _, name = text.rpartition("/")
    if not name or "/" in namespace:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/NAME")
    return (namespace or DEFAULT_NAMESPACE, name)


def load_config(path: Path) -> StandaloneConfig:
    """Read and validate ``path``; raise ConfigError naming every problem found."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the config file ({error.strerror})"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB"])
    return parse_config(raw.decode("utf-8", "replace"), str(path))


def parse_config(text: str, source: str) -> StandaloneConfig:
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError([f"{source}: not valid YAML{where}: {problem}"]) from None
    if not documents:
        raise ConfigError([f"{source}: holds no {KIND} document"])
    problems: list[str] = []
    keysets: dict[KeySetId, KeySetConfig] = {}
    for index, document in enumerate(documents, start=1):
        prefix = f"{source}: document {index}"
        try:
            keyset = _parse_document(document, prefix, problems)
        except _DocumentError:
            continue
        if keyset.id in keysets:
            problems.append(f"{prefix}: metadata: {keyset.label} is defined twice")
            continue
        keysets[keyset.id] = keyset
    if problems:
        raise ConfigError(problems)
    return StandaloneConfig(keysets=keysets)


class _DocumentError(Exception):
    """This document had problems (already recorded)."""


def _parse_document(document: Any, prefix: str, problems: list[str]) -> KeySetConfig:
    start = len(problems)
    if not isinstance(document, Mapping):
        problems.append(f"{prefix}: must be a {KIND} object, not {type(document).__name__}")
        raise _DocumentError
    for key in document:
        if key not in _TOP_FIELDS:
            problems.append(
                f"{prefix}: {key}: unknown field (allowed: {', '.join(sorted(_TOP_FIELDS))})"
            )
    if document.get("apiVersion") != API_VERSION:
        problems.append(f"{prefix}: apiVersion: must be {API_VERSION}")
    if document.get("kind") != KIND:
        problems.append(f"{prefix}: kind: must be {KIND}")
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        problems.append(f"{prefix}: metadata: must be an object with a name")
        raise _DocumentError
    for key in metadata:
        if key not in _METADATA_FIELDS:
            problems.append(
                f"{prefix}: metadata.{key}: unknown field "
                f"(allowed: {', '.join(sorted(_METADATA_FIELDS))})"
            )
    name = metadata.get("name")
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or len(namespace) > 63 or not _NAMESPACE_RE.match(namespace):
        problems.append(
            f"{prefix}: metadata.namespace: {_show(namespace)} is not a valid namespace "
            "(lowercase letters, digits and '-', at most 63 characters)"
        )
        namespace = DEFAULT_NAMESPACE
    label = f"{namespace}/{name}" if isinstance(name, str) else namespace
    rotate = _rotate_request(metadata.get("annotations"), f"{prefix} ({label})", problems)
    try:
        spec = parse_spec(name, document.get("spec"))  # type: ignore[arg-type]  # it checks
    except SpecError as error:
        problems.extend(f"{prefix} ({label}): {problem}" for problem in error.problems)
        raise _DocumentError from None
    if len(problems) > start:
        raise _DocumentError
    return KeySetConfig(namespace=namespace, name=spec.name, spec=spec, rotate_request=rotate)


def _rotate_request(annotations: object, prefix: str, problems: list[str]) -> str | None:
    if annotations is None:
        return None
    if not isinstance(annotations, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in annotations.items()
    ):
        problems.append(f"{prefix}: metadata.annotations: must map strings to strings")
        return None
    value = annotations.get(ROTATE_ANNOTATION)
    return value if isinstance(value, str) else None


def _show(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."
