"""The README's demo log is what `make demo` prints, and `make demo PORT=...` moves all of it.

The transcript test runs the command `make demo` runs (read from `make -n demo`, so a
change to the Makefile is a change here) on a copy of its config with every duration
divided by five: the same lines, in the same order, in ten seconds instead of fifty. Kids,
times and the port are normalised: the same kid must appear wherever the README repeats it.
"""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.standalone.support import cli_env

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_KID = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")  # kids may start with -
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+ ")
_DURATION = re.compile(r"(interval|prePublish|retireAfter): (\d+)s")
SCALE = 5

pytestmark = pytest.mark.timeout(120)


def readme_log() -> list[str]:
    text = README.read_text()
    block = text.split("<!-- demo-log:start -->", 1)[1].split("<!-- demo-log:end -->", 1)[0]
    bodies: list[str] = re.findall(r"```\n(.*?)```", block, flags=re.S)
    (body,) = bodies
    return body.splitlines()


def normalise(lines: list[str], port: int) -> list[str]:
    kids: dict[str, str] = {}

    def kid(match: re.Match[str]) -> str:
        return kids.setdefault(match.group(0), f"<kid{len(kids) + 1}>")

    result = []
    for line in lines:
        line = _STAMP.sub("", line)
        line = _TIME.sub("<time>", line)
        line = _KID.sub(kid, line.replace(f"127.0.0.1:{port}", "127.0.0.1:<port>"))
        result.append(line)
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """`make` in the repository, with the venv this test runs in and no install step."""
    venv = Path(sys.executable).parent.parent
    return subprocess.run(
        ["make", "--no-print-directory", "-s", *args, f"VENV={venv}", "STAMP="],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def demo_argv(port: int, state_dir: Path) -> list[str]:
    """What `make demo` runs (its default port: the config is then the example itself)."""
    planned = make("-n", "demo", f"STATE_DIR={state_dir}")
    assert planned.returncode == 0, planned.stderr
    (line,) = [line for line in planned.stdout.splitlines() if " standalone " in line]
    words = shlex.split(line.split("||", 1)[0].rstrip(" \\"))
    assert words[0].endswith("/bin/jwks-operator") and words[1] == "standalone"
    words[words.index("--port") + 1] = str(port)
    return words[1:]


def test_the_readme_demo_log_is_a_real_run(tmp_path: Path) -> None:
    port = free_port()
    argv = demo_argv(port, tmp_path / "state")
    assert "--max-age" in argv and "--max-age 5" in README.read_text()  # explained there
    config = Path(argv[argv.index("--config") + 1])
    config = config if config.is_absolute() else ROOT / config
    scaled = tmp_path / "demo.yaml"
    scaled.write_text(_DURATION.sub(lambda m: f"{m[1]}: {int(m[2]) // SCALE}s", config.read_text()))
    assert scaled.read_text().count("s ") >= 3 and all(
        int(s) % SCALE == 0 for _, s in _DURATION.findall(config.read_text())
    )
    argv[argv.index("--config") + 1] = str(scaled)
    expected = readme_log()
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "jwks_operator", *argv],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=cli_env(),
        )
    try:
        deadline = time.monotonic() + 60
        while len(log.read_text().splitlines()) < len(expected) and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=15)
    real = log.read_text().splitlines()[: len(expected)]
    assert normalise(real, port) == normalise(expected, 8080)


def test_make_demo_port_moves_the_listener_and_the_issuer(tmp_path: Path) -> None:
    port = free_port()
    venv = Path(sys.executable).parent.parent
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                "make",
                "-s",
                "demo",
                f"PORT={port}",
                f"STATE_DIR={tmp_path / 'state'}",
                f"VENV={venv}",
                "STAMP=",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=cli_env(),
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while f"serving http://127.0.0.1:{port}/" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/default/demo/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=10) as answer:
            discovery = json.loads(answer.read())
        assert discovery["issuer"] == f"http://127.0.0.1:{port}/default/demo"
        assert (
            discovery["jwks_uri"] == f"http://127.0.0.1:{port}/default/demo/.well-known/jwks.json"
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # make and the demo it started, nothing else
        process.wait(timeout=15)


def test_a_taken_port_names_the_flag_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = make("demo", f"PORT={port}", f"STATE_DIR={tmp_path / 'state'}")
    assert (
        f"cannot listen on 127.0.0.1:{port} (address already in use): choose another port with --port"
        in (result.stderr)
    )
    assert f"make demo: if port {port} is taken: make demo PORT=8081" in result.stderr
    assert result.returncode == 2
