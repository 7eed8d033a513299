"""Project Wycheproof's test vectors, read from beside the project (never copied into it).

They live in ``<repo>/../shared/vectors/wycheproof/`` (CI clones the project into another
folder with ``shared/`` beside it); ``WYCHEPROOF_VECTORS`` may point elsewhere. When the
folder is absent the tests that need it are skipped, with the path in the reason.
"""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT_VARIABLE = "WYCHEPROOF_VECTORS"


def vectors_dir() -> Path:
    override = os.environ.get(ENVIRONMENT_VARIABLE)
    if override:
        return Path(override)
    return ROOT.parent / "shared" / "vectors" / "wycheproof"


def require(name: str) -> Path:
    """The vector file ``name``, or a visible skip saying where it was looked for."""
    path = vectors_dir() / name
    if not path.is_file():
        pytest.skip(
            f"Wycheproof vectors not found: {path} (set {ENVIRONMENT_VARIABLE} to their folder)"
        )
    return path


@cache
def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(require(name).read_text())
    return document


@dataclass(frozen=True)
class Vector:
    file: str
    group: dict[str, Any]
    test: dict[str, Any]

    @property
    def result(self) -> str:
        return str(self.test["result"])

    @property
    def label(self) -> str:
        return f"{self.file}#{self.test['tcId']} {self.test.get('comment', '')}"


def vectors(name: str) -> Iterator[Vector]:
    for group in load(name)["testGroups"]:
        for test in group["tests"]:
            yield Vector(name, group, test)


def files(prefix: str) -> list[str]:
    """The vector files whose name starts with ``prefix`` (empty when the folder is absent:
    the test that asks for them then skips through ``require``)."""
    folder = vectors_dir()
    if not folder.is_dir():
        return [f"{prefix}*"]
    return sorted(path.name for path in folder.glob(f"{prefix}*_test.json"))
