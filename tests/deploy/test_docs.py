"""The install and verification docs say what the code does: the in-cluster URL is the
Service the chart renders, paths exist. (Every code block of docs/verifying-tokens.md and
docs/gateways.md is run by the conformance suite: tests/clients/test_docs.py.)"""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from scripts import release_check
from tests.deploy.support import CHART, ROOT, helm

DOCS = ROOT / "docs"
IN_CLUSTER = "http://jwks-operator-server.jwks-system.svc/identity/auth/.well-known/jwks.json"


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def test_in_cluster_url_is_the_service_the_chart_renders(helm_path: Path) -> None:
    rendered = helm("template", "jwks-operator", str(CHART), "--namespace", "jwks-system").stdout
    services = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Service"]
    (service,) = services
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert service["spec"]["ports"][0]["port"] == 80
    assert IN_CLUSTER.startswith(f"http://{host}/")
    for doc in ("verifying-tokens.md", "install.md"):
        for url in re.findall(r"http://[a-z0-9.-]+\.svc[^\s`'\"]*", (DOCS / doc).read_text()):
            assert url.startswith(f"http://{host}/"), (doc, url)


def test_paths_named_in_the_install_guide_exist() -> None:
    text = (DOCS / "install.md").read_text()
    named = set(re.findall(r"\b((?:examples|deploy|tests|docs)/[\w./-]+\w)", text))
    assert "examples/keyset-minimal.yaml" in named
    missing = [path for path in sorted(named) if not (ROOT / path).exists()]
    assert not missing


# -- one install recipe across the README, the install guide and the chart README ---------

RECIPE_DOCS = (ROOT / "README.md", DOCS / "install.md", DOCS / "upgrading.md", CHART / "README.md")
RELEASE_NAME = "jwks-operator"
RELEASE_NAMESPACE = "jwks-system"


def shell_commands(path: Path) -> list[list[str]]:
    """Every command of the file's sh blocks, as words (continuations joined, comments cut)."""
    commands = []
    for block in blocks(path, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"\s*(?:&&|\|\||;|&$)\s*", line):
                if part:
                    commands.append(shlex.split(part))
    return commands


def _option(words: list[str], flag: str) -> str | None:
    for index, word in enumerate(words):
        if word == flag and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def _sets(words: list[str]) -> dict[str, str]:
    return dict(words[i + 1].split("=", 1) for i, word in enumerate(words) if word == "--set")


def recipe_problems(path: Path) -> list[str]:
    """Where a document's recipe differs from the one recipe (an empty list: it agrees)."""
    chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    owner = release_check.IMAGE_REPOSITORY.split("/")[1]
    commands = shell_commands(path)
    built = {_option(c, "-t") for c in commands if c[:2] == ["docker", "build"]}
    clusters = {_option(c, "--name") for c in commands if c[:3] == ["kind", "create", "cluster"]}
    clusters.add("jwks")  # the install guide's cluster, which the other documents refer to
    loaded = set()
    found = []
    for words in commands:
        text = " ".join(words)
        if words[:1] in (["pip"], ["pip3"]) or words[:3] == ["python3", "-m", "pip"]:
            found.append(f"{text}: pip outside a virtualenv (Debian refuses it)")
        if words[:3] == ["kind", "load", "docker-image"]:
            if _option(words, "--name") not in clusters:
                found.append(f"{text}: kind load without the cluster's --name")
            loaded.add(words[3])
            if words[3] not in built and not words[3].endswith(":e2e"):
                found.append(f"{text}: loads an image no docker build in {path.name} made")
        if words[:2] in (["helm", "install"], ["helm", "upgrade"], ["helm", "uninstall"]):
            positional = [w for w in words[2:] if not w.startswith("-")]
            if positional[:1] != [RELEASE_NAME]:
                found.append(f"{text}: release name is not {RELEASE_NAME}")
            if (_option(words, "--namespace") or _option(words, "-n")) != RELEASE_NAMESPACE:
                found.append(f"{text}: namespace is not {RELEASE_NAMESPACE}")
            if words[1] == "uninstall":
                continue
            chart = positional[1] if len(positional) > 1 else ""
            if chart == "deploy/helm/jwks-operator":
                values = _sets(words)
                image = f"{values.get('image.repository')}:{values.get('image.tag')}"
                if image not in loaded:
                    found.append(
                        f"{text}: a local chart must name the image built and loaded above"
                    )
            elif chart == f"oci://ghcr.io/{owner}/charts/jwks-operator":
                if _option(words, "--version") not in (chart_version, "X.Y.Z"):
                    found.append(f"{text}: --version is not the chart's {chart_version}")
            else:
                found.append(f"{text}: unknown chart {chart!r}")
        if words[-2:] == ["-e", "."]:
            found.append(f"{text}: an editable install is for development, not for using the CLI")
    return found


@pytest.mark.parametrize("path", RECIPE_DOCS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_install_recipe_is_one_recipe(path: Path) -> None:
    assert recipe_problems(path) == []
    assert any(
        words[:2] == ["helm", "install"] or words[:2] == ["helm", "upgrade"]
        for words in shell_commands(path)
    )


def test_the_recipe_check_catches_the_old_mistakes(tmp_path: Path) -> None:
    old = tmp_path / "old.md"
    old.write_text(
        "```sh\n"
        "docker build -t jwks-operator:0.1.0 .\n"
        "kind load docker-image jwks-operator:0.1.0\n"
        "helm install jwks deploy/helm/jwks-operator --namespace jwks-system --create-namespace\n"
        "pip install -e .       # from the repository\n"
        "```\n"
    )
    problems = "\n".join(recipe_problems(old))
    assert "kind load without the cluster's --name" in problems
    assert "release name is not jwks-operator" in problems
    assert "a local chart must name the image built and loaded above" in problems
    assert "pip outside a virtualenv" in problems


def test_every_test_the_threat_model_cites_exists() -> None:
    """docs/security.md backs each claim with a test: each one it names must exist."""
    text = (DOCS / "security.md").read_text()
    cited = re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", text)
    assert len(cited) > 15
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert not name or re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name}"
    # The table names tests of test_trust_attacks.py without the path prefix.
    attacks = (ROOT / "tests/operator/test_trust_attacks.py").read_text()
    for name in re.findall(r"\| `(test_\w+)", text):
        assert re.search(rf"^def {name}\(", attacks, re.M), name
