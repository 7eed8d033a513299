"""``--publish-dir`` served by a real nginx: whole files only, across rotations.

nginx runs as a subprocess with its own prefix, config and loopback port; it serves the
publish directory as plain static files (the seed's "nginx serves a jwks.json" setup).
"""

import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jwks_operator.server.runner import free_port
from tests.standalone.support import (
    StandaloneProcess,
    check_public_jwks,
    http_get,
    keyset_doc,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(90)

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{
            add_header Cache-Control "public, max-age=60";
            add_header Access-Control-Allow-Origin "*";
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(path).exists()),
        None,
    )


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, document root) of an nginx serving ``tmp_path / 'www'``."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (scripts/ensure-tools.sh installs the Debian package)")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    root = tmp_path / "www"
    root.mkdir()
    for attempt in range(5):
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, root=root))
        process = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            try:
                http_get(base + "/")
                break
            except OSError:
                time.sleep(0.05)
        if process.poll() is None:
            break
        if attempt == 4:
            log = (prefix / "error.log").read_text(errors="replace")
            raise AssertionError(f"nginx did not start:\n{log}")
    try:
        yield base, root
    finally:
        process.terminate()
        process.wait(10)


def test_nginx_serves_whole_files_across_rotations(tmp_path: Path, nginx: tuple[str, Path]) -> None:
    base, root = nginx
    config = write_config(
        tmp_path / "keysets.yaml",
        keyset_doc(issuer="https://auth.example.com/default/demo", retire_after="1s"),
    )
    process = StandaloneProcess(tmp_path, config, extra=["--publish-dir", str(root)]).started()
    try:
        url = base + "/default/demo/jwks.json"
        status, headers, body = http_get(url)
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        check_public_jwks(json.loads(body))
        # The same keys as the built-in server, read at (almost) the same moment.
        wait_until(
            lambda: json.loads(http_get(url)[2]) == process.jwks(),
            timeout=5,
            what="nginx and the server to agree",
        )
        discovery = json.loads(http_get(base + "/default/demo/openid-configuration")[2])
        assert discovery["issuer"] == "https://auth.example.com/default/demo"

        # Hammer nginx through two rotations: every response is a whole, valid JWKS.
        seen: list[tuple[str, ...]] = []
        requests = 0
        rotations = process.output().count(" Rotated: ")
        deadline = time.monotonic() + 30
        while process.output().count(" Rotated: ") < rotations + 2:
            assert time.monotonic() < deadline, process.output()
            status, _, body = http_get(url)
            requests += 1
            assert status == 200, body[:200]
            kids = tuple(check_public_jwks(json.loads(body)))
            if not seen or seen[-1] != kids:
                seen.append(kids)
        assert requests > 50
        assert len(seen) >= 3  # two rotations (and removals) showed up through nginx
        # A key is pre-published before it signs: each new active key (first kid) was
        # seen through nginx as the next key (second kid) in an earlier document.
        for earlier, later in itertools.pairwise(seen):
            if later[0] != earlier[0]:
                assert later[0] in earlier
    finally:
        assert process.stop() == 0
    assert not list(root.rglob(".*.tmp"))
