"""The image recipe: no Docker engine runs here, so the Dockerfile and .dockerignore are read
and checked against the chart and the package they must agree with. The real build runs in
.github/workflows/e2e.yaml."""

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from jwks_operator.cli import build_parser
from tests.deploy.support import CHART, ROOT, dockerfile_stages

COMPILERS = ("gcc", "g++", "clang", "build-essential", "make ", "-dev ", "rustc", "cargo")


def _stages() -> list[list[str]]:
    return dockerfile_stages((ROOT / "Dockerfile").read_text())


def _instructions(stage: list[str], keyword: str) -> list[str]:
    return [line.split(None, 1)[1] for line in stage if line.upper().startswith(keyword + " ")]


def test_multi_stage_on_python_311_slim() -> None:
    stages = _stages()
    assert len(stages) >= 2
    assert stages[0][0].split()[1:] == ["python:3.11-slim", "AS", "builder"]
    assert stages[-1][0].split()[1] == "python:3.11-slim"
    builder_runs = " ".join(_instructions(stages[0], "RUN"))
    assert "pip wheel" in builder_runs


def test_final_stage_installs_the_wheels_offline_and_has_no_compiler() -> None:
    final = _stages()[-1]
    runs = " ".join(_instructions(final, "RUN")) + " "
    assert (
        "pip install --no-index --find-links=/wheels --require-hashes -r /wheels/requirements.lock"
        in runs
    )
    assert "pip install --no-index --find-links=/wheels --no-deps jwks-operator" in runs
    assert "pip check" in runs
    assert "from=builder" in runs
    for compiler in COMPILERS:
        assert compiler not in runs, compiler
    assert not _instructions(final, "COPY") or all(
        "--from=builder" in line for line in _instructions(final, "COPY")
    ), "the final stage takes nothing but wheels from the builder"


def test_user_matches_the_charts_uid() -> None:
    final = _stages()[-1]
    (user,) = _instructions(final, "USER")
    uid, _, gid = user.partition(":")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"] == 10001
    assert int(uid) == values["securityContext"]["runAsUser"]
    assert int(gid) == values["podSecurityContext"]["runAsGroup"]
    runs = " ".join(_instructions(final, "RUN"))
    assert "--uid 10001" in runs and "--gid 10001" in runs
    # USER comes after the install, so the installed files are not writable by the process.
    assert final.index(next(x for x in final if x.startswith("USER"))) > max(
        i for i, x in enumerate(final) if x.startswith("RUN")
    )


def test_entrypoint_runs_both_processes() -> None:
    final = _stages()[-1]
    (entrypoint,) = _instructions(final, "ENTRYPOINT")
    (cmd,) = _instructions(final, "CMD")
    assert json.loads(entrypoint) == ["jwks-operator"]
    assert json.loads(cmd) == ["--help"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["jwks-operator"] == "jwks_operator.cli:main"
    subparsers = build_parser()._subparsers
    assert subparsers is not None
    commands = subparsers._group_actions[0].choices
    assert isinstance(commands, dict) and {"run", "serve"} <= set(commands)


def test_exposed_ports_match_the_chart() -> None:
    (expose,) = _instructions(_stages()[-1], "EXPOSE")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {int(p) for p in expose.split()} == {
        values["server"]["port"],
        values["operator"]["healthPort"],
    }


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):
        segments = path.split("/")
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase("/".join(segments[i:]), tail) for i in range(len(segments)))
    return fnmatch.fnmatchcase(path, pattern)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; '!' re-includes; a pattern
    matches a path or any of its parent directories."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = (raw[1:] if negate else raw).rstrip("/")
        if any(_matches(candidate, pattern) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_the_package_source() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    package = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "operator" / "jwks_operator").rglob("*.py")
        if "__pycache__" not in p.parts
    ]
    assert "operator/jwks_operator/cli.py" in package
    for kept in [
        "pyproject.toml",
        "requirements.lock",
        "LICENSE",
        *package,
        "operator/jwks_operator/py.typed",
    ]:
        assert not _ignored(kept, patterns), kept
    for dropped in [
        ".git/HEAD",
        ".venv/bin/python",
        ".cache/tools/bin/helm",
        "tests/deploy/test_dockerfile.py",
        "deploy/crds/jwkskeysets.jwks.dev.yaml",
        "bench/README.md",
        "docs/install.md",
        "operator/jwks_operator/__pycache__/cli.cpython-311.pyc",
        "Dockerfile",
    ]:
        assert _ignored(dropped, patterns), dropped


def test_pyproject_builds_from_what_the_context_holds() -> None:
    """The builder runs `pip wheel .` on the context: the package root it names must be in it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["operator"]
    assert Path(ROOT / "operator" / "jwks_operator" / "__init__.py").is_file()


def _lock() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {name: (version, hashes)}."""
    pins: dict[str, tuple[str, list[str]]] = {}
    text = (ROOT / "requirements.lock").read_text()
    for entry in re.split(r"\n(?=[a-z0-9])", text):
        head = entry.split()[0] if entry.strip() and not entry.startswith(("#", "-")) else ""
        if "==" in head:
            name, version = head.split("==")
            pins[canonicalize_name(name)] = (
                version,
                re.findall(r"--hash=sha256:([0-9a-f]{64})", entry),
            )
    return pins


def test_the_builder_fetches_only_the_locked_files() -> None:
    runs = " ".join(_instructions(_stages()[0], "RUN"))
    assert "--require-hashes" in runs and "-r requirements.lock" in runs
    assert "--no-deps" in runs  # nothing resolved beyond the lock
    text = (ROOT / "requirements.lock").read_text()
    assert "--find-links" not in text and "--index-url" not in text  # no machine's settings


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    pins = _lock()
    assert len(pins) > 10
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for raw in project["dependencies"]:
        requirement = Requirement(raw)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name][0]), (raw, pins[name][0])
    assert "jwks-operator" not in pins  # the project itself is built from the context
