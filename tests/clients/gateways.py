"""Gateways in front of a small upstream, driven like the verifier programs.

``GatewayVerifier`` has the ``send``/``receive`` pair of a verifier process: ``send`` makes
one request through the gateway with the token as ``Authorization: Bearer``, and the token
counts as accepted only when the upstream answered (its body says so). Traefik asks the
JWKS server's ``/verify`` (ForwardAuth); oauth2-proxy verifies the JWT itself, from the
issuer's discovery document (it uses go-oidc). Both run from the configuration files in
tests/clients/gateways/, with only the loopback ports and keyset paths substituted.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import yaml

from jwks_operator.server.runner import free_port
from tests.clients.verifiers import Verifier

CONFIGS: Final = Path(__file__).resolve().parent / "gateways"
UPSTREAM_MARK: Final = "upstream:"
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        seen = {
            name: value for name, value in self.headers.items() if name.lower().startswith("x-auth")
        }
        body = (UPSTREAM_MARK + json.dumps(seen)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def upstream() -> Iterator[int]:
    """A loopback HTTP server that answers every GET with its mark and the X-Auth headers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class GatewayVerifier:
    """One running gateway; ``path_for`` maps a keyset's JWKS URL to a path it protects."""

    def __init__(
        self,
        verifier: Verifier,
        popen: subprocess.Popen[bytes],
        port: int,
        log: Path,
        *,
        per_keyset_path: bool,
    ) -> None:
        self.verifier = verifier
        self.popen = popen
        self.port = port
        self.log = log
        self.per_keyset_path = per_keyset_path
        self._answer: dict[str, Any] | None = None

    def path_for(self, jwks_url: str) -> str:
        # http://127.0.0.1:P/NS/NAME/.well-known/jwks.json -> /NS/NAME/resource
        namespace, name = jwks_url.split("/")[3:5]
        return f"/{namespace}/{name}/resource" if self.per_keyset_path else "/resource"

    def send(self, request: dict[str, str]) -> None:
        url = f"http://127.0.0.1:{self.port}{self.path_for(request['jwks'])}"
        http = urllib.request.Request(url, headers={"Authorization": f"Bearer {request['token']}"})
        try:
            with _OPENER.open(http, timeout=10) as response:
                body = response.read().decode(errors="replace")
                ok = response.status == 200 and body.startswith(UPSTREAM_MARK)
                self._answer = {"ok": ok, "status": response.status, "body": body[:200]}
        except urllib.error.HTTPError as error:
            self._answer = {
                "ok": False,
                "status": error.code,
                "error": error.read()[:200].decode(errors="replace"),
            }

    def receive(self) -> dict[str, Any]:
        assert self._answer is not None
        answer, self._answer = self._answer, None
        return answer

    def close(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)


def _wait_listening(
    popen: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise AssertionError(f"gateway exited ({popen.returncode}):\n{log.read_text()[-3000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(
        f"gateway not listening on {port} in {timeout}s:\n{log.read_text()[-3000:]}"
    )


def _start(
    argv: list[str], workdir: Path, port: int, name: str
) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    _wait_listening(popen, port, log)
    return popen, log


def oauth2_proxy(
    verifier: Verifier,
    binary: Path,
    workdir: Path,
    server_port: int,
    issuers: list[str],
    upstream_port: int,
) -> GatewayVerifier:
    """oauth2-proxy from oauth2-proxy.cfg: the first issuer is its provider, all are JWT issuers."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    text = (CONFIGS / "oauth2-proxy.cfg").read_text()
    extra = json.dumps([f"{issuer}=api" for issuer in issuers])
    lines = []
    for line in text.splitlines():
        if line.startswith("extra_jwt_issuers"):
            line = f"extra_jwt_issuers = {extra}"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    text = text.replace("http://127.0.0.1:8080/identity/auth", issuers[0])
    text = text.replace("127.0.0.1:4180", f"127.0.0.1:{port}").replace(
        "127.0.0.1:9000", f"127.0.0.1:{upstream_port}"
    )
    assert str(server_port) in text
    config = workdir / "oauth2-proxy.cfg"
    config.write_text(text)
    popen, log = _start([str(binary), "--config", str(config)], workdir, port, "oauth2-proxy")
    return GatewayVerifier(verifier, popen, port, log, per_keyset_path=False)


def traefik(
    verifier: Verifier,
    binary: Path,
    workdir: Path,
    server_port: int,
    keysets: list[tuple[str, str]],
    upstream_port: int,
) -> GatewayVerifier:
    """Traefik from traefik-static.yaml and one copy of traefik-dynamic.yaml's route per keyset."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    template = (CONFIGS / "traefik-dynamic.yaml").read_text()
    merged: dict[str, dict[str, Any]] = {"middlewares": {}, "routers": {}, "services": {}}
    for namespace, name in keysets:
        text = (
            template.replace(
                "127.0.0.1:8080/identity/auth", f"127.0.0.1:{server_port}/{namespace}/{name}"
            )
            .replace("PathPrefix(`/orders/`)", f"PathPrefix(`/{namespace}/{name}/`)")
            .replace("127.0.0.1:9000", f"127.0.0.1:{upstream_port}")
        )
        http = yaml.safe_load(text)["http"]
        for section, items in http.items():
            for key, value in items.items():
                if section == "routers":
                    value = {**value, "middlewares": [f"{m}-{name}" for m in value["middlewares"]]}
                merged[section][f"{key}-{name}" if section != "services" else key] = value
    (workdir / "traefik-dynamic.yaml").write_text(yaml.safe_dump({"http": merged}))
    static = (
        (CONFIGS / "traefik-static.yaml").read_text().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    )
    (workdir / "traefik.yaml").write_text(static)
    popen, log = _start(
        [str(binary), f"--configFile={workdir / 'traefik.yaml'}"], workdir, port, "traefik"
    )
    gateway = GatewayVerifier(verifier, popen, port, log, per_keyset_path=True)
    # The file provider loads the routes a moment after the entry point listens: until
    # then every path is a 404.
    namespace, name = keysets[0]
    probe = {
        "jwks": f"http://127.0.0.1:{server_port}/{namespace}/{name}/.well-known/jwks.json",
        "token": "x",
    }
    deadline = time.monotonic() + 30
    while True:
        gateway.send(probe)
        if gateway.receive().get("status") != 404:
            return gateway
        if time.monotonic() > deadline:
            gateway.close()
            raise AssertionError(
                f"Traefik did not load its routes in 30s:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.1)
