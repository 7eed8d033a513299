"""Builds the conformance suite's verifier programs, once per source digest, outside the clone.

Each language's sources (tests/clients/<lang>/) are copied into
``~/.cache/jwks-operator/clients/<lang>-<digest>/`` (``JWKS_CLIENTS_CACHE`` overrides the
root) and built there with the tools' own caches in ``$HOME`` (Go module and build cache,
``~/.m2``); ``node_modules`` and the Python virtualenv live in that directory. A directory
with a ``.built`` stamp is reused as it is, so a second run builds nothing; a change to any
source file gives a new digest and a fresh build. A file lock keeps two pytest workers
from building the same thing at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CLIENTS: Final = Path(__file__).resolve().parent
CACHE_ROOT: Final = Path(
    os.environ.get("JWKS_CLIENTS_CACHE", Path.home() / ".cache" / "jwks-operator" / "clients")
)
TOOLS: Final = {"python": sys.executable, "js": "npm", "go": "go", "java": "mvn"}


class BuildError(Exception):
    """A build step failed; the message has the command and its output."""


class ToolMissing(Exception):
    """The language's toolchain is not installed here."""


@dataclass(frozen=True)
class Built:
    """A built client: the command that starts one verifier process, and the build's cost."""

    language: str
    directory: Path
    seconds: float
    """Time spent building in this run (0 when the cached build was reused)."""

    def command(self, library: str, cache_seconds: float) -> list[str]:
        ttl = str(cache_seconds)
        where = self.directory
        if self.language == "python":
            return [
                str(where / "venv" / "bin" / "python"),
                str(where / "verify_tokens.py"),
                library,
                ttl,
            ]
        if self.language == "js":
            return ["node", str(where / "verify-tokens.mjs"), library, ttl]
        if self.language == "go":
            return [str(where / "verifier"), library, ttl]
        classpath = (
            f"{where / 'target' / 'classes'}:{(where / 'classpath.txt').read_text().strip()}"
        )
        return ["java", "-cp", classpath, "dev.jwks.clients.VerifyTokens", ttl]


def sources(language: str) -> list[Path]:
    root = CLIENTS / language
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and "node_modules" not in path.parts and "target" not in path.parts
    )


def digest(language: str) -> str:
    sha = hashlib.sha256()
    for path in sources(language):
        sha.update(str(path.relative_to(CLIENTS)).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()[:16]


def _run(argv: list[str], cwd: Path, timeout: float = 1200.0) -> None:
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise BuildError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


def _build_steps(language: str, where: Path) -> None:
    if language == "python":
        _run([sys.executable, "-m", "venv", "venv"], where)
        _run(
            ["venv/bin/python", "-m", "pip", "install", "--quiet", "-r", "requirements.txt"], where
        )
    elif language == "js":
        _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], where)
    elif language == "go":
        _run(["go", "build", "-mod=readonly", "-trimpath", "-o", "verifier", "."], where)
    else:
        _run(
            [
                "mvn",
                "-q",
                "-B",
                "compile",
                "dependency:build-classpath",
                "-Dmdep.outputFile=classpath.txt",
            ],
            where,
        )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(language: str) -> Built:
    """The built client of ``language``, building it first unless a cached build exists."""
    if shutil.which(TOOLS[language]) is None:
        raise ToolMissing(f"{TOOLS[language]} is not installed")
    where = CACHE_ROOT / f"{language}-{digest(language)}"
    with _locked(CACHE_ROOT / f".{language}.lock"):
        if (where / ".built").exists():
            return Built(language, where, 0.0)
        started = time.monotonic()
        shutil.rmtree(where, ignore_errors=True)
        shutil.copytree(
            CLIENTS / language, where, ignore=shutil.ignore_patterns("node_modules", "target")
        )
        _build_steps(language, where)
        (where / ".built").write_text("ok\n")
        return Built(language, where, time.monotonic() - started)


