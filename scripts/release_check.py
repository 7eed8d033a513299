"""Check that one release is described the same way everywhere; print its changelog section.

A tagged release publishes an image, a chart and release notes. They only make sense
together when the package version, the chart's ``version`` and ``appVersion``, the
chart's default image (repository and tag) and the CHANGELOG's newest entry name the same
release. The test suite runs :func:`problems` on every commit (tests/deploy/test_release.py);
the release workflow runs this script with the pushed tag and the image it is about to
push, so that a tag whose files disagree publishes nothing.

    python scripts/release_check.py                     # the files agree with each other
    python scripts/release_check.py --tag v0.1.0 --image ghcr.io/owner/jwks-operator
    python scripts/release_check.py --notes 0.1.0       # print that CHANGELOG section
"""

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "jwks-operator"
CHANGELOG = ROOT / "CHANGELOG.md"
PACKAGE_INIT = ROOT / "operator" / "jwks_operator" / "__init__.py"
IMAGE_REPOSITORY = "ghcr.io/jwks-operator/jwks-operator"
"""Where the release workflow pushes the image (ghcr.io/<repository owner>/jwks-operator)."""

_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$")
_VERSION = re.compile(r'^__version__ = "(?P<version>[^"]+)"$', re.M)


@dataclass(frozen=True)
class Release:
    package: str
    chart_version: str
    app_version: str
    image_repository: str
    image_tag: str
    """The tag the chart deploys by default: ``image.tag``, else appVersion."""
    changelog: str | None
    """The newest released CHANGELOG entry (``[Unreleased]`` is skipped)."""


def changelog_sections(text: str) -> dict[str, str]:
    """Version -> the body of its ``## [version] - date`` section, newest first."""
    sections: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            if current is not None:
                sections[current] = "\n".join(lines).strip()
            current, lines = match["version"], []
        elif current is not None:
            lines.append(line)
    if current is not None:
        sections[current] = "\n".join(lines).strip()
    return sections


def read_release(root: Path = ROOT) -> Release:
    chart_dir = root / CHART.relative_to(ROOT)
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    match = _VERSION.search((root / PACKAGE_INIT.relative_to(ROOT)).read_text())
    released = [
        version
        for version in changelog_sections((root / CHANGELOG.relative_to(ROOT)).read_text())
        if version.lower() != "unreleased"
    ]
    app_version = str(chart["appVersion"])
    return Release(
        package=match["version"] if match else "",
        chart_version=str(chart["version"]),
        app_version=app_version,
        image_repository=str(values["image"]["repository"]),
        image_tag=str(values["image"].get("tag") or app_version),
        changelog=released[0] if released else None,
    )


def problems(release: Release, *, tag: str | None = None, image: str | None = None) -> list[str]:
    """Every disagreement, each naming the file to fix; empty when the release is coherent."""
    found: list[str] = []
    version = release.package
    if not version:
        found.append(f"{PACKAGE_INIT.relative_to(ROOT)}: no __version__")
    checks = [
        ("Chart.yaml version", release.chart_version),
        ("Chart.yaml appVersion", release.app_version),
        ("values.yaml image tag (image.tag or appVersion)", release.image_tag),
        ("CHANGELOG.md newest entry", release.changelog or "(none)"),
    ]
    for what, value in checks:
        if value != version:
            found.append(f"{what} is {value}, the package version is {version}")
    expected_image = image or IMAGE_REPOSITORY
    if release.image_repository != expected_image:
        found.append(
            f"values.yaml image.repository is {release.image_repository}, "
            f"the release publishes {expected_image}"
        )
    if tag is not None and tag != f"v{version}":
        found.append(f"the tag {tag} does not name the package version {version} (v{version})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="the git tag being released, e.g. v0.1.0")
    parser.add_argument("--image", help="the image repository the release pushes")
    parser.add_argument("--notes", metavar="VERSION", help="print this CHANGELOG section")
    args = parser.parse_args(argv)
    if args.notes is not None:
        section = changelog_sections(CHANGELOG.read_text()).get(args.notes)
        if not section:
            print(f"CHANGELOG.md has no section for {args.notes}", file=sys.stderr)
            return 1
        print(section)
        return 0
    found = problems(read_release(), tag=args.tag, image=args.image)
    for problem in found:
        print(f"release_check: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
