"""The release path: the workflows pass actionlint, the release workflow publishes what the
README promises, and the versions a release names agree (scripts/release_check.py, the
same check the workflow runs on the tag)."""

import functools
import importlib.metadata
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts import release_check
from tests.deploy.support import CHART, ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yaml"


@functools.cache
def actionlint() -> Path:
    """The pinned actionlint, built by scripts/ensure-actionlint.sh (cached outside the clone)."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-actionlint.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"scripts/ensure-actionlint.sh failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


def run_actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(actionlint()), "-no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def test_every_workflow_passes_actionlint() -> None:
    workflows = sorted(WORKFLOWS.glob("*.y*ml"))
    assert {path.name for path in workflows} >= {"e2e.yaml", "release.yaml"}
    result = run_actionlint(*workflows)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yaml"
    broken.parent.mkdir(parents=True)
    text = RELEASE.read_text().replace("needs: [check, image]", "needs: [check, imagez]")
    broken.write_text(text.replace("${{ github.ref_name }}", "${{ github.ref_nam }}"))
    result = run_actionlint(broken)
    assert result.returncode == 1
    assert "imagez" in result.stdout and "ref_nam" in result.stdout


def _release() -> dict[Any, Any]:
    workflow: dict[Any, Any] = yaml.safe_load(RELEASE.read_text())
    return workflow


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _uses(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        step["uses"].split("@")[0]: step.get("with", {}) for step in job["steps"] if "uses" in step
    }


def test_release_workflow_publishes_what_a_release_promises() -> None:
    workflow = _release()
    assert workflow[True]["push"]["tags"] == ["v[0-9]+.[0-9]+.[0-9]+*"]  # YAML 1.1: on -> True
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    check = _runs(jobs["check"])
    assert 'image="ghcr.io/${OWNER,,}/jwks-operator"' in check
    assert 'release_check.py --tag "$TAG" --image "$image"' in check
    # The image: both architectures, pushed, signed keylessly, an SBOM attested.
    image = jobs["image"]
    assert image["permissions"]["id-token"] == "write"
    assert image["permissions"]["packages"] == "write"
    build = _uses(image)["docker/build-push-action"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["push"] is True
    assert "sigstore/cosign-installer" in _uses(image)
    assert _uses(image)["anchore/sbom-action"]["format"] == "spdx-json"
    signing = _runs(image)
    assert 'cosign sign --yes "$IMAGE@$DIGEST"' in signing
    assert "cosign attest --yes --type spdxjson" in signing
    # The chart: packaged, pushed as OCI, signed.
    chart = _runs(jobs["chart"])
    assert "helm package deploy/helm/jwks-operator" in chart
    assert 'helm push "dist/jwks-operator-$VERSION.tgz" "$CHARTS"' in chart
    assert "cosign sign --yes" in chart
    assert "charts=oci://ghcr.io/${OWNER,,}/charts" in check
    # The GitHub release: the CHANGELOG section, the chart and the SBOM attached.
    assert 'release_check.py --notes "${TAG#v}"' in _runs(jobs["check"])
    release = jobs["github-release"]
    assert set(release["needs"]) == {"check", "image", "chart"}
    assert release["permissions"] == {"contents": "write"}
    assert "gh release create" in _runs(release) and ".spdx.json" in _runs(release)


def test_release_files_agree() -> None:
    """Chart image and appVersion, chart version, package version, CHANGELOG's newest entry."""
    release = release_check.read_release()
    assert release_check.problems(release) == []
    assert release.image_repository == release_check.IMAGE_REPOSITORY
    assert importlib.metadata.version("jwks-operator") == release.package  # the installed one
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == "ghcr.io/jwks-operator/jwks-operator"


def _copy(tmp_path: Path) -> Path:
    for relative in ("deploy/helm/jwks-operator", "operator/jwks_operator", "CHANGELOG.md"):
        source = ROOT / relative
        target = tmp_path / relative
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    return tmp_path


def test_each_disagreement_is_named(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    chart = root / "deploy/helm/jwks-operator/Chart.yaml"
    chart.write_text(chart.read_text().replace('appVersion: "0.1.0"', 'appVersion: "0.2.0"'))
    values = root / "deploy/helm/jwks-operator/values.yaml"
    values.write_text(
        values.read_text().replace(
            "repository: ghcr.io/jwks-operator/jwks-operator", "repository: jwks-operator"
        )
    )
    changelog = root / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text().replace("## [0.1.0]", "## [Unreleased]\n\n## [0.0.9]", 1)
    )
    found = release_check.problems(release_check.read_release(root), tag="v0.1.1")
    text = "\n".join(found)
    assert "Chart.yaml appVersion is 0.2.0, the package version is 0.1.0" in text
    assert "CHANGELOG.md newest entry is 0.0.9" in text
    assert "image.repository is jwks-operator" in text
    assert "the tag v0.1.1 does not name the package version 0.1.0" in text
    assert "values.yaml image tag (image.tag or appVersion) is 0.2.0" in text


def test_release_notes_are_the_changelog_section(capsys: pytest.CaptureFixture[str]) -> None:
    version = release_check.read_release().package
    assert release_check.main(["--notes", version]) == 0
    notes = capsys.readouterr().out
    section = release_check.changelog_sections(release_check.CHANGELOG.read_text())[version]
    assert section and notes == section + "\n"
    assert "## [" not in notes  # one section only
    assert release_check.main(["--notes", "9.9.9"]) == 1