# Gateways: pinned Go modules, built from the module proxy's copy of their source (with
# its own go.mod and go.sum). Traefik is pinned to v3.5.0: v3.6 and later replace a module
# by a directory that their module zip does not hold (./pkg/config/dynamic/ext), and
# v3.7.13's lego DNS providers need module versions the proxy refuses (403).
GATEWAYS: Final = {
    "oauth2-proxy": ("github.com/oauth2-proxy/oauth2-proxy/v7", "v7.15.6", "."),
    "traefik": ("github.com/traefik/traefik/v3", "v3.5.0", "./cmd/traefik"),
}
PLACEHOLDERS: Final = {
    # The dashboard's built assets are not in the module zip; go:embed needs one file. The
    # suite's Traefik has no dashboard (api disabled), so it never serves it.
    "traefik": ["webui/static/index.html"],
}
GATEWAY_ROOT: Final = CACHE_ROOT.parent / "gateways"


def gateway_binary(name: str) -> Path:
    _, version, _ = GATEWAYS[name]
    return GATEWAY_ROOT / f"{name}-{version}" / name


def gateway_log(name: str) -> Path:
    return gateway_binary(name).with_name("build.log")


def build_gateway(name: str, timeout: float = 900.0, *, retry: bool = False) -> Path:
    """The gateway's binary, built (once) from its pinned module; the log says why not.

    A failed build leaves its log, and is not tried again on the next run (a gateway build
    takes minutes) unless ``retry`` or the log is deleted; a build that ran out of time
    leaves none, so the next run carries on with it.
    """
    module, version, package = GATEWAYS[name]
    binary = gateway_binary(name)
    with _locked(GATEWAY_ROOT / f".{name}.lock"):
        if binary.exists():
            return binary
        log = gateway_log(name)
        if log.exists() and not retry:
            raise BuildError(
                f"{name} {version} did not build before, see {log} (delete it to retry)"
            )
        started = time.monotonic()
        where = binary.parent
        where.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                ["go", "mod", "download", "-json", f"{module}@{version}"],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            source = where / "src"
            shutil.rmtree(source, ignore_errors=True)
            shutil.copytree(json.loads(done.stdout)["Dir"], source)
            for path in [source, *source.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
            for placeholder in PLACEHOLDERS.get(name, []):
                (source / placeholder).parent.mkdir(parents=True, exist_ok=True)
                (source / placeholder).write_text("dashboard not built\n")
            build = subprocess.run(
                ["go", "build", "-trimpath", "-o", str(binary), package],
                cwd=source,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            log.write_text(
                f"{build.stdout}{build.stderr}\nexit {build.returncode} after {time.monotonic() - started:.0f}s\n"
            )
            if build.returncode != 0:
                raise BuildError(f"{name}: go build failed, see {log}")
        except subprocess.CalledProcessError as failed:
            log.write_text(f"{failed.cmd} failed ({failed.returncode}):\n{failed.stderr}\n")
            raise BuildError(
                f"{name}: {module}@{version} could not be downloaded, see {log}"
            ) from None
        except subprocess.TimeoutExpired as expired:
            # Not a failure stamp: the next run tries again, and resumes from the Go build
            # cache what this try compiled.
            log.unlink(missing_ok=True)
            raise BuildError(
                f"{name}: build timed out after {expired.timeout:.0f}s (the next run resumes it)"
            ) from None
        shutil.rmtree(where / "src", ignore_errors=True)
        return binary


if __name__ == "__main__":  # python -m tests.clients.build [LANG...]: build ahead of the tests
    failed = 0
    for name in sys.argv[1:] or [*TOOLS, *GATEWAYS]:
        started = time.monotonic()
        try:
            where = build_gateway(name) if name in GATEWAYS else build(name).directory
            print(f"{name}: {where} ({time.monotonic() - started:.1f}s)")
        except (BuildError, ToolMissing) as error:
            failed += 1
            print(f"{name}: not built: {error}", file=sys.stderr)
    sys.exit(1 if failed else 0)
