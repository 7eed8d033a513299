"""``serve`` against an API server that never answers: it says it has nothing to serve yet
(and is not ready) instead of claiming to serve a snapshot it never had."""

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def unreachable_kubeconfig(directory: Path) -> Path:
    """A kubeconfig whose API server address has nothing listening."""
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{_closed_port()}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    return kubeconfig


def serve_argv(port: int, kubeconfig: Path) -> list[str]:
    host = ["--host", "127.0.0.1", "--port", str(port)]
    return [sys.executable, "-m", "jwks_operator", "serve", *host, "--kubeconfig", str(kubeconfig)]


def test_unreachable_api_server_is_not_called_a_snapshot(tmp_path: Path) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path)
    log = tmp_path / "serve.log"
    port = _closed_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            serve_argv(port, kubeconfig),
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT / "operator",
        )
    try:
        deadline = time.monotonic() + 30
        while "retrying in" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "nothing listed yet, not ready" in text
        assert "keeping what was listed" not in text
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert answer.value.code == 503
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_taken_port_names_the_flag_and_exits_2(tmp_path: Path) -> None:
    kubeconfig = unreachable_kubeconfig(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            serve_argv(port, kubeconfig),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT / "operator",
            check=False,
        )
    assert result.returncode == 2
    assert (
        f"cannot listen on 127.0.0.1:{port} (address already in use): choose another port with --port"
        in result.stderr
    )
